/**
 * Command-line parsing the training CLIs share (train/pretrain_options.ts,
 * train/finetune_options.ts): the config fields, defaults, flags and help lines both have,
 * strict flag parsing, presets, integer and real flags, the run name, and what `--resume` may
 * change. Every error is a one-line {@link UsageError}.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError } from "../util/cli.ts";
import { parsePrecision, type Precision } from "../kernels/core/precision.ts";

/** Flag values as `node:util` parseArgs returns them. */
export type FlagValues = Record<string, string | boolean | undefined>;

/** The fields both training configs (pretraining, fine-tuning) have, with one meaning. */
export interface RunConfig {
  /** Run name: the run directory is `<runsDir>/<name>`. */
  name: string;
  runsDir: string;
  weightDecay: number;
  gradClip: number;
  /** World-loss weight in the joint loss. */
  beta: number;
  /** CQL (fine-tuning stage 2: COMBO) weight. */
  alpha: number;
  gamma: number;
  /** Hard copy of the Q head into the target head every this many (joint) steps. */
  targetEvery: number;
  /** Read losses back and write a metrics line every this many steps. */
  logEvery: number;
  /** Checkpoint every this many steps (rounded up to a readback). */
  ckptEvery: number;
  /** Complete checkpoints kept. */
  keep: number;
  seed: number;
  /** Sampler worker threads (0: build batches in the training thread). */
  workers: number;
  /** Write report.html at the end. */
  report: boolean;
  /** Testing: poison the batch of this step with NaN rewards (0: never). */
  injectNanAt: number;
  /** Testing: checkpoint and stop after this step, as Ctrl-C would (0: never). */
  stopAt: number;
  /** Draw the progress bar even when stderr is not a terminal. */
  progress: boolean;
  /**
   * Capture the training step once (per batch form) and replay it (kernels/core/capture.ts;
   * same results); false: every step eagerly (`--no-replay`, debugging). Absent (older runs):
   * true.
   */
  replay?: boolean;
  /**
   * Products of the world-action model in f16 storage with f32 accumulation, f32 master
   * weights and dynamic loss scaling (`--precision f16`, kernels/ops/matmul_f16.ts). Absent
   * (older runs): f32.
   */
  precision?: Precision;
}

/**
 * The paper's loss weights and target-copy interval, the defaults of both trainings. Spread
 * where they stood: the key order of a default config is the key order of config.json.
 */
export const LOSS_DEFAULTS: Pick<
  RunConfig,
  "weightDecay" | "gradClip" | "beta" | "alpha" | "gamma" | "targetEvery"
> = {
  weightDecay: 0.01,
  gradClip: 1.0,
  beta: 0.1,
  alpha: 0.1,
  gamma: 0.99,
  targetEvery: 1000,
};

/** The run-control defaults of both trainings (spread after `logEvery`, `ckptEvery`). */
export const RUN_DEFAULTS: Pick<
  RunConfig,
  "keep" | "seed" | "workers" | "report" | "injectNanAt" | "stopAt" | "progress" | "replay"
> = {
  keep: 3,
  seed: 0,
  workers: 1,
  report: true,
  injectNanAt: 0,
  stopAt: 0,
  progress: false,
  replay: true,
};

/** Options every training run may change when resuming (run control, not model or data). */
export const RUN_RESUMABLE: readonly (keyof RunConfig)[] = [
  "logEvery",
  "ckptEvery",
  "keep",
  "report",
  "injectNanAt",
  "stopAt",
  "progress",
  "workers",
  "replay",
  "precision",
];

/** Integer flags of both trainings (flag -> [key, minimum]; see {@link applyPresetAndNumbers}). */
export const RUN_NUM = {
  "log-every": ["logEvery", 1],
  "ckpt-every": ["ckptEvery", 1],
  keep: ["keep", 1],
  seed: ["seed", 0],
  workers: ["workers", 0],
  "inject-nan-at": ["injectNanAt", 0],
  "stop-at": ["stopAt", 0],
} as const;

/** Real flags of both trainings (flag -> key). */
export const LOSS_REAL = {
  "weight-decay": "weightDecay",
  "grad-clip": "gradClip",
  beta: "beta",
  alpha: "alpha",
  gamma: "gamma",
} as const;

/** `--help` lines of `--no-replay` and `--precision`, the same in both CLIs. */
export const REPLAY_HELP =
  `  --no-replay           run every training step eagerly instead of replaying the captured
                        step (same results, more host time; for debugging)`;
/** See {@link REPLAY_HELP}. */
export const PRECISION_HELP =
  `  --precision P         f32 (default) or f16: world-action products in f16 storage with f32
                        accumulation, f32 master weights, dynamic loss scaling (shader-f16)`;

/** What one training CLI adds to the flags all of them take. */
export interface CliSpec<C> {
  booleans: readonly string[];
  strings: readonly string[];
  presets: Record<string, Partial<C>>;
  num: Record<string, readonly [string, number]>;
  real: Record<string, string>;
}

