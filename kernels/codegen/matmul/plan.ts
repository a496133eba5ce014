/**
 * WGSL code generator for f32 batched matmul: C[b] = A[b]·B[b] (+ C[b]) (+ bias).
 *
 * Every size is baked into the generated text as a constant, and the hot loop is emitted as
 * straight-line code: the k-loop over a workgroup tile and the per-thread register block are
 * fully unrolled and the accumulators are separate `vec4` variables. naga clamps dynamic
 * indices into private arrays, which pushes them out of registers on NVIDIA (measured 2 vs 25
 * TFLOP/s on an H100), so the generated code has no private arrays at all.
 *
 * Layout of one workgroup: a TM x TN output tile, TK-deep slices of A and B staged in
 * workgroup memory as `vec4` rows indexed [k][m/4] and [k][n/4]. Each thread owns RM x RN
 * outputs in "split" layout (vec4 column groups tx, tx + TN/RN, ...), so neighbouring threads
 * read neighbouring vec4s from workgroup memory (no bank conflicts on the hot reads).
 * Bounds: a dimension that is a multiple of its tile has no tests at all; otherwise each load
 * tests a per-thread flag computed once before the k-loop, and stores take an unguarded path in
 * interior tiles and a guarded one only in edge tiles. Only the final partial k-slice tests K.
 * Global loads for the next k-slice are issued before the math on the current one, and
 * workgroup memory is double-buffered when the limit allows (one barrier per slice).
 * `splitK` (an extension) spreads long-K products with few output tiles over more workgroups.
 *
 * Decode shapes (M <= 16 rows, N > 16, K > 256, no k-sum) take the skinny kernel of
 * skinny.ts by default: K split WITHIN each workgroup (threads of a workgroup own disjoint
 * 4-wide k-chunks, <= 16 slices of 16 each, tree-reduced in workgroup memory), one workgroup
 * per M x C output block, one dispatch, no reduce pass. Occupancy and bandwidth, read from the
 * WGSL (no GPU measured yet), for the JOWA-150M decode GEMMs at M = 4 (H = 2, K = 4, 1 env):
 * - fc2 4x768x3072: C = 2 columns, S = 128 k-groups: 384 workgroups of 256 threads (98k
 *   threads: 2.9 workgroups, ~745 threads per SM of an H100), 6 chunks (24 k) per thread. The weight (9.4 MB) is read once, in 512-byte warp-contiguous runs; A (48 KB) hits
 *   L1/L2. At ~3 TB/s that is ~3.1 us of DRAM time against ~30 us for the old 24 workgroups
 *   x 192 serial slices, and 7 barrier steps of reduction (M = 4 adds each).
 * - qkv 4x2304x768 and fc1 4x3072x768: C = 8, S = 32: 288 / 384 workgroups, 6 chunks each.
 * - proj 4x768x768: C = 2, S = 128: 384 workgroups, 1.5 chunks each (latency of one load
 *   round plus the tree; the matmul is 2.4 MB of weight, under 1 us of bandwidth).
 * Work per thread is tiny, so these GEMMs run at the weight-streaming bound, which is the
 * decode roofline (arithmetic intensity ~ 2M/4 = 2 flop/byte at M = 4). At M = 16 the
 * reduction's workgroup memory is 16 x 256 x 4 = 16 KB (the WebGPU default limit); a smaller
 * limit lowers the threads per workgroup. The cross-workgroup split-K (`chooseDecodeSplit`)
 * remains only for k-sum products (bias gradients) of skinny shapes.
 *
 * Shape-generic inference products (`dynamicM`) of 17..1024 rows with K > 256 take the
 * split-rows kernel of split_rows.ts (the same idea with a 16 x 32 register-blocked tile: S
 * k-groups per workgroup, fixed-order reduction, one dispatch, WGSL independent of M).
 *
 * @module
 */

import { generateMatmul } from "./emit.ts";
import { grid } from "../wgsl.ts";
import type { EpilogueActivation } from "../activation.ts";
import { generateSplitReduce, type SplitK, splitOf, type SplitReduce } from "./split.ts";
import { chooseSkinny, generateSkinny, isSkinny, skinnyFits, type SkinnyShape } from "./skinny.ts";
import {
  chooseSplitRows,
  generateSplitRows,
  isSplitRows,
  type SplitRowsShape,
  splitRowsTile,
} from "./split_rows.ts";

