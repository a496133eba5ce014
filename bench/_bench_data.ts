/**
 * Random inputs shared by benchmarks: token segments shaped like a sampler's batch.
 *
 * @module
 */
import type { SegmentBatch } from "../offline/mod.ts";

/** Random token segments of one game (Phoenix's 8 valid actions, task 37), seeded. */
export function randomSegmentBatch(
  B: number,
  L: number,
  vocab: number,
  seed: number,
): SegmentBatch {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const acts = [0, 1, 3, 4, 5, 11, 12, 13];
  return {
    index: seed,
    batchSize: B,
    segmentLength: L,
    form: "tokens",
    tokens: Uint16Array.from({ length: B * L * 36 }, () => Math.floor(rand() * vocab)),
    actions: Int32Array.from({ length: B * L }, () => acts[Math.floor(rand() * acts.length)]),
    rewards: Float32Array.from({ length: B * L }, () => Math.floor(rand() * 3) - 1),
    terminals: new Uint8Array(B * L),
    mask: new Uint8Array(B * L).fill(1),
    taskIds: new Int32Array(B).fill(37),
    gameIndex: new Int32Array(B),
    starts: new Float64Array(B),
  };
}

/** A planning context per environment: `window` timesteps ending on an observation token. */
export function randomPlanningContext(
  N: number,
  window: number,
  obsTokens: number,
  vocab: number,
): Int32Array {
  const t = window * (obsTokens + 1) - 1;
  return Int32Array.from({ length: N * t }, (_, i) => {
    const off = (i % t) % (obsTokens + 1);
    return off === obsTokens ? i % 6 : (i * 7919) % vocab;
  });
}
