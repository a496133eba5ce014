/**
 * WGSL pieces shared by the normalization kernels: the workgroup tree sum (norm.ts,
 * fused_residual_norm.ts, group_norm.ts); layer norm's workgroup size and row statistics, so
 * that fused_residual_norm.ts's dropoutAddLayerNorm equals the unfused chain bit for bit; and
 * the layout of layer norm's column-sum kernels (the weight and bias gradients).
 *
 * @module
 */
import { f32 } from "../codegen/wgsl.ts";

/** Threads per row of the layer-norm kernels: a power of two in [32, 256], >= C if it can. */
export function layerNormWorkgroup(C: number): number {
  let wg = 32;
  while (wg < C && wg < 256) wg *= 2;
  return wg;
}

/**
 * WGSL: the tree arrays `ra` and `rb` of a kernel of `threads` threads and its entry point
 * (`builtins`: the parameters; by default the workgroup id `wid` and the thread `lid`).
 */
export function reduceEntryWgsl(
  threads: number,
  builtins = "@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32",
): string {
  return `var<workgroup> ra: array<f32, ${threads}>;
var<workgroup> rb: array<f32, ${threads}>;
@compute @workgroup_size(${threads})
fn main(${builtins}) {`;
}

/**
 * The fixed-order workgroup tree sum of `ra` and `rb` into `ta` and `tb` (wg threads; the
 * kernel declares `ra`, `rb`, `ta`, `tb` and `lid`).
 */
export const treeSumWgsl = (wg: number): string => `
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { ra[lid] += ra[lid + s]; rb[lid] += rb[lid + s]; }
    workgroupBarrier();
  }
  ta = ra[0];
  tb = rb[0];
  workgroupBarrier();`;

/**
 * WGSL: the rest of one row of the layer-norm forward once each thread holds its part of the
 * row's sum in `s`: the mean, the variance (second pass over `src`), `dst` = the normalized
 * row * w + b, and (mean, rstd) into `stats[row]`. Needs `base`, `row`, `lid`, `ta`, `tb`,
 * `ra`, `rb` in scope.
 */
export function layerNormRowWgsl(
  src: string,
  dst: string,
  C: number,
  wg: number,
  eps: number,
): string {
  return `  ra[lid] = s; rb[lid] = 0.0;
${treeSumWgsl(wg)}
  let mean = ta / ${C}.0;
  var q = 0.0;
  for (var c = lid; c < ${C}u; c += ${wg}u) { let d = ${src}[base + c] - mean; q += d * d; }
  ra[lid] = q; rb[lid] = 0.0;
${treeSumWgsl(wg)}
  let rstd = inverseSqrt(ta / ${C}.0 + ${f32(eps)});
  for (var c = lid; c < ${C}u; c += ${wg}u) {
    ${dst}[base + c] = (${src}[base + c] - mean) * rstd * w[c] + b[c];
  }
  if (lid == 0u) { stats[row * 2u] = mean; stats[row * 2u + 1u] = rstd; }`;
}

/** Columns per workgroup and thread groups of the column-sum kernels (256 threads). */
export const COL_SUM_COLS = 32;
export const COL_SUM_GROUPS = 8;

/** WGSL: the workgroup arrays and the entry point of a column-sum kernel. */
export const COL_SUM_ENTRY = reduceEntryWgsl(COL_SUM_COLS * COL_SUM_GROUPS);

/**
 * WGSL: a column-sum thread's place: `cl` among the 32 columns of column group `grp`, its
 * thread group `g` (the name given) and its column `c` (clamped to C - 1: every thread takes
 * part in the tree).
 */
export function columnIdsWgsl(g: string, C: number): string {
  return `  let cl = lid % ${COL_SUM_COLS}u;
  let ${g} = lid / ${COL_SUM_COLS}u;
  let c = min(grp * ${COL_SUM_COLS}u + cl, ${C - 1}u);`;
}

/**
 * WGSL: the fixed-order tree of each column's per-group sums `sw` and `sb` over the thread
 * groups `g`, then `store` (reading `ra[lid]`, `rb[lid]`) in group 0 for real columns.
 */
export function columnTreeWgsl(g: string, C: number, store: string): string {
  return `  ra[lid] = sw;
  rb[lid] = sb;
  workgroupBarrier();
  for (var s = ${COL_SUM_GROUPS / 2}u; s > 0u; s = s >> 1u) {
    if (${g} < s) { ra[lid] += ra[lid + s * ${COL_SUM_COLS}u]; rb[lid] += rb[lid + s * ${COL_SUM_COLS}u]; }
    workgroupBarrier();
  }
  if (${g} == 0u && grp * ${COL_SUM_COLS}u + cl < ${C}u) { ${store} }`;
}
