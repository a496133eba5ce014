/**
 * Command-line parsing the training CLIs share (train/pretrain_options.ts,
 * train/finetune_options.ts): strict flag parsing, presets, integer and real flags, the run
 * name, and what `--resume` may change. Every error is a one-line {@link UsageError}.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError } from "../util/cli.ts";
import { parsePrecision, type Precision } from "../kernels/core/precision.ts";

/** Flag values as `node:util` parseArgs returns them. */
export type FlagValues = Record<string, string | boolean | undefined>;

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