/** One batched matmul. A is [batch, M, K], B is [batch, K, N], C is [batch, M, N]. */
export interface MatmulSpec {
  batch: number;
  M: number;
  N: number;
  K: number;
  /** A is stored [batch, K, M] (i.e. we use A^T) instead of [batch, M, K]. */
  transA: boolean;
  /** B is stored [batch, N, K] instead of [batch, K, N]. */
  transB: boolean;
  /** Element strides between batches; 0 broadcasts one matrix over the batch. */
  aBatchStride: number;
  bBatchStride: number;
  /** C = A·B + C (accumulate into existing output), for gradient accumulation. Default false. */
  accumulate?: boolean;
  /** Optional fused epilogue: add bias[N] (binding 3). Default false. */
  bias?: boolean;
  /**
   * Also write the sum over k of op(A) ("a": a [batch, M] vector) or of op(B) ("b": [batch,
   * N]) into the binding after C (and bias): a bias gradient computed alongside the weight
   * gradient that reads the same operand (G^T·X also gives sum_k G^T). Default: none.
   */
  sumK?: "a" | "b";
  /** Fused epilogue: apply this activation to A·B + bias (before residual and accumulate). */
  activation?: EpilogueActivation;
  /** Fused epilogue: add a residual R [batch, M, N] (the binding after bias) last. */
  residual?: boolean;
  /**
   * Extension: split K over several workgroups per output tile when there are too few tiles to
   * fill the GPU (weight gradients: small M x N, K = batch x tokens). "auto" lets the planner
   * decide, a number forces about that many parts (1: never). Default: skinny-M (decode)
   * products with a long K take the skinny kernel (K split inside each workgroup, one
   * dispatch, skinny.ts); with a k-sum they split across workgroups, see
   * {@link chooseDecodeSplit}. A split plan needs a scratch buffer and a second dispatch; see
   * `MatmulPlan.splitK`. Any explicit value (a number or "auto") bypasses the skinny kernel.
   */
  splitK?: number | "auto";
  /**
   * Prologue of skinny plans only (see skinny.ts): layer-norm each row of A (stored [M, K])
   * with this epsilon, scale gamma[K] and shift beta[K] (the two bindings after the
   * residual), before multiplying. planMatmul throws when the shape does not take the skinny
   * kernel (callers compose `layerNorm` + `matmul` then).
   */
  lnEps?: number;
  /** With `lnEps`: apply this activation to the normalized A (the Q head's LN + Mish). */
  lnAct?: "mish";
  /**
   * Epilogue of skinny plans only: C is the packed QKV projection of `seqs` x `t` rows; also
   * store its key/value columns into a KV cache [2, seqs, heads, cap, headSize] at position
   * start + i (two bindings last: the cache, read_write, and a uniform {start, length, 0, 0}).
   * `dtype` "f16": the cache holds f16 (values rounded, saturating, as they are stored;
   * absent: f32).
   */
  kvWrite?: {
    seqs: number;
    t: number;
    heads: number;
    headSize: number;
    cap: number;
    dtype?: "f16";
  };
  /**
   * Skinny plans only (`--precision f16` decoding): B is the weight's f16 copy (binding 1
   * holds f16, widened to f32 as it is loaded) and A, after any prologue, is rounded to f16
   * as it is loaded, as the f16 product (codegen/matmul/f16.ts) rounds its activations; f32
   * arithmetic. Absent: f32 B, and the WGSL of an f32 plan.
   */
  bHalf?: boolean;
  /**
   * Shape-generic rows (evaluation, where rows follow the number of environments and the
   * window): the WGSL does not depend on M, which it reads from a uniform `vec4<u32>` whose x
   * is M (the binding after the residual, or after bias / C); A, C and the residual are
   * runtime-sized and the grid follows M (the kernel reads `num_workgroups`). The tile
   * depends only on the bucket of M (three variants per N, K and flags; see
   * {@link dynamicMBucket}). Needs batch 1, A stored [M, K], no split-K, k-sum or skinny
   * prologue/epilogue.
   */
  dynamicM?: boolean;
}

