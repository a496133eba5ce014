/**
 * `deno task pretrain` (= `deno run -A train/pretrain.ts`): JOWA pretraining from the command
 * line. See `--help` and train/pretrainer.ts. Exit status: 0 done, 2 bad usage or run
 * directory, 3 non-finite loss, 130 interrupted (Ctrl-C or --stop-at; a checkpoint was
 * written), 1 any other error (one line).
 *
 * @module
 */
import { onInterrupt } from "../util/interrupt.ts";
import * as fs from "node:fs";
import * as path from "node:path";
import { HELP, parsePretrainArgs, type PretrainConfig, resolveConfig } from "./pretrain_options.ts";
import { pretrain, RunError } from "./pretrainer.ts";
import { runCli, UsageError } from "../util/cli.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { requireUsableAdapter } from "../kernels/core/device.ts";
import { DistributedError, initDistributed } from "../distributed/mod.ts";

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
  if (cfg.lpips && !fs.statSync(cfg.lpips, { throwIfNoEntry: false })?.isFile()) {
    throw new UsageError(`--lpips ${cfg.lpips}: no such file`);
  }
  const ctrl = new AbortController();
  // One Ctrl-C may arrive as several SIGINTs (terminal group + `deno task` forwarding): util/interrupt.ts.
  const removeSigint = onInterrupt(() => {
    console.error(
      "\ninterrupt: finishing the step and writing a checkpoint (Ctrl-C again to quit)",
    );
    ctrl.abort();
  });
  try {
    // Refuse an OpenGL CPU adapter up front: training on it makes no visible progress.
    requireUsableAdapter((await initRuntime()).ctx);
    // Under mpiexec/srun: one rank of a data-parallel run (train/data_parallel.ts).
    const comm = initDistributed();
    const r = await pretrain(cfg, args.resume, { signal: ctrl.signal, comm });
    // Every rank finalizes before exiting: one that exits without it aborts the job.
    await comm.finalize();
    return r.status === "done" ? 0 : r.status === "nonfinite" ? 3 : 130;
  } finally {
    removeSigint();
  }
}

// Every failure is one line (the stack too with JOWA_DEBUG=1); bad usage and run-directory
// problems exit 2, anything else 1.
await runCli(main, { usageErrors: [RunError], userErrors: [DistributedError], catchAll: true });
