/**
 * The COMBO conservative penalty of fine-tuning (paper Sec. 4.3 / E.2, "the COMBO loss instead
 * of CQL"; COMBO's Eq. 4), in the form of the authors' code (`q_penalty: combo` in
 * src/models/jowa_model.py):
 *
 *   alpha * ( mean over the negative rows of logsumexp_a Q(s, a)
 *           - mean over the positive rows of Q(s, a_data) ).
 *
 * The negative (push-down) term runs over every real timestep of the mixed batch — real and
 * synthetic (model-imagined) segments alike, so the imagined state-actions are pushed down;
 * the positive (push-up) term over the real segments' timesteps only (with plain CQL both
 * terms would use the whole batch). Each term is its own masked mean (not the mean of a
 * per-row gap as in CQL), as there. Q(s, a) = sum_i z_i p_i(s, a) of the online head's
 * (ensemble-averaged) distribution.
 *
 * @module
 */
import {
  add,
  div,
  JOWA_SUPPORT,
  logsumexp,
  mul,
  mulScalar,
  reshape,
  selectAction,
  sub,
  sumAll,
  type Support,
} from "../kernels/ops/mod.ts";
import { mapKernel } from "../kernels/ops/map.ts";
import type { Tensor } from "../kernels/core/tensor.ts";
import { qValues } from "./losses.ts";

/** Inputs of the COMBO penalty for N rows (timesteps of real and synthetic segments). */
export interface ComboBatch {
  /** Online Q head distributions f32 [N, A, atoms] (sum to 1 over atoms). */
  probs: Tensor;
  /** i32 [N]: the action taken at each row (data or imagined). */
  actions: Tensor;
  /** f32 [N]: rows of the push-down term (every real timestep, real and synthetic segments). */
  negativeMask: Tensor;
  /** f32 [N]: rows of the push-up term (real timesteps of the real segments only). */
  positiveMask: Tensor;
  /**
   * f32 [N, A], optional: restrict the logsumexp to these actions (1 valid). The authors'
   * code takes it over all actions; omit it to do the same.
   */
  valid?: Tensor;
}

/** Options of {@link comboPenalty}. */
export interface ComboOptions {
  /** Weight alpha (the preset's; paper and public code 0.1). */
  alpha: number;
  support?: Support;
}

/** The COMBO penalty (a scalar tensor with a gradient through `probs`). */
export function comboPenalty(b: ComboBatch, opts: ComboOptions): Tensor {
  const support = opts.support ?? JOWA_SUPPORT;
  const q = qValues(b.probs, support); // [N, A]
  const N = q.shape[0];
  const qNeg = b.valid
    ? add(q, mapKernel("combo.invalid", [b.valid], "(a - 1.0) * 1.0e4", "f32"))
    : q;
  const negative = maskedMean(logsumexp(qNeg), b.negativeMask);
  const chosen = reshape(selectAction(reshape(q, [N, q.shape[1], 1]), b.actions), [N]);
  const positive = maskedMean(chosen, b.positiveMask);
  return mulScalar(sub(negative, positive), opts.alpha);
}

/** sum(x * mask) / max(sum(mask), tiny): an empty mask gives 0, not NaN. */
function maskedMean(x: Tensor, mask: Tensor): Tensor {
  const den = mapKernel("combo.den", [sumAll(mask)], "max(a, 1e-12)");
  return div(sumAll(mul(x, mask)), den);
}
