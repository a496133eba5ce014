/**
 * Behaviour policies for data collection: uniform over each game's valid actions, or
 * epsilon-greedy around a caller's policy function.
 * @module
 */
import { NUM_FULL_ACTIONS } from "../atari/mod.ts";
import { mulberry32 } from "../util/rng.ts";

export { mulberry32 };

/** What a policy sees at each step. */
export interface PolicyInput {
  /** Observations [N, 84, 84] uint8. */
  obs: Uint8Array;
  /** [N, 18] 0/1 valid-action masks. */
  validActionMasks: Uint8Array;
  /** Game display name per environment. */
  games: string[];
}

/** A policy: full action ids (0..17), one per environment. */
export type PolicyFn = (input: PolicyInput) => ArrayLike<number> | Promise<ArrayLike<number>>;

/** Uniformly random valid action for environment `i`. */
export function randomValidAction(masks: Uint8Array, i: number, rand: () => number): number {
  const row = masks.subarray(i * NUM_FULL_ACTIONS, (i + 1) * NUM_FULL_ACTIONS);
  let count = 0;
  for (const m of row) count += m;
  let k = Math.floor(rand() * count);
  for (let a = 0; a < NUM_FULL_ACTIONS; a++) {
    if (row[a] && k-- === 0) return a;
  }
  throw new Error("environment has no valid action");
}

/** A policy choosing uniformly among each game's valid actions (seeded, deterministic). */
export function uniformPolicy(seed: number): PolicyFn {
  const rand = mulberry32(seed);
  return ({ validActionMasks, games }) =>
    games.map((_, i) => randomValidAction(validActionMasks, i, rand));
}

/**
 * Epsilon-greedy around `policy`: with probability `epsilon` (per environment and step)
 * a uniformly random valid action replaces the policy's choice.
 */
export function epsilonGreedy(policy: PolicyFn, epsilon: number, seed: number): PolicyFn {
  if (!(epsilon >= 0 && epsilon <= 1)) throw new RangeError(`epsilon ${epsilon} not in [0, 1]`);
  const rand = mulberry32(seed);
  return async (input) => {
    const greedy = Array.from(await policy(input));
    return greedy.map((a, i) =>
      rand() < epsilon ? randomValidAction(input.validActionMasks, i, rand) : a
    );
  };
}
