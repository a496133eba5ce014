/**
 * Score normalization and aggregate metrics, following rliable (Agarwal et al., 2021) exactly.
 *
 * Score matrices are given per game: `scores[g]` holds the runs (or evaluation episodes) of game
 * `g`. This is the transpose of rliable's `(num_runs, num_tasks)` array and may be ragged.
 *
 * - `aggregateMean` = rliable `aggregate_mean`: mean over games of the per-game mean.
 * - `aggregateMedian` = rliable `aggregate_median`: median over games of the per-game mean.
 * - `aggregateIqm` = rliable `aggregate_iqm`: `scipy.stats.trim_mean(x, 0.25)` over all runs x
 *   games scores flattened, which drops `floor(0.25 * n)` values from each end of the sorted
 *   `n` values and averages the rest.
 *
 * @module
 */

import { canonicalGameName, gameReference } from "../atari/mod.ts";

function assertFiniteValues(values: readonly number[], what: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new RangeError(`${what}: value ${i} is not a finite number (${values[i]})`);
    }
  }
}

function assertNonEmpty(values: readonly number[], what: string): void {
  if (values.length === 0) throw new RangeError(`${what}: no values`);
}

/**
 * Linear normalization `(score - low) / (high - low)`, so `low` maps to 0 and `high` to 1.
 * Throws when `high === low`.
 */
export function normalizeScore(score: number, low: number, high: number): number {
  if (high === low) throw new RangeError(`cannot normalize: reference scores are equal (${low})`);
  return (score - low) / (high - low);
}

/**
 * Human-normalized score (HNS) `(score - random) / (human - random)` of a game given by name or
 * ale-py ROM id. Throws an Error naming the game when it has no reference scores.
 */
export function humanNormalizedScore(game: string, score: number): number {
  const ref = gameReference(game);
  return normalizeScore(score, ref.random, ref.human);
}

/**
 * DQN-normalized score `(score - random) / (dqn - random)`. Defined only for games with a DQN
 * reference (the 5 fine-tuning games); otherwise throws an Error naming the game.
 */
export function dqnNormalizedScore(game: string, score: number): number {
  const ref = gameReference(game);
  if (ref.dqn === undefined) {
    throw new Error(
      `DQN-normalized score is not defined for game "${
        canonicalGameName(game)
      }": it has no DQN reference score`,
    );
  }
  return normalizeScore(score, ref.random, ref.dqn);
}

/** Arithmetic mean; throws on an empty input or non-finite values. */
export function mean(values: readonly number[]): number {
  assertNonEmpty(values, "mean");
  assertFiniteValues(values, "mean");
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/**
 * Median as numpy's `np.median`: the middle value for odd `n`, the mean of the two middle values
 * for even `n`. Throws on an empty input or non-finite values.
 */
export function median(values: readonly number[]): number {
  assertNonEmpty(values, "median");
  assertFiniteValues(values, "median");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Trimmed mean as `scipy.stats.trim_mean(values, proportion)`: sorts the `n` values, removes
 * `floor(proportion * n)` from each end and averages the rest. `proportion` must be in
 * [0, 0.5]; throws when nothing would be left, on an empty input or on non-finite values.
 */
export function trimMean(values: readonly number[], proportion: number): number {
  assertNonEmpty(values, "trimMean");
  assertFiniteValues(values, "trimMean");
  if (!(proportion >= 0 && proportion <= 0.5)) {
    throw new RangeError(`trimMean: proportion must be in [0, 0.5], got ${proportion}`);
  }
  const n = values.length;
  const cut = Math.floor(proportion * n);
  if (n - 2 * cut <= 0) {
    throw new RangeError(`trimMean: trimming ${cut} from each end of ${n} values leaves none`);
  }
  const sorted = [...values].sort((a, b) => a - b);
  let sum = 0;
  for (let i = cut; i < n - cut; i++) sum += sorted[i];
  return sum / (n - 2 * cut);
}

function checkMatrix(scores: readonly (readonly number[])[], what: string): void {
  if (scores.length === 0) throw new RangeError(`${what}: no games`);
  scores.forEach((runs, g) => {
    assertNonEmpty(runs, `${what}: game ${g}`);
    assertFiniteValues(runs, `${what}: game ${g}`);
  });
}

/** Per-game mean of the runs, `scores[g]` being the runs of game `g`. */
export function perGameMeans(scores: readonly (readonly number[])[]): number[] {
  checkMatrix(scores, "perGameMeans");
  return scores.map((runs) => mean(runs));
}

/** rliable `aggregate_mean`: mean over games of the per-game mean of runs. */
export function aggregateMean(scores: readonly (readonly number[])[]): number {
  return mean(perGameMeans(scores));
}

/** rliable `aggregate_median`: median over games of the per-game mean of runs. */
export function aggregateMedian(scores: readonly (readonly number[])[]): number {
  return median(perGameMeans(scores));
}

/**
 * rliable `aggregate_iqm`: interquartile mean (25% trimmed mean, see {@linkcode trimMean}) of all
 * runs x games scores flattened together.
 */
export function aggregateIqm(scores: readonly (readonly number[])[]): number {
  checkMatrix(scores, "aggregateIqm");
  return trimMean(scores.flat(), 0.25);
}

/** Mean and standard deviation of a set of returns. */
export interface MeanStd {
  /** Arithmetic mean. */
  mean: number;
  /** Standard deviation with the given `ddof` (0: population, 1: sample). */
  std: number;
  /** Number of values. */
  n: number;
  /** Delta degrees of freedom used: the divisor is `n - ddof`. */
  ddof: 0 | 1;
}

/**
 * Mean and standard deviation of per-episode returns. By default the POPULATION standard
 * deviation (`ddof = 0`, divisor `n`, numpy's `np.std` default); pass `ddof = 1` for the sample
 * standard deviation (divisor `n - 1`, which needs `n >= 2`).
 */
export function meanStd(values: readonly number[], ddof: 0 | 1 = 0): MeanStd {
  const m = mean(values);
  const n = values.length;
  if (n - ddof <= 0) throw new RangeError(`meanStd: ddof ${ddof} needs more than ${n} values`);
  let ss = 0;
  for (const v of values) ss += (v - m) * (v - m);
  return { mean: m, std: Math.sqrt(ss / (n - ddof)), n, ddof };
}
