/**
 * Sliding context for planning with a bounded KV cache. Planning from observation o_n with
 * horizon H needs the context's tokens (w - 1 whole timesteps + the current observation) plus
 * H imagined timesteps (action + observation) in one sequence:
 *
 *   (w - 1) * (obsTokens + 1) + obsTokens + H * (obsTokens + 1) <= capacity,
 *
 * so with capacity = timesteps * (obsTokens + 1) the window holds w = timesteps - H
 * timesteps. Positions restart at 0 in each window, as in training segments.
 *
 * Typical use per environment step (E environments in lockstep):
 *
 * ```ts
 * if (cache.length === 0 || !fits(cache, planningTokens(cfg, 1, H))) {
 *   const w = planningWindow(cfg, history.length, H); // timesteps [w.first, w.end)
 *   model.prefill(cache, tokensOf(history, w));          // ends with the current observation
 * } else {
 *   model.step(cache, lastActionThenObservation);        // 1 + 36 tokens
 * }
 * ```
 *
 * @module
 */
import { contextLength, tokensPerStep, type WorldActionConfig } from "./configs.ts";
import { fits, type KvCache } from "./kv_cache.ts";

/** Most context timesteps (ending on the current observation) that leave room for H. */
export function maxContextTimesteps(
  c: WorldActionConfig,
  horizon: number,
  capacity = contextLength(c),
): number {
  const tps = tokensPerStep(c);
  // (w - 1) * tps + obsTokens + horizon * tps <= capacity
  const w = Math.floor((capacity - c.obsTokens - horizon * tps) / tps) + 1;
  if (w < 1) throw new Error(`horizon ${horizon} leaves no room for an observation`);
  return w;
}

/**
 * The timesteps [first, end) of a history of `observations` observations (the last one
 * current) to prefill before planning with horizon H.
 */
export function planningWindow(
  c: WorldActionConfig,
  observations: number,
  horizon: number,
  capacity = contextLength(c),
): { first: number; end: number } {
  if (observations < 1) throw new Error("planningWindow: no observation yet");
  const w = Math.min(observations, maxContextTimesteps(c, horizon, capacity));
  return { first: observations - w, end: observations };
}

/** Tokens appended by `steps` more timesteps of (action, observation). */
export function planningTokens(c: WorldActionConfig, steps: number, horizon: number): number {
  return (steps + horizon) * tokensPerStep(c);
}

/**
 * Whether the real-context cache can take the last action and the new observation and still
 * leave room for planning with horizon H (otherwise reset and prefill a new window).
 */
export function canAppendAndPlan(c: WorldActionConfig, cache: KvCache, horizon: number): boolean {
  return cache.length > 0 && fits(cache, planningTokens(c, 1, horizon));
}

/**
 * Token row of timesteps [first, end) of a history (CPU): observation tokens [n][obsTokens]
 * flattened, actions [n - 1] (action i taken at observation i). Ends with observation end-1.
 */
export function windowTokens(
  c: WorldActionConfig,
  obs: ArrayLike<number>,
  actions: ArrayLike<number>,
  first: number,
  end: number,
): Int32Array {
  const k = c.obsTokens;
  const out = new Int32Array((end - first) * tokensPerStep(c) - 1);
  let p = 0;
  for (let s = first; s < end; s++) {
    for (let j = 0; j < k; j++) out[p++] = obs[s * k + j];
    if (s + 1 < end) out[p++] = actions[s];
  }
  return out;
}
