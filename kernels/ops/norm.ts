/**
 * Layer norm over the last axis. The forward keeps per-row mean and 1/std for the backward;
 * the weight and bias gradients are column sums over rows.
 */
import { record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, f32, grid, linearWorkgroup } from "../codegen/wgsl.ts";

function workgroupFor(C: number): number {
  let wg = 32;
  while (wg < C && wg < 256) wg *= 2;
  return wg;
}

const TREE = (wg: number) => `
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { ra[lid] += ra[lid + s]; rb[lid] += rb[lid + s]; }
    workgroupBarrier();
  }
  ta = ra[0];
  tb = rb[0];
  workgroupBarrier();`;

/** y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis (biased variance). */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const C = x.shape[x.rank - 1];
  // The kernels bind array<f32>: another dtype's bits would be read as garbage.
  if (x.dtype !== "f32" || weight.dtype !== "f32" || bias.dtype !== "f32") {
    throw new Error(
      `layerNorm: f32 tensors only, got ${x.dtype}, ${weight.dtype} and ${bias.dtype}`,
    );
  }
  if (x.rank === 0) throw new Error("layerNorm: needs at least one axis");
  if (weight.rank !== 1 || weight.shape[0] !== C || bias.rank !== 1 || bias.shape[0] !== C) {
    throw new Error(
      `layerNorm: weight [${weight.shape}] and bias [${bias.shape}] must be [${C}] for input [${x.shape}]`,
    );
  }
  const rows = x.size / C;
  const y = Tensor.empty(x.shape, "f32");
  const stats = Tensor.empty([rows, 2], "f32"); // mean, rstd
  const wg = workgroupFor(C);
  const kernel = planCache(`ln|${C}|${rows}|${eps}`, () => ({
    code: `${binding(0, "x", "f32")}
${binding(1, "w", "f32")}
${binding(2, "b", "f32")}
${binding(3, "y", "f32", true)}
${binding(4, "stats", "f32", true)}
var<workgroup> ra: array<f32, ${wg}>;
var<workgroup> rb: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = ${linearWorkgroup(rows)};
  if (row >= ${rows}u) { return; }
  let base = row * ${C}u;
  var ta = 0.0;
  var tb = 0.0;
  var s = 0.0;
  for (var c = lid; c < ${C}u; c += ${wg}u) { s += x[base + c]; }
  ra[lid] = s; rb[lid] = 0.0;
${TREE(wg)}
  let mean = ta / ${C}.0;
  var q = 0.0;
  for (var c = lid; c < ${C}u; c += ${wg}u) { let d = x[base + c] - mean; q += d * d; }
  ra[lid] = q; rb[lid] = 0.0;
${TREE(wg)}
  let rstd = inverseSqrt(ta / ${C}.0 + ${f32(eps)});
  for (var c = lid; c < ${C}u; c += ${wg}u) {
    y[base + c] = (x[base + c] - mean) * rstd * w[c] + b[c];
  }
  if (lid == 0u) { stats[row * 2u] = mean; stats[row * 2u + 1u] = rstd; }
}
`,
    label: "layerNorm",
    workgroups: grid(rows),
  }));
  runtime().dispatch(kernel, [
    x.buffer,
    weight.buffer,
    bias.buffer,
    y.buffer,
    stats.buffer,
  ]);
  const out = record(y, "layerNorm", [x, weight, bias], (g) => {
    const g2 = g.view([rows, C]);
    const x2 = x.view([rows, C]);
    const dx = x.requiresGrad
      ? layerNormInputGrad(g2, x2, weight, stats, C, rows, wg).view(x.shape)
      : null;
    if (!weight.requiresGrad && !bias.requiresGrad) return [dx, null, null];
    // Both column sums in one pass (xhat recomputed from the saved statistics).
    const [dw, db] = layerNormParamGrads(g2, x2, stats, C, rows);
    if (!weight.requiresGrad) dw.dispose();
    if (!bias.requiresGrad) db.dispose();
    return [dx, weight.requiresGrad ? dw : null, bias.requiresGrad ? db : null];
  });
  // Without a tape nothing will read the statistics again.
  if (!out.node) stats.dispose();
  return out;
}

/** Columns per workgroup and row groups of `layerNormParamGrads` (256 threads). */
const PG_COLS = 32;
const PG_ROWS = 8;