/**
 * Strict parse of a training CLI's `args`: the shared flags (`--help`, `--no-report`,
 * `--no-replay`, `--progress`, `--data`, `--name`, `--runs-dir`, `--resume`, `--preset`,
 * `--precision`) and `spec`'s, then `--preset` and the numeric flags.
 * @returns the flag values and the overrides so far.
 */
export function parseRunFlags<C>(
  args: string[],
  spec: CliSpec<C>,
): { values: FlagValues; o: Partial<C> } {
  const values = parseFlags(
    args,
    ["help", "no-report", "no-replay", "progress", ...spec.booleans],
    [
      ...Object.keys(spec.num),
      ...Object.keys(spec.real),
      "data",
      "name",
      "runs-dir",
      "resume",
      "preset",
      "precision",
      ...spec.strings,
    ],
  );
  const o: Partial<C> = {};
  applyPresetAndNumbers(values, o, spec.presets, spec.num, spec.real);
  return { values, o };
}

/** `--data`, `--runs-dir`, `--name` into `o`, in that order (the order of `--resume`'s list). */
export function applyRunLocation(
  values: FlagValues,
  o: Partial<{ data: string | null; runsDir: string; name: string }>,
): void {
  const str = (k: string) => values[k] as string | undefined;
  if (str("data") !== undefined) o.data = str("data")!;
  if (str("runs-dir") !== undefined) o.runsDir = str("runs-dir")!;
  if (str("name") !== undefined) o.name = runName(str("name")!);
}

/**
 * The run switches (`--no-report`, `--progress`, `--no-replay`, `--precision`) into `o`, then
 * the `--resume` check against `resumable`: the end of a training CLI's parse.
 */
export function finishRunArgs<C extends RunConfig>(
  values: FlagValues,
  o: Partial<C>,
  resumable: readonly (keyof C)[],
): { help: boolean; resume: string | null; overrides: Partial<C> } {
  const str = (k: string) => values[k] as string | undefined;
  const r = o as Partial<RunConfig>;
  if (values["no-report"]) r.report = false;
  if (values.progress) r.progress = true;
  if (values["no-replay"]) r.replay = false;
  if (str("precision") !== undefined) r.precision = precisionFlag(str("precision"));
  const resume = checkResume(str("resume"), o, resumable);
  return { help: !!values.help, resume, overrides: o };
}

/** Strict parse of `args` (no positionals) with the given boolean and string flags. */
export function parseFlags(
  args: string[],
  booleans: readonly string[],
  strings: readonly string[],
): FlagValues {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const b of booleans) options[b] = { type: "boolean" };
  for (const k of strings) options[k] = { type: "string" };
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0]);
  }
}

/**
 * Apply `--preset`, then the integer flags (`num`: flag -> [key, minimum]) and the real flags
 * (`real`: flag -> key, each >= 0; `--gamma` <= 1 too) to `o`.
 */
export function applyPresetAndNumbers<C>(
  values: FlagValues,
  o: Partial<C>,
  presets: Record<string, Partial<C>>,
  num: Record<string, readonly [string, number]>,
  real: Record<string, string>,
): void {
  const str = (k: string) => values[k] as string | undefined;
  if (str("preset") !== undefined) {
    const p = presets[str("preset")!];
    if (!p) {
      throw new UsageError(
        `--preset must be one of ${Object.keys(presets).join(", ")}, got '${str("preset")}'`,
      );
    }
    Object.assign(o, p);
  }
  const nums = o as Record<string, number>;
  for (const [flag, [key, min]] of Object.entries(num)) {
    const v = str(flag);
    if (v === undefined) continue;
    const n = Number(v);
    if (v.trim() === "" || !Number.isInteger(n) || n < min) {
      throw new UsageError(`--${flag} must be an integer >= ${min}, got '${v}'`);
    }
    nums[key] = n;
  }
  for (const [flag, key] of Object.entries(real)) {
    const v = str(flag);
    if (v === undefined) continue;
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n) || n < 0) {
      throw new UsageError(`--${flag} must be a number >= 0, got '${v}'`);
    }
    nums[key] = n;
  }
  if (nums.gamma !== undefined && nums.gamma > 1) throw new UsageError(`--gamma must be <= 1`);
}

/** `--name`, checked: it names a directory under the runs directory. */
export function runName(name: string): string {
  if (!/^[\w.-]+$/.test(name)) throw new UsageError(`--name may use letters, digits, . _ -`);
  return name;
}

/**
 * `--resume` continues a run with its saved config: only the `resumable` keys may be given.
 * @returns the run directory to resume, or null.
 */
export function checkResume<C>(
  resume: string | undefined,
  o: Partial<C>,
  resumable: readonly (keyof C)[],
): string | null {
  if (resume === undefined) return null;
  const fixed = (Object.keys(o) as (keyof C)[]).filter((k) => !resumable.includes(k));
  if (fixed.length) {
    throw new UsageError(
      `--resume continues a run with its saved config; cannot change: ${fixed.join(", ")}`,
    );
  }
  return resume;
}

/** `--precision f32|f16`, checked (one-line {@link UsageError}). */
export function precisionFlag(value: string | undefined): Precision {
  try {
    return parsePrecision(value);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}
