/**
 * Synthetic environments for the pretraining tests, producing token segment batches
 * directly (the tokenizer bypassed): a chain MDP with known optimal Q values, and a sprite
 * moving on a grid with action-dependent dynamics and rewards.
 *
 * @module
 */
import type { SegmentBatch } from "../../offline/mod.ts";
import { mulberry32 } from "../../envs/policies.ts";

/** Full action ids used by the synthetic environments. */
export const NOOP = 0, RIGHT = 3, LEFT = 4;

/** A deterministic environment over integer states. */
export interface TokenEnv {
  /** Tokens per observation. */
  P: number;
  /** Observation tokens of a state. */
  obs(s: number): number[];
  /** Valid full action ids. */
  actions: number[];
  numStates: number;
  step(s: number, a: number): { next: number; reward: number; done: boolean };
}

/**
 * Chain s0..s{n-1}: RIGHT gives +1 and moves right (ending the episode at the last state);
 * LEFT ends the episode with -1. Observation: P copies of the state id (plus one, so no state
 * looks like a padding frame of zeros).
 */
export function chainEnv(n: number, P = 4): TokenEnv {
  return {
    P,
    numStates: n,
    actions: [RIGHT, LEFT],
    obs: (s) => new Array(P).fill(s + 1),
    step: (s, a) =>
      a === LEFT
        ? { next: s, reward: -1, done: true }
        : { next: s + 1, reward: 1, done: s === n - 1 },
  };
}

/**
 * Optimal Q of the chain: Q(s, RIGHT) = sum_{k < n-s} gamma^k (the rewards still ahead,
 * discounted), Q(s, LEFT) = -1.
 */
export function chainOptimalQ(n: number, gamma: number): { right: number[]; left: number[] } {
  const right = Array.from({ length: n }, (_, s) => (1 - gamma ** (n - s)) / (1 - gamma));
  return { right, left: new Array(n).fill(-1) };
}

/**
 * A sprite on a side x side grid (token 1 + cell at its cell, 0 elsewhere, like a tokenizer
 * giving the sprite a code per location): RIGHT/LEFT move it one cell in raster order
 * (wrapping), NOOP keeps it. Reward +1 when RIGHT wraps to a new row, -1 when LEFT wraps to
 * the previous row, else 0. Never ends. Vocabulary: side^2 + 1.
 */
export function spriteEnv(side: number): TokenEnv {
  const P = side * side;
  return {
    P,
    numStates: P,
    actions: [NOOP, RIGHT, LEFT],
    obs: (s) => Array.from({ length: P }, (_, i) => (i === s ? 1 + i : 0)),
    step: (s, a) => {
      if (a === NOOP) return { next: s, reward: 0, done: false };
      const next = (s + (a === RIGHT ? 1 : P - 1)) % P;
      const reward = a === RIGHT && next % side === 0
        ? 1
        : a === LEFT && next % side === side - 1
        ? -1
        : 0;
      return { next, reward, done: false };
    },
  };
}

/**
 * A batch of B segments of L steps: start state and actions uniform; after a terminal step
 * the segment is padding (mask 0), as at an episode's end in a store.
 */
export function sampleSegments(
  env: TokenEnv,
  B: number,
  L: number,
  seed: number,
  taskId = 39,
  /** Probability of each of env.actions (default uniform). */
  probs?: number[],
): SegmentBatch {
  const rand = mulberry32(seed);
  const P = env.P;
  const tokens = new Uint16Array(B * L * P);
  const actions = new Int32Array(B * L);
  const rewards = new Float32Array(B * L);
  const terminals = new Uint8Array(B * L);
  const mask = new Uint8Array(B * L);
  for (let b = 0; b < B; b++) {
    let s = Math.floor(rand() * env.numStates);
    for (let t = 0; t < L; t++) {
      const k = b * L + t;
      tokens.set(env.obs(s), k * P);
      const a = pick(env.actions, probs, rand());
      const r = env.step(s, a);
      actions[k] = a;
      rewards[k] = r.reward;
      terminals[k] = r.done ? 1 : 0;
      mask[k] = 1;
      if (r.done) break;
      s = r.next;
    }
  }
  return {
    index: seed,
    batchSize: B,
    segmentLength: L,
    form: "tokens",
    tokens,
    actions,
    rewards,
    terminals,
    mask,
    taskIds: new Int32Array(B).fill(taskId),
    gameIndex: new Int32Array(B),
    starts: new Float64Array(B),
  };
}

/** One segment per state (L steps, every action `a`), for reading Q or predictions. */
export function statesBatch(env: TokenEnv, L: number, a: number, taskId = 39): SegmentBatch {
  const B = env.numStates;
  const b = sampleSegments(env, B, L, 0, taskId);
  b.tokens!.fill(0);
  b.mask.fill(0);
  for (let s = 0; s < B; s++) {
    b.tokens!.set(env.obs(s), s * L * env.P);
    b.actions[s * L] = a;
    b.mask[s * L] = 1;
  }
  return b;
}

function pick(actions: number[], probs: number[] | undefined, u: number): number {
  if (!probs) return actions[Math.floor(u * actions.length)];
  let acc = 0;
  for (let i = 0; i < actions.length; i++) {
    acc += probs[i];
    if (u < acc) return actions[i];
  }
  return actions[actions.length - 1];
}
