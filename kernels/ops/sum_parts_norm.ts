/**
 * Decoding's per-layer sum of partial products, done once (no gradient):
 *
 *   h = residual + bias + parts[0] + ... + parts[P-1]     (fixed order: deterministic)
 *   n = layerNorm(h) (weight, bias, eps; the `layerNorm` op's two-pass formula)
 *
 * for parts [P, ...rows, K] (e.g. the per-head projections of cached_attention.ts
 * `cachedAttentionProj`). Returns both: h is the next residual, n the next matmul's input (a
 * decode layer's fc1), which then reads n once instead of each of its workgroups re-summing
 * the P partials and recomputing the row statistics (a skinny fc1 at 16 rows has ~384
 * workgroups; each re-read P x rows x K floats).
 *
 * One workgroup per row (threads = K/4 rounded up to a power of two, 32..256): it sums the row
 * into workgroup memory, writes h, tree-reduces the mean and variance, and writes n. Rows are
 * read at run time (kernels/ops/dims.ts), so one pipeline serves every number of rows.
 *
 * @module
 */
import { isGradEnabled } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { Tensor } from "../core/tensor.ts";
import { f32 } from "../codegen/wgsl.ts";
import { dimsBuffer, dimsDecl, GENERIC_BUILTINS, GENERIC_LINEAR, genericKernel } from "./dims.ts";
import { add } from "./elementwise.ts";
import { sum } from "./reduce.ts";
import { layerNorm } from "./norm.ts";

/** A layer norm's parameters. */
export interface NormParams {
  weight: Tensor;
  bias: Tensor;
  eps?: number;
}

const ceilPow2 = (x: number) => 2 ** Math.ceil(Math.log2(Math.max(1, x)));

/**
 * h = residual + bias + sum_p parts[p] and n = layerNorm(h): one dispatch where K % 4 == 0
 * and nothing needs a gradient, else the composition of `add`, `sum` and `layerNorm` (same
 * formula). parts [P, ...rows, K], residual [...rows, K], bias [K].
 */
export function sumPartsNorm(
  parts: Tensor,
  residual: Tensor,
  bias: Tensor,
  ln: NormParams,
): { h: Tensor; n: Tensor } {
  const K = residual.shape[residual.rank - 1];
  if (parts.rank !== residual.rank + 1 || parts.shape.slice(1).join() !== residual.shape.join()) {
    throw new Error(`sumPartsNorm: parts [${parts.shape}] must be [P, ${residual.shape}]`);
  }
  for (const [name, t] of [["bias", bias], ["ln weight", ln.weight], ["ln bias", ln.bias]]) {
    const x = t as Tensor;
    if (x.rank !== 1 || x.shape[0] !== K || x.dtype !== "f32") {
      throw new Error(`sumPartsNorm: ${name} [${x.shape}] must be f32 [${K}]`);
    }
  }
  if (parts.dtype !== "f32" || residual.dtype !== "f32") {
    throw new Error(`sumPartsNorm: f32 tensors only, got ${parts.dtype} and ${residual.dtype}`);
  }
  const eps = ln.eps ?? 1e-5;
  const P = parts.shape[0];
  const needsGrad = isGradEnabled() &&
    [parts, residual, bias, ln.weight, ln.bias].some((t) => t.requiresGrad);
  if (needsGrad || K % 4 !== 0 || P === 0) {
    const h = add(add(residual, bias), sum(parts, 0));
    return { h, n: layerNorm(h, ln.weight, ln.bias, eps) };
  }
  const rows = residual.size / K;
  const h = Tensor.empty(residual.shape, "f32");
  const n = Tensor.empty(residual.shape, "f32");
  if (rows === 0) return { h, n };
  const K4 = K / 4;
  const W = Math.min(256, Math.max(32, ceilPow2(K4)));
  const kernel = genericKernel(`spn|${P}|${K}|${eps}`, rows, () => {
    const adds = Array.from({ length: P }, (_, p) => `    v += parts[${p}u * mk4 + g];`);
    const tree = (op: string) =>
      `  red[lid] = ${op};
  workgroupBarrier();
  for (var w = ${W / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] = red[lid] + red[lid + w]; }
    workgroupBarrier();
  }`;
    const code = `// sumPartsNorm: ${P} parts, K ${K}
@group(0) @binding(0) var<storage, read> parts: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> res: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> pbias: array<vec4<f32>, ${K4}>;
@group(0) @binding(3) var<storage, read> gam: array<vec4<f32>, ${K4}>;
@group(0) @binding(4) var<storage, read> bet: array<vec4<f32>, ${K4}>;
@group(0) @binding(5) var<storage, read_write> h_out: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> n_out: array<vec4<f32>>;
${dimsDecl(7)}
var<workgroup> hs: array<vec4<f32>, ${K4}>;
var<workgroup> red: array<f32, ${W}>;
@compute @workgroup_size(${W})
fn main(${GENERIC_BUILTINS}) {
  let r = ${GENERIC_LINEAR};
  if (r >= dims.x) { return; }
  let mk4 = dims.x * ${K4}u;
  var s = 0.0;
  for (var q = lid; q < ${K4}u; q += ${W}u) {
    let g = r * ${K4}u + q;
    var v = res[g] + pbias[q];
${adds.join("\n")}
    hs[q] = v;
    h_out[g] = v;
    s += dot(v, vec4<f32>(1.0));
  }
${tree("s")}
  let mean = red[0] / ${K}.0;
  workgroupBarrier();
  var ss = 0.0;
  for (var q = lid; q < ${K4}u; q += ${W}u) {
    let e = hs[q] - vec4<f32>(mean);
    ss += dot(e, e);
  }
${tree("ss")}
  let rstd = inverseSqrt(red[0] / ${K}.0 + ${f32(eps)});
  for (var q = lid; q < ${K4}u; q += ${W}u) {
    n_out[r * ${K4}u + q] = (hs[q] - vec4<f32>(mean)) * rstd * gam[q] + bet[q];
  }
}
`;
    return { code, label: "sumPartsNorm" };
  });
  runtime().dispatch(kernel, [
    parts.buffer,
    residual.buffer,
    bias.buffer,
    ln.weight.buffer,
    ln.bias.buffer,
    h.buffer,
    n.buffer,
    dimsBuffer(rows),
  ]);
  return { h, n };
}
