/**
 * What the training CLIs (`deno task pretrain`, `deno task finetune`) share: the run
 * configuration from `--resume` or the flags, and one run under the interrupt gate and the
 * data-parallel communicator, mapped to an exit status.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { onInterrupt } from "../util/interrupt.ts";
import { UsageError } from "../util/cli.ts";
import { type Comm, initDistributed } from "../distributed/mod.ts";
import type { TrainResult } from "./trainer.ts";

/**
 * The run's configuration: a resumed run's `config.json` with the command line's overrides on
 * top, else `resolve(overrides)`.
 * @throws UsageError when `resume` holds no config.json.
 */
export function loadRunConfig<C, O>(
  resume: string | null,
  overrides: O,
  resolve: (overrides: O) => C,
): C {
  if (!resume) return resolve(overrides);
  const file = path.join(resume, "config.json");
  if (!fs.existsSync(file)) throw new UsageError(`--resume ${resume}: no config.json there`);
  return { ...JSON.parse(fs.readFileSync(file, "utf8")), ...overrides };
}

/**
 * Run one training run: Ctrl-C (or SIGINT) aborts `signal` so the trainer finishes its step and
 * writes a checkpoint; `before` runs first (e.g. an adapter check), then the communicator is
 * made (under mpiexec/srun: one rank of a data-parallel run) and finalized after the run.
 * @returns the exit status: 0 done, 3 non-finite loss, 130 interrupted.
 */
export async function runTrainingCli(
  run: (hooks: { signal: AbortSignal; comm: Comm }) => Promise<Pick<TrainResult, "status">>,
  before?: () => Promise<void>,
): Promise<number> {
  const ctrl = new AbortController();
  // One Ctrl-C may arrive as several SIGINTs (terminal group + `deno task` forwarding): util/interrupt.ts.
  const removeSigint = onInterrupt(() => {
    console.error(
      "\ninterrupt: finishing the step and writing a checkpoint (Ctrl-C again to quit)",
    );
    ctrl.abort();
  });
  try {
    await before?.();
    const comm = initDistributed();
    const r = await run({ signal: ctrl.signal, comm });
    // Every rank finalizes before exiting: one that exits without it aborts the job.
    await comm.finalize();
    return r.status === "done" ? 0 : r.status === "nonfinite" ? 3 : 130;
  } finally {
    removeSigint();
  }
}