/** The geometry of a product (MatmulSpec's required fields), shared by the f16 path. */
export type MatmulGeometry = Pick<
  MatmulSpec,
  "batch" | "M" | "N" | "K" | "transA" | "transB" | "aBatchStride" | "bBatchStride"
>;

/**
 * The rows a shape-generic plan's tile is chosen for: 16 (M <= 16), 256 (up to 1024 rows:
 * decode steps of many environments; with K > 256 the split-rows kernel) or 4096 (prefill windows, large products: the 128 x 128
 * tiles, which at 4096^3 ran 43 against 34 TFLOP/s for the 256 bucket's 64 x 64 on an H200).
 */
export function dynamicMBucket(M: number): number {
  return M <= 16 ? 16 : M <= 1024 ? 256 : 4096;
}

/** The three row buckets of shape-generic plans, one representative M each. */
export const DYNAMIC_M_BUCKETS: readonly number[] = [1, 17, 1025];

/** A generated kernel and how to dispatch it. */
export interface MatmulPlan {
  /** Complete WGSL, all sizes baked in as constants. */
  code: string;
  /** Dispatch size, each <= limits.maxComputeWorkgroupsPerDimension. */
  workgroups: [number, number, number];
  /** E.g. "matmul 64x2048x512 tB" for error messages. */
  label: string;
  /** The tiling picked (for logs and benchmarks). */
  tile: MatmulTile;
  /** 2 when workgroup memory allows double-buffered k-slices (one barrier per slice). */
  sharedBuffers: 1 | 2;
  /** Minimum sizes in bytes of the A, B, C (bias, k-sum) bindings; the shader declares them. */
  bindingBytes: { a: number; b: number; c: number; bias: number; residual: number; sum: number };
  /**
   * Present when K is split: this plan's kernel then binds 0: A, 1: B, 2: scratch (read_write,
   * `scratchBytes`), 3: the k-sum scratch (`sumScratchBytes`, when spec.sumK) and no bias;
   * afterwards dispatch `reduce` with 0: scratch (read), 1: C (read_write), 2: bias (when
   * spec.bias), the residual (when spec.residual), then the k-sum scratch (read) and the k-sum
   * (read_write) when spec.sumK. Both may go in one compute pass.
   */
  splitK?: { parts: number; scratchBytes: number; sumScratchBytes: number; reduce: SplitReduce };
  /**
   * Present for the skinny decode kernel (skinny.ts): C columns x S k-groups per workgroup;
   * `tile` then reads TM = M, TN = C, TK = 4 S (k per loop step), RM = M, RN = 1. Same
   * bindings as a plain plan (plus gamma, beta with `spec.lnEps`), one dispatch.
   */
  skinny?: SkinnyShape;
  /**
   * Present for shape-generic products of 17..1024 rows with a long K (split_rows.ts): S
   * k-groups per `tile` (one dispatch, same bindings as the plain shape-generic plan).
   */
  splitRows?: SplitRowsShape;
}

/** Device limits the planner respects. */
export interface MatmulLimits {
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupsPerDimension: number;
}

/** Workgroup tile TM x TN x TK; each thread computes RM x RN outputs (RM, RN in {4, 8}). */
export interface MatmulTile {
  TM: number;
  TN: number;
  TK: number;
  RM: number;
  RN: number;
}

