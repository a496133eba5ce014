/**
 * Stratified bootstrap confidence intervals, as rliable's `get_interval_estimates`
 * (`StratifiedBootstrap` + arch's `conf_int`).
 *
 * Each bootstrap replicate resamples, independently within every game (stratum), as many runs as
 * the game has, uniformly with replacement; the statistic is evaluated on the resampled matrix.
 * With `taskBootstrap` the games are resampled with replacement as well (rliable's
 * `task_bootstrap=True`): slot `g` takes the runs of a uniformly drawn game, then its runs are
 * resampled. Statistics computed together share the same replicates, as in rliable when `func`
 * returns several metrics.
 *
 * Intervals (two-sided, `alpha = (1 - confidence) / 2`), with quantiles computed like numpy's
 * default `np.percentile` (linear interpolation):
 * - `percentile` (default): `[q(alpha), q(1 - alpha)]` of the bootstrap distribution;
 * - `basic`: `[2 * point - q(1 - alpha), 2 * point - q(alpha)]`.
 *
 * Randomness comes from {@linkcode Xoshiro128StarStar} (xoshiro128** seeded with SplitMix64), so
 * a seed gives the same intervals on every run and platform (but not the same numbers as
 * rliable, which uses numpy's global Mersenne Twister). Replicate `r` draws, in order: the game
 * indices (only with `taskBootstrap`), then for each game slot in order its run indices.
 *
 * @module
 */

import { Xoshiro128StarStar } from "../util/rng.ts";

/** Scores per game: `scores[g]` holds the runs (or evaluation episodes) of game `g`. */
export type ScoreMatrix = readonly (readonly number[])[];

/** A scalar statistic of a score matrix (e.g. `aggregateIqm` from `metrics.ts`). */
export type Statistic = (scores: number[][]) => number;

/** Interval construction from the bootstrap distribution. */
export type BootstrapMethod = "percentile" | "basic";

/** Default number of bootstrap replicates (rliable's default is 50000). */
export const DEFAULT_BOOTSTRAP_REPS = 2000;

/** Options of the stratified bootstrap. */
export interface BootstrapOptions {
  /** Number of bootstrap replicates; default {@linkcode DEFAULT_BOOTSTRAP_REPS} (2000). */
  reps?: number;
  /** Coverage of the two-sided interval, in (0, 1); default 0.95. */
  confidence?: number;
  /** PRNG seed (safe integer); default 0. */
  seed?: number;
  /** Interval method; default "percentile" (rliable's default). */
  method?: BootstrapMethod;
  /** Also resample games with replacement (rliable `task_bootstrap`); default false. */
  taskBootstrap?: boolean;
}

/** Fully resolved bootstrap settings (JSON-serializable). */
export interface BootstrapSettings {
  /** Number of bootstrap replicates. */
  reps: number;
  /** Coverage of the two-sided interval. */
  confidence: number;
  /** PRNG seed. */
  seed: number;
  /** Interval method. */
  method: BootstrapMethod;
  /** Whether games were resampled too. */
  taskBootstrap: boolean;
}

/** A point estimate with its confidence interval. */
export interface IntervalEstimate {
  /** Statistic on the original scores. */
  point: number;
  /** Lower end of the confidence interval. */
  lower: number;
  /** Upper end of the confidence interval. */
  upper: number;
}

/** Fills in defaults and validates bootstrap options. */
export function resolveBootstrapOptions(options: BootstrapOptions = {}): BootstrapSettings {
  const reps = options.reps ?? DEFAULT_BOOTSTRAP_REPS;
  const confidence = options.confidence ?? 0.95;
  const seed = options.seed ?? 0;
  const method = options.method ?? "percentile";
  if (!Number.isInteger(reps) || reps < 1) {
    throw new RangeError(`bootstrap reps must be a positive integer, got ${reps}`);
  }
  if (!(confidence > 0 && confidence < 1)) {
    throw new RangeError(`bootstrap confidence must be in (0, 1), got ${confidence}`);
  }
  if (!Number.isSafeInteger(seed)) {
    throw new RangeError(`bootstrap seed must be a safe integer, got ${seed}`);
  }
  if (method !== "percentile" && method !== "basic") {
    throw new RangeError(`unknown bootstrap method "${method}"`);
  }
  return { reps, confidence, seed, method, taskBootstrap: options.taskBootstrap ?? false };
}

