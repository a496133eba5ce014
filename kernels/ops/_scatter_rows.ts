/**
 * The two kernels behind `scatterAddRows` (kernels/ops/gather.ts): out[v] = sum of g[n] over
 * the positions n with row(n) == v, each output element adding its row's contributions in
 * ascending position order from 0 (rows clamped to [0, V) as `indexSelect` clamps them).
 * Both give the same bits as a sequential f32 sum on the CPU, on every run:
 * - `scatterRowsDirect`: each output element scans all N positions (one dispatch; for small
 *   N and V x N).
 * - `scatterRowsSorted`: a stable GPU sort of the positions by row (`sortRowsStable`), then
 *   each output element binary-searches its row's run and sums it.
 * No float atomics, and every output element is written (no zero-fill).
 *
 * @module
 */
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, grid, linearWorkgroup } from "../codegen/wgsl.ts";
import { sortRowsStable } from "./_row_sort.ts";

const WG = 256;

/** [V, ...rest] sizes; g holds N rows of D = size / V. */
function dims(g: Tensor, idx: Tensor, shape: readonly number[]) {
  const V = shape[0];
  const size = shape.reduce((a, b) => a * b, 1);
  const D = size / Math.max(V, 1);
  const N = idx.size;
  if (g.dtype !== "f32") throw new Error(`scatterAddRows: f32 gradient only, got ${g.dtype}`);
  if (g.size !== N * D) {
    throw new Error(`scatterAddRows: gradient [${g.shape}] does not match ${N} rows of ${D}`);
  }
  if (N === 0 || size === 0) throw new Error("scatterAddRows: empty input (caller zero-fills)");
  return { V, D, N, size, groups: Math.ceil(size / WG) };
}

/** Each output element scans every position in order: V x D threads, N steps each. */
export function scatterRowsDirect(g: Tensor, idx: Tensor, shape: readonly number[]): Tensor {
  const { V, D, N, size, groups } = dims(g, idx, shape);
  const out = Tensor.empty(shape, "f32");
  const kernel = planCache(`scatterRows.direct|${idx.dtype}|${N}|${V}|${D}`, () => ({
    code: `${binding(0, "g", "f32")}
${binding(1, "idx", idx.dtype)}
${binding(2, "out", "f32", true)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (j >= ${size}u) { return; }
  let v = i32(j / ${D}u);
  let d = j % ${D}u;
  var acc = 0.0;
  for (var n = 0u; n < ${N}u; n++) {
    if (clamp(i32(idx[n]), 0, ${V - 1}) == v) { acc += g[n * ${D}u + d]; }
  }
  out[j] = acc;
}
`,
    label: "scatterAddRows.direct",
    workgroups: grid(groups),
  }));
  runtime().dispatch(kernel, [g.buffer, idx.buffer, out.buffer]);
  return out;
}

/** Sort positions by row, then each output element sums its row's run of the permutation. */
export function scatterRowsSorted(g: Tensor, idx: Tensor, shape: readonly number[]): Tensor {
  const { V, D, N, size, groups } = dims(g, idx, shape);
  const perm = sortRowsStable(idx, V);
  const out = Tensor.empty(shape, "f32");
  const row = (i: string) => `clamp(i32(idx[perm[${i}]]), 0, ${V - 1})`;
  const kernel = planCache(`scatterRows.sorted|${idx.dtype}|${N}|${V}|${D}`, () => ({
    code: `${binding(0, "g", "f32")}
${binding(1, "idx", idx.dtype)}
${binding(2, "perm", "u32")}
${binding(3, "out", "f32", true)}
// First sorted position whose row is >= v.
fn lowerBound(v: i32) -> u32 {
  var lo = 0u;
  var hi = ${N}u;
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    if (${row("mid")} < v) { lo = mid + 1u; } else { hi = mid; }
  }
  return lo;
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (j >= ${size}u) { return; }
  let v = i32(j / ${D}u);
  let d = j % ${D}u;
  let end = lowerBound(v + 1);
  var acc = 0.0;
  for (var i = lowerBound(v); i < end; i++) { acc += g[perm[i] * ${D}u + d]; }
  out[j] = acc;
}
`,
    label: "scatterAddRows",
    workgroups: grid(groups),
  }));
  runtime().dispatch(kernel, [g.buffer, idx.buffer, perm.buffer, out.buffer]);
  perm.dispose();
  return out;
}
