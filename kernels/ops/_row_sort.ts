/**
 * A deterministic, stable GPU sort of row indices: the permutation that orders positions
 * 0..N-1 by (row, position). The scatter-add backward of `indexSelect` sums each row's
 * contributions in that order, so its bits do not depend on thread timing (float atomics
 * would add in whatever order threads arrive).
 *
 * LSD radix sort with digits of at most {@link MAX_DIGIT_BITS} bits (one pass for up to 2048
 * rows, two up to 4M). Each pass is two dispatches and uses no order-dependent atomics:
 * - `rank`: one workgroup per tile of {@link TILE} positions counts its digits (workgroup
 *   atomics on u32 counts: the totals do not depend on order) and gives each position its
 *   stable rank among equal digits of its tile (the number of earlier equal digits).
 * - `place`: one workgroup turns the digit-major [digit][tile] counts into exclusive offsets
 *   and writes every position to offset + rank.
 * Rows are clamped to [0, V) as `indexSelect` clamps them (indices computed on the GPU).
 *
 * @module
 */
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, grid, linearWorkgroup } from "../codegen/wgsl.ts";

/** Positions per tile (one per thread of a `rank` workgroup). */
export const TILE = 256;
/** Largest digit per pass: 2^11 u32 counts (8 KiB) fit any device's workgroup memory. */
export const MAX_DIGIT_BITS = 11;

/** Radix passes and digit bits per pass for `V` rows. */
export function radixPlan(V: number): { passes: number; bits: number } {
  const total = V <= 2 ? 1 : 32 - Math.clz32(V - 1);
  const passes = Math.ceil(total / MAX_DIGIT_BITS);
  return { passes, bits: Math.ceil(total / passes) };
}

/** WGSL: the clamped row of position `pos` (as `indexSelect` clamps it). */
const rowOf = (pos: string, V: number) => `u32(clamp(i32(idx[${pos}]), 0, ${V - 1}))`;

/**
 * The stable sort permutation of `idx` (any shape, N elements, rows clamped to [0, V)):
 * a u32 tensor [N] listing positions by ascending row, equal rows by ascending position.
 */
export function sortRowsStable(idx: Tensor, V: number): Tensor {
  const N = idx.size;
  const { passes, bits } = radixPlan(V);
  const R = 1 << bits;
  const tiles = Math.ceil(N / TILE);
  const lr = Tensor.empty([N], "u32");
  const counts = Tensor.empty([R * tiles], "u32");
  let src: Tensor | null = null;
  let dst = Tensor.empty([N], "u32");
  for (let p = 0; p < passes; p++) {
    const key = `${idx.dtype}|${N}|${V}|${bits}|${p}`;
    const shift = p * bits;
    // Pass 0 sorts the positions themselves; later passes reorder the previous permutation.
    const pos = (i: string) => p === 0 ? i : `src[${i}]`;
    const digit = (i: string) => `((${rowOf(pos(i), V)} >> ${shift}u) & ${R - 1}u)`;
    const srcDecl = p === 0 ? "" : `${binding(3, "src", "u32")}\n`;
    const rank = planCache(`rowSort.rank|${key}`, () => ({
      code: `${binding(0, "idx", idx.dtype)}
${binding(1, "lr", "u32", true)}
${binding(2, "counts", "u32", true)}
${srcDecl}var<workgroup> hist: array<atomic<u32>, ${R}>;
var<workgroup> digits: array<u32, ${TILE}>;
@compute @workgroup_size(${TILE})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tile = ${linearWorkgroup(tiles)};
  if (tile >= ${tiles}u) { return; }
  for (var b = lid; b < ${R}u; b += ${TILE}u) { atomicStore(&hist[b], 0u); }
  workgroupBarrier();
  let i = tile * ${TILE}u + lid;
  let live = i < ${N}u;
  var d = ${R}u; // never equal to a real digit
  if (live) {
    d = ${digit("i")};
    atomicAdd(&hist[d], 1u);
  }
  digits[lid] = d;
  workgroupBarrier();
  if (live) {
    var r = 0u;
    for (var j = 0u; j < lid; j++) { r += select(0u, 1u, digits[j] == d); }
    lr[i] = r;
  }
  for (var b = lid; b < ${R}u; b += ${TILE}u) { counts[b * ${tiles}u + tile] = atomicLoad(&hist[b]); }
}
`,
      label: "rowSort.rank",
      workgroups: grid(tiles),
    }));
    const E = R * tiles;
    const chunk = Math.ceil(E / TILE);
    const place = planCache(`rowSort.place|${key}`, () => ({
      code: `${binding(0, "idx", idx.dtype)}
${binding(1, "lr", "u32")}
${binding(2, "counts", "u32", true)}
${srcDecl}${binding(p === 0 ? 3 : 4, "dst", "u32", true)}
var<workgroup> part: array<u32, ${TILE}>;
@compute @workgroup_size(${TILE})
fn main(@builtin(local_invocation_index) lid: u32) {
  // Exclusive scan of the digit-major counts: each thread owns one contiguous chunk.
  let lo = min(lid * ${chunk}u, ${E}u);
  let hi = min(lo + ${chunk}u, ${E}u);
  var s = 0u;
  for (var k = lo; k < hi; k++) { s += counts[k]; }
  part[lid] = s;
  workgroupBarrier();
  var base = 0u;
  for (var j = 0u; j < lid; j++) { base += part[j]; }
  for (var k = lo; k < hi; k++) {
    let c = counts[k];
    counts[k] = base;
    base += c;
  }
  storageBarrier();
  for (var i = lid; i < ${N}u; i += ${TILE}u) {
    dst[counts[${digit("i")} * ${tiles}u + i / ${TILE}u] + lr[i]] = ${pos("i")};
  }
}
`,
      label: "rowSort.place",
      workgroups: [1, 1, 1],
    }));
    const common = [idx.buffer, lr.buffer, counts.buffer];
    runtime().dispatch(rank, src ? [...common, src.buffer] : common);
    runtime().dispatch(place, src ? [...common, src.buffer, dst.buffer] : [...common, dst.buffer]);
    if (p + 1 < passes) {
      const next: Tensor = src ?? Tensor.empty([N], "u32");
      src = dst;
      dst = next;
    }
  }
  lr.dispose();
  counts.dispose();
  src?.dispose();
  return dst;
}
