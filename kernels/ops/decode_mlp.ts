/**
 * Decoding's fused MLP (no gradient): h = residual + pbias + sum_p parts[p], then
 * act(layerNorm(h) · W1^T + b1) · W2^T as G partial products, in one dispatch
 * (kernels/codegen/matmul/fused_mlp.ts). The caller adds b2 and sums the partials in the next
 * kernel's prologue (matmul.ts `matmulSumParts`), in a fixed order.
 *
 * Opt-in (models/world_action/kv_cache.ts `decodeDefaults.fusedMlp` or the step option
 * `fusedMlp`): measured slower on an H200 (JOWA-150M planning step 204 ms against 138 ms
 * without it): the dispatch runs only ceil(F / 64) workgroups (48 for 150M) and its consumer
 * re-reads all G partials in each of its workgroups.
 *
 * @module
 */
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import type { EpilogueActivation } from "../codegen/activation.ts";
import { type FusedMlpSpec, generateFusedMlp, planFusedMlp } from "../codegen/matmul/fused_mlp.ts";
import { f16ShadowOf } from "./matmul_f16.ts";

/** Weights of the fused MLP (a pre-LN block's ln2, fc1 and fc2; fc2's bias is the caller's). */
export interface MlpWeights {
  lnWeight: Tensor;
  lnBias: Tensor;
  lnEps: number;
  /** fc1 weight [F, K] (a Linear's [out, in]). */
  w1: Tensor;
  /** fc1 bias [F]. */
  b1: Tensor;
  /** fc2 weight [N, F]. */
  w2: Tensor;
  activation: EpilogueActivation;
}

function limits() {
  return runtime().ctx.limits as Parameters<typeof planFusedMlp>[1];
}

/**
 * Whether `rows` rows of width K through an MLP K -> F -> N with P partials in the prologue
 * run as one fused dispatch on this device.
 */
export function fusesMlp(rows: number, K: number, F: number, N: number, P: number): boolean {
  return mlpPartCount(rows, K, F, N, P) > 0;
}

/** The number G of partial products {@link mlpSumParts} returns for these sizes (0: none). */
export function mlpPartCount(rows: number, K: number, F: number, N: number, P: number): number {
  const spec = { M: rows, K, F, N, P, activation: "relu" as const, lnEps: 1e-5 };
  return planFusedMlp(spec, limits())?.G ?? 0;
}

/**
 * The fused MLP on residual [...rows, K] and parts [P, ...rows, K]: returns h (the residual
 * plus pbias plus the parts' sum, [...rows, K]) and the fc2 partial products
 * out [G, ...rows, N] with sum_g out[g] = fc2(act(fc1(layerNorm(h)))) without fc2's bias.
 * Throws where {@link fusesMlp} is false.
 */
export function mlpSumParts(
  parts: Tensor,
  residual: Tensor,
  pbias: Tensor,
  w: MlpWeights,
): { parts: Tensor; h: Tensor } {
  const K = residual.shape[residual.rank - 1];
  const M = residual.size / K;
  const [F, K1] = w.w1.shape;
  const N = w.w2.shape[0];
  const P = parts.shape[0];
  if (parts.rank !== residual.rank + 1 || parts.shape.slice(1).join() !== residual.shape.join()) {
    throw new Error(`mlpSumParts: parts [${parts.shape}] must be [P, ${residual.shape}]`);
  }
  const check = (name: string, t: Tensor, shape: number[]) => {
    if (t.shape.join() !== shape.join() || t.dtype !== "f32") {
      throw new Error(`mlpSumParts: ${name} [${t.shape}] must be f32 [${shape}]`);
    }
  };
  check("pbias", pbias, [K]);
  check("ln weight", w.lnWeight, [K]);
  check("ln bias", w.lnBias, [K]);
  check("w1", w.w1, [F, K]);
  if (K1 !== K) throw new Error(`mlpSumParts: w1 [${w.w1.shape}] must be [F, ${K}]`);
  check("b1", w.b1, [F]);
  check("w2", w.w2, [N, F]);
  const spec: FusedMlpSpec = { M, K, F, N, P, activation: w.activation, lnEps: w.lnEps };
  // f16 copies of both weights (`--precision f16`: the ones the f16 products read).
  const c1 = f16ShadowOf(w.w1), c2 = f16ShadowOf(w.w2);
  if (c1 && c2) spec.wHalf = true;
  const key = `fmlp|${M}|${K}|${F}|${N}|${P}|${w.activation}|${w.lnEps}` +
    (spec.wHalf ? "|w16" : "");
  const kernel = planCache(key, () => {
    const shape = planFusedMlp(spec, limits());
    if (!shape) return null;
    const label = `mlp ${M}x${K}x${F}x${N} parts${P} ${w.activation}${spec.wHalf ? " w16" : ""}`;
    return { code: generateFusedMlp(spec, shape, label), label, workgroups: [shape.G, 1, 1] };
  });
  if (!kernel) throw new Error(`mlpSumParts: ${M} x ${K} -> ${F} -> ${N} does not fuse here`);
  const G = kernel.workgroups[0];
  const h = Tensor.empty(residual.shape, "f32");
  const out = Tensor.empty([G, ...residual.shape.slice(0, -1), N], "f32");
  runtime().dispatch(kernel, [
    parts.buffer,
    residual.buffer,
    pbias.buffer,
    w.lnWeight.buffer,
    w.lnBias.buffer,
    (spec.wHalf ? c1! : w.w1).buffer,
    w.b1.buffer,
    (spec.wHalf ? c2! : w.w2).buffer,
    h.buffer,
    out.buffer,
  ]);
  return { parts: out, h };
}
