/**
 * Synthetic segments between data-parallel ranks (train/finetuner.ts): each rank synthesizes
 * from its own real shard, rank 0 gathers the new segments (rank order = the order a single
 * process makes them in) into the one replay buffer, samples the step's global synthetic batch
 * and broadcasts it; rank r trains on its slice. Segments travel as bytes (`pack`/`unpack`).
 *
 * @module
 */
import type { SyntheticSegments } from "./synthesis.ts";

/** Bytes of `s`: header i32 [count, L, P], then tokens, actions, rewards, task ids. */
export function packSegments(s: SyntheticSegments): Uint8Array {
  const parts = [Int32Array.of(s.count, s.L, s.P), s.tokens, s.actions, s.rewards, s.taskIds];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    out.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), off);
    off += p.byteLength;
  }
  return out;
}

/** Inverse of {@link packSegments}. */
export function unpackSegments(bytes: Uint8Array): SyntheticSegments {
  const copy = bytes.slice(); // aligned, owned
  const [count, L, P] = new Int32Array(copy.buffer, 0, 3);
  let off = 12;
  const take = <T>(ctor: new (b: ArrayBuffer, o: number, n: number) => T, n: number): T => {
    const v = new ctor(copy.buffer, off, n);
    off += n * 4;
    return v;
  };
  const s: SyntheticSegments = {
    count,
    L,
    P,
    tokens: take(Int32Array, count * L * P),
    actions: take(Int32Array, count * L),
    rewards: take(Float32Array, count * L),
    taskIds: take(Int32Array, count),
  };
  if (off !== copy.length) {
    throw new Error(`synthetic segments: ${copy.length} bytes, ${off} expected`);
  }
  return s;
}

/** Segments `[lo, hi)` of `s`. */
export function sliceSegments(s: SyntheticSegments, lo: number, hi: number): SyntheticSegments {
  const { L, P } = s;
  return {
    count: hi - lo,
    L,
    P,
    tokens: s.tokens.slice(lo * L * P, hi * L * P),
    actions: s.actions.slice(lo * L, hi * L),
    rewards: s.rewards.slice(lo * L, hi * L),
    taskIds: s.taskIds.slice(lo, hi),
  };
}

/** The segments of `parts`, concatenated in order. */
export function concatSegments(
  parts: SyntheticSegments[],
  L: number,
  P: number,
): SyntheticSegments {
  const count = parts.reduce((a, p) => a + p.count, 0);
  const out: SyntheticSegments = {
    count,
    L,
    P,
    tokens: new Int32Array(count * L * P),
    actions: new Int32Array(count * L),
    rewards: new Float32Array(count * L),
    taskIds: new Int32Array(count),
  };
  let n = 0;
  for (const p of parts) {
    out.tokens.set(p.tokens, n * L * P);
    out.actions.set(p.actions, n * L);
    out.rewards.set(p.rewards, n * L);
    out.taskIds.set(p.taskIds, n);
    n += p.count;
  }
  return out;
}
