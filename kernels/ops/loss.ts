/** Cross-entropy with integer targets, built from tested ops so its gradient comes with them. */
import { record } from "../core/autograd.ts";
import type { Tensor } from "../core/tensor.ts";
import { div, mul, neg } from "./elementwise.ts";
import { checkIndices, gatherLast } from "./gather.ts";
import { mapKernel } from "./map.ts";
import { sumAll } from "./reduce.ts";
import { logSoftmax } from "./softmax.ts";
import { f32 } from "../codegen/wgsl.ts";

/**
 * Mean cross-entropy of `logits` [..., C] against integer `targets` [...]. With `weights`
 * [...] (a mask or per-element weights) the mean is sum(w * ce) / sum(w); an all-zero mask
 * gives 0, not NaN.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, weights?: Tensor): Tensor {
  const rows = logits.shape.slice(0, -1);
  // Validate everything before logSoftmax dispatches: a bad call must record nothing.
  if (logits.rank === 0) throw new Error("crossEntropy: logits need a class axis");
  if (targets.shape.join() !== rows.join()) {
    throw new Error(`crossEntropy: targets [${targets.shape}] must have shape [${rows}]`);
  }
  checkIndices("crossEntropy: targets", targets, logits.shape[logits.rank - 1]);
  if (weights && weights.shape.join() !== rows.join()) {
    throw new Error(`crossEntropy: weights [${weights.shape}] must have shape [${rows}]`);
  }
  const picked = gatherLast(logSoftmax(logits), targets);
  if (!weights) {
    return div(neg(sumAll(picked)), mapKernel("constant", [], f32(picked.size), "f32", []));
  }
  const wsum = sumAll(weights);
  // The clamp keeps an all-zero mask at 0/tiny = 0; its gradient passes where it is inactive,
  // so real-valued weights that require a gradient get d/dw of the denominator too.
  const total = record(
    mapKernel("crossEntropy.denominator", [wsum], "max(a, 1e-12)"),
    "crossEntropy.denominator",
    [wsum],
    (g) => [mapKernel("crossEntropy.denominator.grad", [g, wsum], "select(0.0, a, b > 1e-12)")],
  );
  return div(neg(sumAll(mul(picked, weights))), total);
}
