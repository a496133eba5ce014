/**
 * `deno task pretrain` (= `deno run -A train/pretrain.ts`): JOWA pretraining from the command
 * line. See `--help` and train/pretrainer.ts. Exit status: 0 done, 2 bad usage or run
 * directory, 3 non-finite loss, 130 interrupted (Ctrl-C or --stop-at; a checkpoint was
 * written), 1 any other error (one line).
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import {
  HELP,
  parsePretrainArgs,
  type PretrainConfig,
  resolveConfig,
  UsageError,
} from "./pretrain_options.ts";
import { pretrain, RunError } from "./pretrainer.ts";

async function main(): Promise<number> {
  const args = parsePretrainArgs(Deno.args);
  if (args.help) {
    console.log(HELP);
    return 0;
  }
  let cfg: PretrainConfig;
  if (args.resume) {
    const file = path.join(args.resume, "config.json");
    if (!fs.existsSync(file)) throw new UsageError(`--resume ${args.resume}: no config.json there`);
    cfg = { ...JSON.parse(fs.readFileSync(file, "utf8")), ...args.overrides };
  } else cfg = resolveConfig(args.overrides);
  if (cfg.data !== null && !fs.existsSync(cfg.data)) {
    throw new UsageError(`--data ${cfg.data}: no such directory`);
  }
  const ctrl = new AbortController();
  const onSigint = () => {
    if (ctrl.signal.aborted) Deno.exit(130); // second Ctrl-C: give up at once
    console.error(
      "\ninterrupt: finishing the step and writing a checkpoint (Ctrl-C again to quit)",
    );
    ctrl.abort();
  };
  Deno.addSignalListener("SIGINT", onSigint);
  try {
    const r = await pretrain(cfg, args.resume, { signal: ctrl.signal });
    return r.status === "done" ? 0 : r.status === "nonfinite" ? 3 : 130;
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
}

try {
  Deno.exit(await main());
} catch (e) {
  const err = e as Error;
  const usage = err instanceof UsageError || err instanceof RunError;
  console.error(`error: ${(err.message ?? String(e)).split("\n")[0]}`);
  if (!usage && Deno.env.get("JOWA_DEBUG")) console.error(err.stack);
  Deno.exit(usage ? 2 : 1);
}