/** Tiles from most to least work per thread; the planner takes the first that fills the GPU. */
const GENERAL_TILES: MatmulTile[] = [
  { TM: 128, TN: 128, TK: 16, RM: 8, RN: 8 },
  { TM: 128, TN: 64, TK: 16, RM: 8, RN: 4 },
  { TM: 64, TN: 128, TK: 16, RM: 4, RN: 8 },
  { TM: 64, TN: 64, TK: 16, RM: 4, RN: 8 },
  { TM: 32, TN: 32, TK: 16, RM: 4, RN: 4 },
];
/** Few rows (decode with 1..16 tokens): a short tile so little of the work is padding. */
const SKINNY_M_TILES: MatmulTile[] = [
  { TM: 16, TN: 128, TK: 16, RM: 4, RN: 4 },
  { TM: 16, TN: 64, TK: 16, RM: 4, RN: 4 },
  { TM: 16, TN: 32, TK: 16, RM: 4, RN: 4 },
];
const SKINNY_N_TILES: MatmulTile[] = SKINNY_M_TILES.map((t) => ({
  TM: t.TN,
  TN: t.TM,
  TK: t.TK,
  RM: t.RN,
  RN: t.RM,
}));
/** Every tile the planner may pick (tests force each one). */
export const MATMUL_TILES: readonly MatmulTile[] = [
  ...GENERAL_TILES,
  ...SKINNY_M_TILES,
  ...SKINNY_N_TILES,
];
/**
 * Unsplit products with K >= LONG_K that chose the 128 x 128 x 16 tile take it 32 deep instead
 * (half the k-loop trips and barriers; single-buffered where 64 KiB of workgroup memory is not
 * available). Measured on an H200 by bench/kernel_sweep_bench.ts: 43.4 against 38.3 TFLOP/s at
 * 4096^3, 1.93 against 2.22 ms at 18944x512x2048 and 1.06 against 1.10 ms with B^T + bias;
 * with K = 512 (16 slices) it lost (2.40 against 1.75 ms at 18944x2048x512 B^T + bias), and
 * split-K weight gradients were mixed, so they keep the 16-deep tile.
 */
export const LONG_K_TILE: MatmulTile = { TM: 128, TN: 128, TK: 32, RM: 8, RN: 8 };
const LONG_K = 2048;

function deepenForLongK(spec: MatmulSpec, tile: MatmulTile, limits: MatmulLimits): MatmulTile {
  const base = GENERAL_TILES[0];
  const same = tile.TM === base.TM && tile.TN === base.TN && tile.TK === base.TK &&
    tile.RM === base.RM && tile.RN === base.RN;
  const fits = threadsOf(LONG_K_TILE) <= limits.maxComputeInvocationsPerWorkgroup &&
    sharedBytesOf(LONG_K_TILE) <= limits.maxComputeWorkgroupStorageSize;
  return same && fits && spec.K >= LONG_K ? LONG_K_TILE : tile;
}

/** Enough workgroups to keep every SM of a large GPU busy (an H100 has 132). */
const TARGET_WORKGROUPS = 256;

/** Threads per workgroup for a tile. */
export function threadsOf(t: MatmulTile): number {
  return (t.TM / t.RM) * (t.TN / t.RN);
}

/** Workgroup memory bytes for a tile. */
function sharedBytesOf(t: MatmulTile): number {
  return (t.TM + t.TN) * t.TK * 4;
}

/** Tiles of the shape's family that fit the limits, largest first. */
function candidatesFor(spec: MatmulSpec, limits: MatmulLimits): MatmulTile[] {
  const fits = (t: MatmulTile) =>
    threadsOf(t) <= limits.maxComputeInvocationsPerWorkgroup &&
    sharedBytesOf(t) <= limits.maxComputeWorkgroupStorageSize;
  let family = GENERAL_TILES;
  if (spec.M <= 16 && spec.N > 16) family = SKINNY_M_TILES;
  else if (spec.N <= 16 && spec.M > 16) family = SKINNY_N_TILES;
  const candidates = family.filter(fits);
  if (candidates.length === 0) {
    throw new Error(`matmul: no tile fits the device limits ${JSON.stringify(limits)}`);
  }
  return candidates;
}

/** Output tiles (workgroups without split-K) for a tile. */
function tileCount(spec: MatmulSpec, t: MatmulTile): number {
  return Math.ceil(spec.M / t.TM) * Math.ceil(spec.N / t.TN) * spec.batch;
}

/** A tile more than twice the matrix in either dimension is mostly padding (16 is the least). */
function sensible(spec: MatmulSpec, t: MatmulTile): boolean {
  return (t.TM <= 2 * spec.M || t.TM <= 16) && (t.TN <= 2 * spec.N || t.TN <= 16);
}

/**
 * Relative per-workgroup-slot throughput by outputs per thread: bigger register blocks do more
 * math per shared-memory read. Rough guesses, to be recalibrated with bench on a GPU.
 */
function efficiency(t: MatmulTile): number {
  const block = t.RM * t.RN;
  return block >= 64 ? 1 : block >= 32 ? 0.8 : 0.5;
}

