/**
 * softmax, log-softmax and logsumexp along the last axis: one workgroup per row, max
 * subtracted first so nothing overflows.
 */
import { record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { Tensor } from "../core/tensor.ts";
import { binding } from "../codegen/wgsl.ts";
import { dimsBuffer, dimsDecl, GENERIC_BUILTINS, GENERIC_LINEAR, genericKernel } from "./dims.ts";
import { mapKernel } from "./map.ts";

type Mode = "softmax" | "logsoftmax" | "logsumexp";

function workgroupFor(C: number): number {
  let wg = 32;
  while (wg < C && wg < 256) wg *= 2;
  return wg;
}

/** WGSL: a workgroup tree reduction of `v` into `red[0]` with `op`. */
function treeReduce(wg: number, op: string): string {
  return `  red[lid] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { let x = red[lid]; let y = red[lid + s]; red[lid] = ${op}; }
    workgroupBarrier();
  }
  total = red[0];
  workgroupBarrier();`;
}

/**
 * WGSL: the workgroup memory and entry point of a row kernel (one workgroup of `wg` lanes per
 * row of `C`), through `base` (the row's first element) and `total` (what `treeReduce` sets).
 */
function rowMain(wg: number, C: number): string {
  return `var<workgroup> red: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(${GENERIC_BUILTINS}) {
  let row = ${GENERIC_LINEAR};
  if (row >= dims.x) { return; }
  let base = row * ${C}u;
  var total = 0.0;`;
}

function forwardKernel(x: Tensor, mode: Mode): Tensor {
  if (x.rank === 0) throw new Error(`${mode}: needs at least one axis`);
  // The kernel binds array<f32>: another dtype's bits would be read as garbage.
  if (x.dtype !== "f32") throw new Error(`${mode}: f32 input only, got ${x.dtype}`);
  const C = x.shape[x.rank - 1];
  if (C === 0) throw new Error(`${mode}: empty last axis`);
  const rows = x.size / C;
  const outShape = mode === "logsumexp" ? x.shape.slice(0, -1) : x.shape;
  const out = Tensor.empty(outShape, "f32");
  if (rows === 0) return out;
  // Rows are a run-time dim (one pipeline for every number of rows).
  const kernel = genericKernel(`sm|${mode}|${C}`, rows, () => {
    const wg = workgroupFor(C);
    const write = {
      softmax:
        `for (var c = lid; c < ${C}u; c += ${wg}u) { y[base + c] = exp(x[base + c] - m) / sum; }`,
      logsoftmax:
        `for (var c = lid; c < ${C}u; c += ${wg}u) { y[base + c] = x[base + c] - m - log(sum); }`,
      logsumexp: `if (lid == 0u) { y[row] = m + log(sum); }`,
    }[mode];
    const code = `${binding(0, "x", "f32")}
${binding(1, "y", "f32", true)}
${dimsDecl(2)}
${rowMain(wg, C)}
  var v = -3.4028234663852886e38;
  for (var c = lid; c < ${C}u; c += ${wg}u) { v = max(v, x[base + c]); }
${treeReduce(wg, "max(x, y)")}
  let m = total;
  v = 0.0;
  for (var c = lid; c < ${C}u; c += ${wg}u) { v += exp(x[base + c] - m); }
${treeReduce(wg, "x + y")}
  let sum = total;
  ${write}
}
`;
    return { code, label: mode };
  });
  runtime().dispatch(kernel, [x.buffer, out.buffer, dimsBuffer(rows)]);
  return out;
}

/** Row-wise backward: dx = f(g, y, rowsum(h(g, y))). */
function backwardKernel(
  label: string,
  g: Tensor,
  y: Tensor,
  rowTerm: string,
  outExpr: string,
): Tensor {
  const C = y.shape[y.rank - 1];
  const rows = y.size / C;
  const dx = Tensor.empty(y.shape, "f32");
  const kernel = genericKernel(`smb|${label}|${C}|${rowTerm}|${outExpr}`, rows, () => {
    const wg = workgroupFor(C);
    const code = `${binding(0, "g", "f32")}
${binding(1, "y", "f32")}
${binding(2, "dx", "f32", true)}
${dimsDecl(3)}
${rowMain(wg, C)}
  var v = 0.0;
  for (var c = lid; c < ${C}u; c += ${wg}u) { let gi = g[base + c]; let yi = y[base + c]; v += ${rowTerm}; }
${treeReduce(wg, "x + y")}
  for (var c = lid; c < ${C}u; c += ${wg}u) {
    let gi = g[base + c]; let yi = y[base + c];
    dx[base + c] = ${outExpr};
  }
}
`;
    return { code, label: label };
  });
  runtime().dispatch(kernel, [g.buffer, y.buffer, dx.buffer, dimsBuffer(rows)]);
  return dx;
}

/** Softmax over the last axis. */
export function softmax(x: Tensor): Tensor {
  const y = forwardKernel(x, "softmax");
  return record(y, "softmax", [x], (g) => [
    backwardKernel("softmax.grad", g, y, "gi * yi", "yi * (gi - total)"),
  ]);
}

/** Log-softmax over the last axis. */
export function logSoftmax(x: Tensor): Tensor {
  const y = forwardKernel(x, "logsoftmax");
  return record(y, "logSoftmax", [x], (g) => [
    backwardKernel("logSoftmax.grad", g, y, "gi", "gi - exp(yi) * total"),
  ]);
}

/** log(sum(exp(x))) over the last axis (the axis is removed). */
export function logsumexp(x: Tensor): Tensor {
  const y = forwardKernel(x, "logsumexp");
  return record(y, "logsumexp", [x], (g) => {
    const keep = [...x.shape.slice(0, -1), 1];
    return [mapKernel("logsumexp.grad", [g.view(keep), x, y.view(keep)], "a * exp(b - c)")];
  });
}
