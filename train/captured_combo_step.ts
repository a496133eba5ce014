/**
 * Fine-tuning's second-stage step ({@link comboStep} on a mixed real + synthetic batch) under
 * capture and replay (kernels/core/capture.ts), as train/captured_world_step.ts does for the
 * world-action step: recorded once per batch form, replayed afterwards with the new batch's
 * arrays, dropout seeds recomputed from the new step seed and AdamW's step counter advanced.
 * The returned loss tensors are valid until the next call (keep {@link copyParts} of them).
 *
 * @module
 */
import type { Tensor } from "../kernels/core/tensor.ts";
import type { CaptureStats } from "../kernels/core/capture.ts";
import { captureSeededStep } from "./_captured_step.ts";
import type { AdamW } from "../kernels/nn/optim.ts";
import type { WorldActionModel } from "../models/world_action/model.ts";
import type { MixedBatch } from "./finetune_batch.ts";
import { type ComboLossParts, comboStep } from "./finetune_losses.ts";
import type { JointWeights } from "./world_step.ts";

export { copyParts } from "./captured_world_step.ts";

/** Options of {@link captureComboStep}. */
export interface CapturedComboStepOptions {
  weights: JointWeights;
  /** false: run every step eagerly (`--no-replay`). Default true. */
  replay?: boolean;
  /** Throw when the step cannot be replayed instead of running it eagerly (tests). */
  strict?: boolean;
}

/** A captured mixed-batch step: call it like {@link comboStep}. */
export interface CapturedComboStep {
  /**
   * One optimizer step on `m` with dropout seed `stepSeed`; `realTokens` are i32 [Br, L, P]
   * tokens of the real part made on the GPU.
   */
  (m: MixedBatch, stepSeed: number, realTokens?: Tensor): ComboLossParts;
  stats(): CaptureStats;
  /** Free the captured buffers (the model and optimizer stay valid). */
  dispose(): void;
}

/** Capture {@link comboStep} for `model` and `opt` (see the module doc). */
export function captureComboStep(
  model: WorldActionModel,
  opt: AdamW,
  opts: CapturedComboStepOptions,
): CapturedComboStep {
  return captureSeededStep<MixedBatch, ComboLossParts>(
    "mixed-batch step",
    ["m", "realTokens"],
    opts,
    (m, stepSeed, realTokens) =>
      comboStep(model, opt, m, { weights: opts.weights, realTokens, stepSeed }),
  );
}