/**
 * The weight and bias gradients of a layer norm as ONE column-sum kernel: dw[c] = sum_r
 * g[r, c] * (x[r, c] - mean_r) * rstd_r and db[c] = sum_r g[r, c]. A workgroup owns 32
 * columns (threads along c read 128-byte row segments) and 8 row groups that stride over the
 * rows; the 8 partials are tree-reduced in workgroup memory in a fixed order (deterministic).
 */
function layerNormParamGrads(
  g: Tensor,
  x: Tensor,
  stats: Tensor,
  C: number,
  rows: number,
): [Tensor, Tensor] {
  const dw = Tensor.empty([C], "f32");
  const db = Tensor.empty([C], "f32");
  const groups = Math.ceil(C / PG_COLS);
  const kernel = planCache(`lnp|${C}|${rows}`, () => {
    const code = `${binding(0, "g", "f32")}
${binding(1, "x", "f32")}
${binding(2, "stats", "f32")}
${binding(3, "dw", "f32", true)}
${binding(4, "db", "f32", true)}
var<workgroup> ra: array<f32, ${PG_COLS * PG_ROWS}>;
var<workgroup> rb: array<f32, ${PG_COLS * PG_ROWS}>;
@compute @workgroup_size(${PG_COLS * PG_ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let grp = ${linearWorkgroup(groups)};
  if (grp >= ${groups}u) { return; }
  let cl = lid % ${PG_COLS}u;
  let rg = lid / ${PG_COLS}u;
  let c = min(grp * ${PG_COLS}u + cl, ${C - 1}u);
  var sw = 0.0;
  var sb = 0.0;
  for (var r = rg; r < ${rows}u; r += ${PG_ROWS}u) {
    let gv = g[r * ${C}u + c];
    sw += gv * (x[r * ${C}u + c] - stats[r * 2u]) * stats[r * 2u + 1u];
    sb += gv;
  }
  ra[lid] = sw;
  rb[lid] = sb;
  workgroupBarrier();
  for (var s = ${PG_ROWS / 2}u; s > 0u; s = s >> 1u) {
    if (rg < s) { ra[lid] += ra[lid + s * ${PG_COLS}u]; rb[lid] += rb[lid + s * ${PG_COLS}u]; }
    workgroupBarrier();
  }
  if (rg == 0u && grp * ${PG_COLS}u + cl < ${C}u) { dw[c] = ra[lid]; db[c] = rb[lid]; }
}
`;
    return { code, label: "layerNorm.grad_wb", workgroups: grid(groups) };
  });
  runtime().dispatch(kernel, [g.buffer, x.buffer, stats.buffer, dw.buffer, db.buffer]);
  return [dw, db];
}

function layerNormInputGrad(
  g: Tensor,
  x: Tensor,
  w: Tensor,
  stats: Tensor,
  C: number,
  rows: number,
  wg: number,
): Tensor {
  const dx = Tensor.empty([rows, C], "f32");
  const kernel = planCache(`lnx|${C}|${rows}|${wg}`, () => {
    const code = `${binding(0, "g", "f32")}
${binding(1, "x", "f32")}
${binding(2, "w", "f32")}
${binding(3, "stats", "f32")}
${binding(4, "dx", "f32", true)}
var<workgroup> ra: array<f32, ${wg}>;
var<workgroup> rb: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = ${linearWorkgroup(rows)};
  if (row >= ${rows}u) { return; }
  let base = row * ${C}u;
  let mean = stats[row * 2u];
  let rstd = stats[row * 2u + 1u];
  var ta = 0.0;
  var tb = 0.0;
  var sa = 0.0; var sb = 0.0;
  for (var c = lid; c < ${C}u; c += ${wg}u) {
    let gx = g[base + c] * w[c];
    let xh = (x[base + c] - mean) * rstd;
    sa += gx; sb += gx * xh;
  }
  ra[lid] = sa; rb[lid] = sb;
${TREE(wg)}
  let ma = ta / ${C}.0; let mb = tb / ${C}.0;
  for (var c = lid; c < ${C}u; c += ${wg}u) {
    let gx = g[base + c] * w[c];
    let xh = (x[base + c] - mean) * rstd;
    dx[base + c] = rstd * (gx - ma - xh * mb);
  }
}
`;
    return { code, label: "layerNorm.grad_x", workgroups: grid(rows) };
  });
  runtime().dispatch(kernel, [
    g.buffer,
    x.buffer,
    w.buffer,
    stats.buffer,
    dx.buffer,
  ]);
  return dx;
}