/**
 * Estimated cost (arbitrary units) of a tile split `parts` ways: padded work divided by
 * efficiency and by how much of the GPU the workgroups occupy; a split pays a little for the
 * scratch round trip.
 */
function estimate(spec: MatmulSpec, t: MatmulTile, parts: number): number {
  const padded = Math.ceil(spec.M / t.TM) * t.TM * Math.ceil(spec.N / t.TN) * t.TN;
  const occupancy = Math.min(1, (tileCount(spec, t) * parts) / TARGET_WORKGROUPS);
  return (padded / (efficiency(t) * occupancy)) * (parts > 1 ? 1.05 : 1);
}

/** Picks a tile for the shape (no split-K): the lowest estimated cost, larger tiles on ties. */
export function chooseTile(spec: MatmulSpec, limits: MatmulLimits): MatmulTile {
  const candidates = candidatesFor(spec, limits);
  const usable = candidates.filter((t) => sensible(spec, t));
  let best = usable[0] ?? candidates[candidates.length - 1];
  for (const t of usable) if (estimate(spec, t, 1) < estimate(spec, best, 1)) best = t;
  return best;
}

/** Split-K worth doing only when each part keeps at least this many k-slices. */
const MIN_SLICES_PER_PART = 8;
const MAX_PARTS = 16;
/** Below both (about 10 us of math or of memory traffic on a big GPU) split-K never pays. */
const SPLIT_MIN_FLOPS = 2 ** 28;
const SPLIT_MIN_BYTES = 32 * 2 ** 20;

/**
 * For `splitK: "auto"`: the tile and number of K parts with the lowest estimated cost, or null
 * when not splitting is best (or the problem is too small for a second dispatch to pay).
 */
export function chooseSplit(
  spec: MatmulSpec,
  limits: MatmulLimits,
): { tile: MatmulTile; parts: number } | null {
  const flops = 2 * spec.M * spec.N * spec.K * spec.batch;
  const bytes = 4 * spec.K * (spec.M + spec.N) * spec.batch;
  if (flops < SPLIT_MIN_FLOPS && bytes < SPLIT_MIN_BYTES) return null;
  const plain = chooseTile(spec, limits);
  let best = { tile: plain, parts: 1, cost: estimate(spec, plain, 1) };
  for (const t of candidatesFor(spec, limits)) {
    if (!sensible(spec, t)) continue;
    const most = Math.min(MAX_PARTS, Math.floor(spec.K / (MIN_SLICES_PER_PART * t.TK)));
    for (let parts = 2; parts <= most; parts++) {
      const cost = estimate(spec, t, parts);
      if (cost < best.cost) best = { tile: t, parts, cost };
    }
  }
  return best.parts > 1 ? { tile: best.tile, parts: best.parts } : null;
}

/** Decode GEMMs (M <= 16) aim for this many workgroups: two per SM of an H100 (132 SMs). */
export const DECODE_WORKGROUPS = 264;
/** ... and at most this many TK-deep k-slices per thread (the serial loop of one workgroup). */
export const DECODE_MAX_SLICES = 16;
const DECODE_MAX_PARTS = 64;

/**
 * The default for skinny-M products with a k-sum (`sumK`; the others take the skinny kernel,
 * see skinny.ts): decode-like shapes (M <= 16 rows, N > 16) whose K exceeds
 * DECODE_MAX_SLICES slices: such a GEMM has few output tiles and a long serial k-loop, so it
 * is latency-bound (fc2 of 150M, 16x768x3072: 24 workgroups of 192 slices each). K is split
 * into parts of at most DECODE_MAX_SLICES slices, and more parts (down to 2 slices each, and
 * scratch traffic at most a quarter of B's) until the grid reaches DECODE_WORKGROUPS. Among
 * the skinny tiles, the first that reaches the target with the most threads in flight wins;
 * if none does, the one with the most workgroups. Null when K is short enough already.
 */
