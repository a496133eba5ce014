/**
 * `deno task finetune` (= `deno run -A train/finetune.ts`): fine-tune a pretrained JOWA on a
 * held-out game from the command line. See `--help` and train/finetuner.ts. Exit status: 0
 * done, 2 bad usage, input or run directory (nothing written), 3 non-finite loss, 130
 * interrupted (Ctrl-C or --stop-at; a checkpoint was written), 1 any other error (one line).
 *
 * @module
 */
import { onInterrupt } from "../util/interrupt.ts";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  FINETUNE_HELP,
  type FinetuneConfig,
  parseFinetuneArgs,
  resolveFinetuneConfig,
} from "./finetune_options.ts";
import { finetune } from "./finetuner.ts";
import { FinetuneInputError } from "./finetune_inputs.ts";
import { RunError } from "./trainer.ts";
import { runCli, UsageError } from "../util/cli.ts";
import { CheckpointError } from "../checkpoint/loader.ts";
import { EnvError } from "../envs/python_env.ts";
import { DistributedError, initDistributed } from "../distributed/mod.ts";

async function main(): Promise<number> {
  const args = parseFinetuneArgs(Deno.args);
  if (args.help) {
    console.log(FINETUNE_HELP);
    return 0;
  }
  let cfg: FinetuneConfig;
  if (args.resume) {
    const file = path.join(args.resume, "config.json");
    if (!fs.existsSync(file)) throw new UsageError(`--resume ${args.resume}: no config.json there`);
    cfg = { ...JSON.parse(fs.readFileSync(file, "utf8")), ...args.overrides };
  } else cfg = resolveFinetuneConfig(args.overrides);
  const ctrl = new AbortController();
  // One Ctrl-C may arrive as several SIGINTs (terminal group + `deno task` forwarding): util/interrupt.ts.
  const removeSigint = onInterrupt(() => {
    console.error(
      "\ninterrupt: finishing the step and writing a checkpoint (Ctrl-C again to quit)",
    );
    ctrl.abort();
  });
  try {
    // Under mpiexec/srun: one rank of a data-parallel run (train/finetuner.ts).
    const comm = initDistributed();
    const r = await finetune(cfg, args.resume, { signal: ctrl.signal, comm });
    // Every rank finalizes before exiting: one that exits without it aborts the job.
    await comm.finalize();
    return r.status === "done" ? 0 : r.status === "nonfinite" ? 3 : 130;
  } finally {
    removeSigint();
  }
}

await runCli(main, {
  usageErrors: [RunError, FinetuneInputError],
  userErrors: [CheckpointError, EnvError, DistributedError],
  catchAll: true,
});
