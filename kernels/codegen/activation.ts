/**
 * Activations fused into generated kernels (matmul epilogues): WGSL functions `act_gelu`
 * (GPT-2's tanh form) and `act_gelu_erf` (the exact x Phi(x), PyTorch's `nn.GELU()`), with
 * the same expressions as the elementwise ops `gelu` / `geluErf` (kernels/ops/elementwise.ts),
 * so a fused epilogue equals the unfused op up to the compiler's contraction choices; and
 * `act_relu` (max(x, 0), the prediction heads' activation).
 *
 * @module
 */

/** Activations a matmul epilogue can apply. */
export type EpilogueActivation = "gelu" | "gelu_erf" | "relu";

/** WGSL of `act_<kind>(x: f32) -> f32` and its vec4 form `act4_<kind>`. */
export function activationWgsl(kind: EpilogueActivation): string {
  const body = kind === "relu"
    ? "return max(x, 0.0);" // as the elementwise relu op
    : kind === "gelu"
    ? `let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  let e = exp(-2.0 * abs(u));
  return 0.5 * x * (1.0 + sign(u) * (1.0 - e) / (1.0 + e));`
    // erfc by Numerical Recipes' Chebyshev fit (erfcc), relative error < 1.2e-7.
    : `let y = -0.7071067811865476 * x;
  let z = abs(y);
  let t = 1.0 / (1.0 + 0.5 * z);
  let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let r = t * exp(-z * z + p);
  return 0.5 * x * select(2.0 - r, r, y >= 0.0);`;
  return `fn act_${kind}(x: f32) -> f32 {
  ${body}
}
fn act4_${kind}(v: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(act_${kind}(v.x), act_${kind}(v.y), act_${kind}(v.z), act_${kind}(v.w));
}
`;
}
