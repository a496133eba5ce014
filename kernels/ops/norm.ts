/**
 * Layer norm over the last axis. The forward keeps per-row mean and 1/std for the backward;
 * the weight and bias gradients are column sums over rows.
 */
import { record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, grid, linearWorkgroup } from "../codegen/wgsl.ts";
import { dimsBuffer, dimsDecl, GENERIC_BUILTINS, GENERIC_LINEAR, genericKernel } from "./dims.ts";
import {
  COL_SUM_COLS,
  COL_SUM_ENTRY,
  COL_SUM_GROUPS,
  columnIdsWgsl,
  columnTreeWgsl,
  layerNormRowWgsl,
  layerNormWorkgroup,
  reduceEntryWgsl,
  treeSumWgsl,
} from "./_norm_wgsl.ts";

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
  const wg = layerNormWorkgroup(C);
  // Rows are a run-time dim (one pipeline for every number of rows).
  const kernel = genericKernel(`ln|${C}|${eps}`, rows, () => ({
    code: `${binding(0, "x", "f32")}
${binding(1, "w", "f32")}
${binding(2, "b", "f32")}
${binding(3, "y", "f32", true)}
${binding(4, "stats", "f32", true)}
${dimsDecl(5)}
${reduceEntryWgsl(wg, GENERIC_BUILTINS)}
  let row = ${GENERIC_LINEAR};
  if (row >= dims.x) { return; }
  let base = row * ${C}u;
  var ta = 0.0;
  var tb = 0.0;
  var s = 0.0;
  for (var c = lid; c < ${C}u; c += ${wg}u) { s += x[base + c]; }
${layerNormRowWgsl("x", "y", C, wg, eps)}
}
`,
    label: "layerNorm",
  }));
  runtime().dispatch(kernel, [
    x.buffer,
    weight.buffer,
    bias.buffer,
    y.buffer,
    stats.buffer,
    dimsBuffer(rows),
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

/** Rows per row block at least (32 per row group), and the pass-1 grid aimed at. */
const PG_MIN_BLOCK_ROWS = 256;
const PG_TARGET_WORKGROUPS = 1024;

/**
 * Row blocks of `layerNormParamGrads` for `rows` x C: 1 (one pass) for few rows, else enough
 * blocks to give the GPU about PG_TARGET_WORKGROUPS workgroups (a JOWA-40M step, 18944 x 512:
 * 64 blocks of 296 rows, 1024 workgroups, against 16 workgroups of 2368 rows in one pass).
 */
export function layerNormParamBlocks(rows: number, C: number): number {
  const groups = Math.ceil(C / COL_SUM_COLS);
  return Math.max(
    1,
    Math.min(Math.ceil(rows / PG_MIN_BLOCK_ROWS), Math.ceil(PG_TARGET_WORKGROUPS / groups)),
  );
}

/**
 * The weight and bias gradients of a layer norm as column sums: dw[c] = sum_r g[r, c] *
 * (x[r, c] - mean_r) * rstd_r and db[c] = sum_r g[r, c]. Pass 1: a workgroup owns 32 columns
 * (threads along c read 128-byte row segments) of one block of rows, and 8 row groups that
 * stride over the block; the 8 partials are tree-reduced in workgroup memory. With one block
 * that is the result (one dispatch); with several, pass 1 writes per-block partials and pass 2
 * adds them up per column in block order. Every order is fixed by (rows, C): deterministic.
 * `blocks` overrides the row-block count (benchmarks; default {@link layerNormParamBlocks}).
 */
export function layerNormParamGrads(
  g: Tensor,
  x: Tensor,
  stats: Tensor,
  C: number,
  rows: number,
  blocks: number = layerNormParamBlocks(rows, C),
): [Tensor, Tensor] {
  if (!Number.isInteger(blocks) || blocks < 1 || blocks > rows) {
    throw new Error(
      `layerNormParamGrads: blocks must be an integer in [1, ${rows}], got ${blocks}`,
    );
  }
  const dw = Tensor.empty([C], "f32");
  const db = Tensor.empty([C], "f32");
  const groups = Math.ceil(C / COL_SUM_COLS);
  const span = Math.ceil(rows / blocks);
  const total = groups * blocks;
  const kernel = planCache(`lnp|${C}|${rows}|${blocks}`, () => {
    const code = `${binding(0, "g", "f32")}
${binding(1, "x", "f32")}
${binding(2, "stats", "f32")}
${binding(3, "dw", "f32", true)}
${binding(4, "db", "f32", true)}
${COL_SUM_ENTRY}
  let lin = ${linearWorkgroup(total)};
  if (lin >= ${total}u) { return; }
  // Neighbouring workgroups take neighbouring columns of the same rows.
  let grp = lin % ${groups}u;
  let blk = lin / ${groups}u;
${columnIdsWgsl("rg", C)}
  let r1 = min((blk + 1u) * ${span}u, ${rows}u);
  var sw = 0.0;
  var sb = 0.0;
  for (var r = blk * ${span}u + rg; r < r1; r += ${COL_SUM_GROUPS}u) {
    let gv = g[r * ${C}u + c];
    sw += gv * (x[r * ${C}u + c] - stats[r * 2u]) * stats[r * 2u + 1u];
    sb += gv;
  }
${columnTreeWgsl("rg", C, `dw[blk * ${C}u + c] = ra[lid]; db[blk * ${C}u + c] = rb[lid];`)}
}
`;
    return { code, label: "layerNorm.grad_wb", workgroups: grid(total) };
  });
  if (blocks === 1) {
    runtime().dispatch(kernel, [g.buffer, x.buffer, stats.buffer, dw.buffer, db.buffer]);
    return [dw, db];
  }
  const pw = Tensor.empty([blocks, C], "f32");
  const pb = Tensor.empty([blocks, C], "f32");
  runtime().dispatch(kernel, [g.buffer, x.buffer, stats.buffer, pw.buffer, pb.buffer]);
  const sum = planCache(`lnp2|${C}|${blocks}`, () => {
    const code = `${binding(0, "pw", "f32")}
${binding(1, "pb", "f32")}
${binding(2, "dw", "f32", true)}
${binding(3, "db", "f32", true)}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = ${linearWorkgroup(Math.ceil(C / 64))} * 64u + lid;
  if (c >= ${C}u) { return; }
  var sw = 0.0;
  var sb = 0.0;
  for (var k = 0u; k < ${blocks}u; k++) { sw += pw[k * ${C}u + c]; sb += pb[k * ${C}u + c]; }
  dw[c] = sw;
  db[c] = sb;
}
`;
    return { code, label: "layerNorm.grad_wb.sum", workgroups: grid(Math.ceil(C / 64)) };
  });
  runtime().dispatch(sum, [pw.buffer, pb.buffer, dw.buffer, db.buffer]);
  pw.dispose();
  pb.dispose();
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
${reduceEntryWgsl(wg)}
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
${treeSumWgsl(wg)}
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