export function chooseDecodeSplit(
  spec: MatmulSpec,
  limits: MatmulLimits,
): { tile: MatmulTile; parts: number } | null {
  if (spec.M > 16 || spec.N <= 16) return null;
  let best: { tile: MatmulTile; parts: number; wgs: number; threads: number } | null = null;
  for (const t of candidatesFor(spec, limits)) {
    if (!sensible(spec, t)) continue;
    const slices = Math.ceil(spec.K / t.TK);
    if (slices <= DECODE_MAX_SLICES) return null;
    const tiles = tileCount(spec, t);
    const least = Math.ceil(slices / DECODE_MAX_SLICES);
    const most = Math.max(
      least,
      Math.min(DECODE_MAX_PARTS, Math.floor(slices / 2), Math.floor(spec.K / (4 * spec.M))),
    );
    let pick = { parts: 1, wgs: 0 };
    for (let p = least; p <= most; p++) {
      const parts = splitOf(spec.K, t.TK, p).parts;
      if (parts > pick.parts || pick.wgs === 0) pick = { parts, wgs: tiles * parts };
      if (pick.wgs >= DECODE_WORKGROUPS) break;
    }
    const cand = { tile: t, parts: pick.parts, wgs: pick.wgs, threads: pick.wgs * threadsOf(t) };
    const reaches = (c: { wgs: number }) => c.wgs >= DECODE_WORKGROUPS;
    if (
      !best || (reaches(cand) && !reaches(best)) ||
      (reaches(cand) === reaches(best) &&
        (reaches(cand) ? cand.threads > best.threads : cand.wgs > best.wgs))
    ) best = cand;
  }
  return best && best.parts > 1 ? { tile: best.tile, parts: best.parts } : null;
}

/** Validates a spec; throws with a readable message. */
function checkSpec(spec: MatmulSpec): void {
  for (const key of ["batch", "M", "N", "K"] as const) {
    const v = spec[key];
    if (!Number.isInteger(v) || v < 1) throw new Error(`matmul: ${key} must be >= 1, got ${v}`);
  }
  for (const key of ["aBatchStride", "bBatchStride"] as const) {
    const v = spec[key];
    if (!Number.isInteger(v) || v < 0) throw new Error(`matmul: ${key} must be >= 0, got ${v}`);
  }
  const sk = spec.splitK;
  if (sk !== undefined && sk !== "auto" && !(Number.isInteger(sk) && sk >= 1)) {
    throw new Error(`matmul: splitK must be "auto" or an integer >= 1, got ${sk}`);
  }
}

/** Short human label, e.g. "matmul 64x2048x512 tB". */
export function matmulLabel(spec: MatmulSpec): string {
  const flags = [
    spec.batch > 1 ? `b${spec.batch}` : "",
    spec.transA ? "tA" : "",
    spec.transB ? "tB" : "",
    spec.accumulate ? "acc" : "",
    spec.bias ? "bias" : "",
    spec.sumK ? `sum${spec.sumK.toUpperCase()}` : "",
    spec.activation ?? "",
    spec.residual ? "res" : "",
    spec.lnEps !== undefined ? `ln${spec.lnAct ? `+${spec.lnAct}` : ""}` : "",
    spec.kvWrite ? (spec.kvWrite.dtype === "f16" ? "kv f16" : "kv") : "",
    spec.bHalf ? "w f16" : "",
  ].filter((s) => s).join(" ");
  const bucket = spec.dynamicM ? dynamicMBucket(spec.M) : 0;
  const M = spec.dynamicM
    ? `*${bucket === 16 ? "<=16" : bucket === 256 ? "<=1024" : ">1024"}`
    : spec.M;
  return `matmul ${M}x${spec.N}x${spec.K}${flags ? " " + flags : ""}`;
}

/**
 * Plans a batched matmul: picks a tiling, generates the WGSL and the dispatch size.
 *
 * Bindings: @group(0) @binding(0) A (read), 1: B (read), 2: C (read_write, [batch, M, N]
 * contiguous), 3: bias[N] (read) when `spec.bias`, then the residual [batch, M, N] (read)
 * when `spec.residual`, then the k-sum (read_write, [batch, M] or
 * [batch, N]) when `spec.sumK`. The shader declares fixed-size arrays, so
 * each binding must be at least `plan.bindingBytes` long (WebGPU validates this at dispatch).
 */
