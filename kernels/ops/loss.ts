/** Cross-entropy with integer targets, built from tested ops so its gradient comes with them. */
import type { Tensor } from "../tensor.ts";
import { div, mul, neg } from "./elementwise.ts";
import { gatherLast } from "./gather.ts";
import { mapKernel } from "./map.ts";
import { sumAll } from "./reduce.ts";
import { logSoftmax } from "./softmax.ts";
import { f32 } from "../wgsl.ts";

/**
 * Mean cross-entropy of `logits` [..., C] against integer `targets` [...]. With `weights`
 * [...] (a mask or per-element weights) the mean is sum(w * ce) / sum(w); an all-zero mask
 * gives 0, not NaN.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, weights?: Tensor): Tensor {
  const rows = logits.shape.slice(0, -1);
  if (weights && weights.shape.join() !== rows.join()) {
    throw new Error(`crossEntropy: weights [${weights.shape}] must have shape [${rows}]`);
  }
  const picked = gatherLast(logSoftmax(logits), targets);
  if (!weights) {
    return div(neg(sumAll(picked)), mapKernel("constant", [], f32(picked.size), "f32", []));
  }
  const total = mapKernel("crossEntropy.denominator", [sumAll(weights)], "max(a, 1e-12)");
  return div(neg(sumAll(mul(picked, weights))), total);
}
