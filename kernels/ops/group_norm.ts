/**
 * Group norm over NCHW images (torch.nn.GroupNorm: biased variance over each group's
 * channels and pixels, per-channel affine). One workgroup per (image, group) in fused
 * kernels like `layerNorm`; the forward keeps each group's mean and 1/std for the backward.
 */
import { record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, f32, grid, linearWorkgroup } from "../codegen/wgsl.ts";
import { mapKernel } from "./map.ts";
import { dimsBuffer, dimsDecl, GENERIC_BUILTINS, GENERIC_LINEAR, genericKernel } from "./dims.ts";
import { sum } from "./reduce.ts";
import { treeSumWgsl } from "./_norm_wgsl.ts";

const WG = 256;

/** Tree-reduces ra and rb over the workgroup into ta and tb. */
const TREE = treeSumWgsl(WG);

/**
 * y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c], statistics over each of `groups`
 * groups of C / groups channels (and all pixels) per image. x [N, C, H, W], weight/bias [C].
 */
export function groupNorm(
  x: Tensor,
  groups: number,
  weight: Tensor,
  bias: Tensor,
  eps = 1e-6,
): Tensor {
  if (x.rank !== 4 || x.dtype !== "f32") {
    throw new Error(`groupNorm: input [${x.shape}] must be f32 NCHW`);
  }
  const [N, C, H, W] = x.shape;
  if (!Number.isInteger(groups) || groups < 1 || C % groups !== 0) {
    throw new Error(`groupNorm: ${C} channels do not split into ${groups} groups`);
  }
  if (weight.rank !== 1 || weight.shape[0] !== C || bias.rank !== 1 || bias.shape[0] !== C) {
    throw new Error(`groupNorm: weight [${weight.shape}] and bias [${bias.shape}] must be [${C}]`);
  }
  const HW = H * W, size = (C / groups) * HW, rows = N * groups;
  const y = Tensor.empty(x.shape);
  const mean = Tensor.empty([N, groups, 1]);
  const rstd = Tensor.empty([N, groups, 1]);
  // Rows (images x groups) are a run-time dim: one pipeline for every batch.
  const key = `gn|${C}|${groups}|${HW}|${eps}`;
  const kernel = genericKernel(key, rows, () => ({
    label: "groupNorm",
    code: `${binding(0, "x", "f32")}
${binding(1, "w", "f32")}
${binding(2, "b", "f32")}
${binding(3, "y", "f32", true)}
${binding(4, "mean_g", "f32", true)}
${binding(5, "rstd_g", "f32", true)}
${dimsDecl(6)}
var<workgroup> ra: array<f32, ${WG}>;
var<workgroup> rb: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(${GENERIC_BUILTINS}) {
  let row = ${GENERIC_LINEAR};
  if (row >= dims.x) { return; }
  let base = row * ${size}u;
  let c0 = (row % ${groups}u) * ${C / groups}u;
  var ta = 0.0;
  var tb = 0.0;
  var s = 0.0;
  for (var i = lid; i < ${size}u; i += ${WG}u) { s += x[base + i]; }
  ra[lid] = s; rb[lid] = 0.0;
${TREE}
  let mu = ta / ${f32(size)};
  var q = 0.0;
  for (var i = lid; i < ${size}u; i += ${WG}u) { let d = x[base + i] - mu; q += d * d; }
  ra[lid] = q; rb[lid] = 0.0;
${TREE}
  let r = inverseSqrt(ta / ${f32(size)} + ${f32(eps)});
  for (var i = lid; i < ${size}u; i += ${WG}u) {
    let c = c0 + i / ${HW}u;
    y[base + i] = (x[base + i] - mu) * r * w[c] + b[c];
  }
  if (lid == 0u) { mean_g[row] = mu; rstd_g[row] = r; }
}
`,
  }));
  if (x.size > 0) {
    runtime().dispatch(kernel, [
      x.buffer,
      weight.buffer,
      bias.buffer,
      y.buffer,
      mean.buffer,
      rstd.buffer,
      dimsBuffer(rows),
    ]);
  }
  const out = record(y, "groupNorm", [x, weight, bias], (g) => {
    const dx = x.requiresGrad
      ? groupNormInputGrad(g, x, weight, mean, rstd, groups).view(x.shape)
      : null;
    let dw: Tensor | null = null;
    if (weight.requiresGrad) {
      // g * xhat, xhat recomputed from the saved statistics, summed over images and pixels.
      const prod = mapKernel(
        "groupNorm.grad_w",
        [g.view([N, groups, size]), x.view([N, groups, size]), mean, rstd],
        "a * (b - c) * d",
      );
      dw = sum(sum(prod.view([N, C, HW]), 2), 0);
    }
    const db = bias.requiresGrad ? sum(sum(g.view([N, C, HW]), 2), 0) : null;
    return [dx, dw, db];
  });
  if (!out.node) {
    mean.dispose();
    rstd.dispose();
  }
  return out;
}

/** dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)) per group, with gw = g * weight[c]. */
function groupNormInputGrad(
  g: Tensor,
  x: Tensor,
  w: Tensor,
  mean: Tensor,
  rstd: Tensor,
  groups: number,
): Tensor {
  const [N, C, H, W] = x.shape;
  const HW = H * W, size = (C / groups) * HW, rows = N * groups;
  const dx = Tensor.empty(x.shape);
  const code = `${binding(0, "g", "f32")}
${binding(1, "x", "f32")}
${binding(2, "w", "f32")}
${binding(3, "mean_g", "f32")}
${binding(4, "rstd_g", "f32")}
${binding(5, "dx", "f32", true)}
var<workgroup> ra: array<f32, ${WG}>;
var<workgroup> rb: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = ${linearWorkgroup(rows)};
  if (row >= ${rows}u) { return; }
  let base = row * ${size}u;
  let c0 = (row % ${groups}u) * ${C / groups}u;
  let mu = mean_g[row];
  let r = rstd_g[row];
  var ta = 0.0;
  var tb = 0.0;
  var sa = 0.0;
  var sb = 0.0;
  for (var i = lid; i < ${size}u; i += ${WG}u) {
    let gw = g[base + i] * w[c0 + i / ${HW}u];
    sa += gw;
    sb += gw * (x[base + i] - mu) * r;
  }
  ra[lid] = sa; rb[lid] = sb;
${TREE}
  let ma = ta / ${f32(size)};
  let mb = tb / ${f32(size)};
  for (var i = lid; i < ${size}u; i += ${WG}u) {
    let gw = g[base + i] * w[c0 + i / ${HW}u];
    let xh = (x[base + i] - mu) * r;
    dx[base + i] = r * (gw - ma - xh * mb);
  }
}
`;
  runtime().dispatch({ code, label: "groupNorm.grad_x", workgroups: grid(rows) }, [
    g.buffer,
    x.buffer,
    w.buffer,
    mean.buffer,
    rstd.buffer,
    dx.buffer,
  ]);
  return dx;
}