export function planMatmul(
  spec: MatmulSpec,
  limits: MatmulLimits,
  override?: MatmulTile,
): MatmulPlan {
  checkSpec(spec);
  if (spec.dynamicM) return planDynamicM(spec, limits, override);
  if (spec.splitK === undefined && !override && isSkinny(spec)) return planSkinny(spec, limits);
  if (spec.lnEps !== undefined || spec.kvWrite || spec.bHalf) {
    throw new Error(
      `matmul: layer-norm, KV and f16-weight plans need a skinny shape, got ` +
        matmulLabel(spec),
    );
  }
  let tile = override ?? chooseTile(spec, limits);
  let split: SplitK | null = null;
  if (typeof spec.splitK === "number" && spec.splitK >= 2) {
    split = splitOf(spec.K, tile.TK, Math.floor(spec.splitK));
  } else if (spec.splitK === undefined && !override) {
    const choice = chooseDecodeSplit(spec, limits);
    if (choice) {
      tile = choice.tile;
      split = splitOf(spec.K, tile.TK, choice.parts);
    }
  } else if (spec.splitK === "auto") {
    const choice = chooseSplit(spec, limits);
    if (choice) {
      tile = override ?? choice.tile;
      split = splitOf(spec.K, tile.TK, choice.parts);
    }
  }
  if (split && split.parts < 2) split = null;
  if (!override && !split) tile = deepenForLongK(spec, tile, limits);
  checkTile(tile, limits);
  const label = matmulLabel(spec) + (split ? ` split${split.parts}` : "");
  const parts = split?.parts ?? 1;
  const workgroups = grid(
    tileCount(spec, tile) * parts,
    limits.maxComputeWorkgroupsPerDimension,
  );
  const sizes = bindingSizes(spec);
  // The kernel's binding 2 is the scratch [parts, batch, M, N] when split.
  const cElems = sizes.c * parts;
  const slices = split ? Math.min(split.chunk / tile.TK, split.lastFull) : spec.K / tile.TK;
  const sharedBuffers = sharedBuffersFor(tile, slices, limits);
  const code = generateMatmul(
    spec,
    tile,
    workgroups,
    { ...sizes, c: cElems, sum: sizes.sum * parts },
    label,
    sharedBuffers,
    split,
  );
  const plan: MatmulPlan = {
    code,
    workgroups,
    label,
    tile,
    sharedBuffers,
    bindingBytes: byteSizes(sizes),
  };
  if (split) {
    const reduce = generateSplitReduce(
      {
        ...spec,
        parts,
        accumulate: !!spec.accumulate,
        bias: !!spec.bias,
        residual: !!spec.residual,
        sum: sizes.sum,
      },
      limits.maxComputeWorkgroupsPerDimension,
      label,
    );
    plan.splitK = {
      parts,
      scratchBytes: cElems * 4,
      sumScratchBytes: sizes.sum * parts * 4,
      reduce,
    };
  }
  return plan;
}

/**
 * A shape-generic plan (`spec.dynamicM`): the tile is chosen for the bucket of M, the WGSL
 * reads M at run time, and `workgroups` is this M's grid (callers dispatch other M with
 * {@link dynamicMGrid}).
 */
function planDynamicM(spec: MatmulSpec, limits: MatmulLimits, override?: MatmulTile): MatmulPlan {
  if (
    spec.batch !== 1 || spec.transA || spec.splitK !== undefined || spec.sumK ||
    spec.lnEps !== undefined || spec.kvWrite || spec.bHalf
  ) {
    throw new Error(
      `matmul: shape-generic rows need batch 1, A not transposed, no split-K, k-sum or ` +
        `prologue, got ${matmulLabel(spec)}`,
    );
  }
  const rows = { ...spec, M: dynamicMBucket(spec.M) };
  const label = matmulLabel(spec);
  // 17..1024 rows with a long K: K split inside each workgroup (split_rows.ts).
  if (!override && rows.M === 256 && isSplitRows(spec)) {
    const tile = splitRowsTile(spec);
    const shape = chooseSplitRows(spec, tile, limits);
    if (shape) {
      const sizes = bindingSizes(spec);
      return {
        code: generateSplitRows(spec, tile, shape, sizes, `${label} split-rows`),
        workgroups: dynamicMGrid(spec, tile, limits),
        label: `${label} split-rows`,
        tile,
        sharedBuffers: shape.buffers,
        bindingBytes: { ...byteSizes(sizes), sum: 0 },
        splitRows: shape,
      };
    }
  }
  const tile = override ?? deepenForLongK(rows, chooseTile(rows, limits), limits);
  checkTile(tile, limits);
  const workgroups = dynamicMGrid(spec, tile, limits);
  const sizes = bindingSizes(spec);
  // Double buffering depends on K and the tile only.
  const sharedBuffers = sharedBuffersFor(tile, spec.K / tile.TK, limits);
  const code = generateMatmul(spec, tile, workgroups, sizes, label, sharedBuffers, null);
  return {
    code,
    workgroups,
    label,
    tile,
    sharedBuffers,
    bindingBytes: { ...byteSizes(sizes), sum: 0 },
  };
}