function checkScores(scores: ScoreMatrix): void {
  if (scores.length === 0) throw new RangeError("bootstrap: no games");
  scores.forEach((runs, g) => {
    if (runs.length === 0) throw new RangeError(`bootstrap: game ${g} has no runs`);
  });
}

/**
 * One stratified bootstrap replicate of `scores` (see module docs for the draw order): for each
 * game, as many runs as it has, drawn uniformly with replacement from that game's runs.
 */
export function stratifiedResample(
  scores: ScoreMatrix,
  rng: Xoshiro128StarStar,
  taskBootstrap = false,
): number[][] {
  checkScores(scores);
  const sources = taskBootstrap ? scores.map(() => rng.nextInt(scores.length)) : null;
  return scores.map((_, g) => {
    const runs = scores[sources ? sources[g] : g];
    const out = new Array<number>(runs.length);
    for (let i = 0; i < runs.length; i++) out[i] = runs[rng.nextInt(runs.length)];
    return out;
  });
}

/**
 * Quantile `q` (in percent, 0..100) of `values` like numpy's default `np.percentile`
 * ("linear" method: virtual index `(q / 100) * (n - 1)`, linear interpolation between the
 * neighbouring order statistics, numpy's two-sided lerp formula).
 */
export function percentile(values: ArrayLike<number>, q: number): number {
  const n = values.length;
  if (n === 0) throw new RangeError("percentile: no values");
  if (!(q >= 0 && q <= 100)) throw new RangeError(`percentile: q must be in [0, 100], got ${q}`);
  const sorted = Float64Array.from(values).sort();
  const h = (q / 100) * (n - 1);
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, n - 1);
  const t = h - lo;
  const a = sorted[lo];
  const b = sorted[hi];
  const diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

/**
 * The bootstrap distributions of several statistics over shared replicates: entry `k` holds
 * `reps` values of `statistics[k]`.
 */
export function bootstrapDistributions(
  scores: ScoreMatrix,
  statistics: readonly Statistic[],
  options: BootstrapOptions = {},
): Float64Array[] {
  checkScores(scores);
  const settings = resolveBootstrapOptions(options);
  const rng = new Xoshiro128StarStar(settings.seed);
  const out = statistics.map(() => new Float64Array(settings.reps));
  for (let r = 0; r < settings.reps; r++) {
    const sample = stratifiedResample(scores, rng, settings.taskBootstrap);
    for (let k = 0; k < statistics.length; k++) out[k][r] = statistics[k](sample);
  }
  return out;
}

/** Confidence interval of `point` from a bootstrap distribution (see module docs). */
export function intervalFromDistribution(
  point: number,
  distribution: ArrayLike<number>,
  confidence = 0.95,
  method: BootstrapMethod = "percentile",
): IntervalEstimate {
  // Same arithmetic as arch: alpha = (1 - size) / 2, percentiles 100 * alpha, 100 * (1 - alpha).
  const alpha = (1 - confidence) / 2;
  const qLow = percentile(distribution, 100 * alpha);
  const qHigh = percentile(distribution, 100 * (1 - alpha));
  if (method === "basic") return { point, lower: 2 * point - qHigh, upper: 2 * point - qLow };
  return { point, lower: qLow, upper: qHigh };
}

/**
 * Stratified bootstrap point estimates and confidence intervals of several named statistics,
 * computed over the same replicates (rliable `get_interval_estimates` for one algorithm).
 */
export function stratifiedBootstrapCIs<K extends string>(
  scores: ScoreMatrix,
  statistics: Readonly<Record<K, Statistic>>,
  options: BootstrapOptions = {},
): Record<K, IntervalEstimate> {
  const settings = resolveBootstrapOptions(options);
  const keys = Object.keys(statistics) as K[];
  const fns = keys.map((k) => statistics[k]);
  const dists = bootstrapDistributions(scores, fns, settings);
  const result = {} as Record<K, IntervalEstimate>;
  keys.forEach((k, i) => {
    const point = fns[i](scores.map((runs) => [...runs]));
    result[k] = intervalFromDistribution(point, dists[i], settings.confidence, settings.method);
  });
  return result;
}

/** Stratified bootstrap point estimate and confidence interval of one statistic. */
export function stratifiedBootstrapCI(
  scores: ScoreMatrix,
  statistic: Statistic,
  options: BootstrapOptions = {},
): IntervalEstimate {
  return stratifiedBootstrapCIs(scores, { value: statistic }, options).value;
}
