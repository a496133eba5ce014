/**
 * The mixed batch of fine-tuning's second stage: `real` segments from the data followed by
 * `synthetic` planning-imagined segments from the replay buffer (paper: 24 + 8; public code:
 * 16 + 16), as the arrays of train/world_batch.ts plus the COMBO masks:
 *
 * - world loss (observation, reward, termination): real segments only (the authors compute it
 *   on `[:real_batch_size]`): the synthetic segments' world masks are zeroed;
 * - TD loss: every transition of both parts;
 * - COMBO: push-down rows = every real timestep of both parts, push-up rows = the real part's.
 *
 * @module
 */
import type { SegmentBatch } from "../offline/mod.ts";
import type { SyntheticSegments } from "./synthesis.ts";
import { type WorldBatchArrays, worldBatchArrays, type WorldBatchOptions } from "./world_batch.ts";

/** A mixed batch: items 0..real-1 are real, the rest synthetic. */
export interface MixedBatch {
  arrays: WorldBatchArrays;
  real: number;
  synthetic: number;
  /** f32 [B*L]: COMBO push-down rows. */
  negativeMask: Float32Array;
  /** f32 [B*L]: COMBO push-up rows (real items only). */
  positiveMask: Float32Array;
  /** i32 [B*L]: the action of every row (the COMBO positive term's). */
  rowActions: Int32Array;
  /** i32 [S, L, P] synthetic observation tokens (to append after the real part's). */
  syntheticTokens: Int32Array;
}

/** Concatenate a real batch and synthetic segments (same L) into one mixed batch. */
export function mixedBatch(
  real: SegmentBatch,
  syn: SyntheticSegments,
  opts: WorldBatchOptions = {},
): MixedBatch {
  const Br = real.batchSize, S = syn.count, L = real.segmentLength, B = Br + S;
  if (syn.L !== L) throw new Error(`synthetic segments have ${syn.L} steps, real ones ${L}`);
  const join = (
    out: Int32Array | Float32Array | Uint8Array | Uint16Array,
    a: ArrayLike<number>,
    b: ArrayLike<number>,
  ) => {
    out.set(a);
    out.set(b, a.length);
    return out;
  };
  const i32 = (a: ArrayLike<number>, b: ArrayLike<number>) =>
    join(new Int32Array(a.length + b.length), a, b) as Int32Array;
  const merged: SegmentBatch = {
    ...real,
    batchSize: B,
    frames: undefined,
    tokens: real.tokens
      ? join(new Uint16Array(B * L * syn.P), real.tokens, syn.tokens) as Uint16Array
      : undefined,
    actions: i32(real.actions, syn.actions),
    rewards: join(new Float32Array(B * L), real.rewards, syn.rewards) as Float32Array,
    terminals: join(new Uint8Array(B * L), real.terminals, new Uint8Array(S * L)) as Uint8Array,
    mask: join(new Uint8Array(B * L), real.mask, new Uint8Array(S * L).fill(1)) as Uint8Array,
    taskIds: i32(real.taskIds, syn.taskIds),
    gameIndex: i32(real.gameIndex, new Int32Array(S)),
    starts: new Float64Array(B),
  };
  const arrays = worldBatchArrays(merged, opts);
  if (!real.tokens) arrays.obsTokens = null; // the real part's tokens come from the tokenizer
  const negativeMask = Float32Array.from(merged.mask);
  const positiveMask = Float32Array.from(merged.mask).fill(0, Br * L);
  // No world loss on imagined data: zero its observation, reward and termination masks.
  arrays.stepMask.fill(0, Br * L);
  arrays.obsMask.fill(0, Br * (L * arrays.P - 1));
  return {
    arrays,
    real: Br,
    synthetic: S,
    negativeMask,
    positiveMask,
    rowActions: Int32Array.from(merged.actions),
    syntheticTokens: syn.tokens,
  };
}