/** The grid of a shape-generic plan with `tile` for `spec.M` rows. */
export function dynamicMGrid(
  spec: MatmulSpec,
  tile: MatmulTile,
  limits: MatmulLimits,
): [number, number, number] {
  return grid(tileCount(spec, tile), limits.maxComputeWorkgroupsPerDimension);
}

/** The skinny decode plan (skinny.ts): one dispatch, K split inside each workgroup. */
function planSkinny(spec: MatmulSpec, limits: MatmulLimits): MatmulPlan {
  if (!skinnyFits(spec, limits)) {
    throw new Error(`matmul: ${matmulLabel(spec)} does not fit the skinny kernel's limits`);
  }
  const shape = chooseSkinny(spec, limits);
  const label = `${matmulLabel(spec)} skinny`;
  const workgroups = grid(
    spec.batch * Math.ceil(spec.N / shape.C),
    limits.maxComputeWorkgroupsPerDimension,
  );
  const sizes = bindingSizes(spec);
  const code = generateSkinny(spec, shape, workgroups, sizes, label, {
    lnEps: spec.lnEps,
    lnAct: spec.lnAct,
  });
  return {
    code,
    workgroups,
    label,
    tile: { TM: spec.M, TN: shape.C, TK: 4 * shape.S, RM: spec.M, RN: 1 },
    sharedBuffers: 1,
    bindingBytes: { ...byteSizes(sizes), sum: 0 },
    skinny: shape,
  };
}

function checkTile(t: MatmulTile, limits: MatmulLimits): void {
  const ok = t.TM % t.RM === 0 && t.TN % t.RN === 0 && t.RM % 4 === 0 && t.RN % 4 === 0 &&
    t.TK % 4 === 0 && threadsOf(t) <= limits.maxComputeInvocationsPerWorkgroup &&
    sharedBytesOf(t) <= limits.maxComputeWorkgroupStorageSize;
  if (!ok) throw new Error(`matmul: unusable tile ${JSON.stringify(t)}`);
}

/**
 * Workgroup buffers of a tiled plan: double buffering (2) needs twice the workgroup memory
 * and at least two full k-slices.
 */
function sharedBuffersFor(tile: MatmulTile, slices: number, limits: MatmulLimits): 1 | 2 {
  return 2 * sharedBytesOf(tile) <= limits.maxComputeWorkgroupStorageSize && slices >= 2 ? 2 : 1;
}

/** {@link bindingSizes} in bytes (f32). */
function byteSizes(sizes: ReturnType<typeof bindingSizes>) {
  return {
    a: sizes.a * 4,
    b: sizes.b * 4,
    c: sizes.c * 4,
    bias: sizes.bias * 4,
    residual: sizes.residual * 4,
    sum: sizes.sum * 4,
  };
}

/** Element counts each binding must hold. */
export function bindingSizes(
  spec: MatmulSpec,
): { a: number; b: number; c: number; bias: number; residual: number; sum: number } {
  const last = spec.batch - 1;
  return {
    a: last * spec.aBatchStride + spec.M * spec.K,
    b: last * spec.bBatchStride + spec.K * spec.N,
    c: spec.batch * spec.M * spec.N,
    bias: spec.bias ? spec.N : 0,
    residual: spec.residual ? spec.batch * spec.M * spec.N : 0,
    sum: spec.sumK === "a" ? spec.batch * spec.M : spec.sumK === "b" ? spec.batch * spec.N : 0,
  };
}
