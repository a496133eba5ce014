/**
 * The start of a training run that pretraining (train/pretrainer.ts) and fine-tuning
 * (train/finetuner.ts) share: this process's rank (single process or one rank of a
 * data-parallel run), the run directory, which rank 0 alone opens, and the trainer options
 * that the config and the rank decide.
 *
 * @module
 */
import * as path from "node:path";
import { RunDir } from "../checkpoint/run_dir.ts";
import { type Comm, initDistributed } from "../distributed/mod.ts";
import { DataParallel } from "./data_parallel.ts";
import { openRunDir, type TrainerHooks, type TrainerOptions } from "./trainer.ts";
import type { RunConfig } from "./_common_options.ts";

/** Hooks of a training run that may be one rank of a data-parallel job. */
export type RankedTrainerHooks = TrainerHooks & {
  /** The communicator (default: `initDistributed()`, a single process without a launcher). */
  comm?: Comm;
};

/** This process's place in the run. */
export interface RankSetup {
  comm: Comm;
  /** Null in a single-process run. */
  dp: DataParallel | null;
  /** Rank 0: the one that writes the run directory, logs and reports. */
  root: boolean;
  /** Status lines: the hooks' (default stderr) on rank 0, silent elsewhere. */
  log: (line: string) => void;
}

/** The communicator, data-parallel helper, rank-0 flag and logger of a run. */
export function rankSetup(hooks: RankedTrainerHooks): RankSetup {
  const comm = hooks.comm ?? initDistributed();
  const dp = comm.size > 1 ? new DataParallel(comm) : null;
  const root = comm.rank === 0;
  const log = root ? hooks.log ?? ((s: string) => console.error(s)) : () => {};
  return { comm, dp, root, log };
}

/**
 * The run directory (`resume`, else `<runsDir>/<name>`) and the checkpoint to resume from.
 * Rank 0 alone opens (creates, checks) the run directory; the others only use its paths.
 */
export function openRankRunDir(
  cfg: { runsDir: string; name: string },
  resume: string | null,
  { root, log }: RankSetup,
): { run: RunDir; ckpt: string | null } {
  const runRoot = resume ?? path.join(cfg.runsDir, cfg.name);
  return root ? openRunDir(runRoot, !!resume, cfg, log) : { run: new RunDir(runRoot), ckpt: null };
}

/** The {@link TrainerOptions} that a run's config and this process's rank decide. */
export function rankTrainerOptions(
  cfg: Pick<RunConfig, "seed" | "logEvery" | "ckptEvery" | "keep" | "stopAt" | "progress">,
  hooks: RankedTrainerHooks,
  { dp, root, log }: RankSetup,
): Pick<
  TrainerOptions,
  "seed" | "logEvery" | "ckptEvery" | "keep" | "stopAt" | "progress" | "writes" | "hooks"
> {
  return {
    seed: cfg.seed,
    logEvery: cfg.logEvery,
    ckptEvery: cfg.ckptEvery,
    keep: cfg.keep,
    stopAt: cfg.stopAt,
    progress: cfg.progress,
    writes: root,
    // Data parallel: a stop request travels with the gradients (every rank stops at one step).
    hooks: dp ? { ...hooks, log, signal: undefined } : hooks,
  };
}
