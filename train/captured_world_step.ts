/**
 * The world-action training step under capture and replay (kernels/core/capture.ts): the
 * same {@link worldActionStep}, recorded once per batch shape and replayed afterwards with
 * the new batch's arrays, dropout seeds recomputed from the new step seed and AdamW's step
 * counter advanced, bit for bit what the eager step computes.
 *
 * Replace `worldActionStep(model, opt, a, { joint, stepSeed, weights })` inside the training
 * loop's `tidy` by `step(a, stepSeed)` with `step = captureWorldActionStep(model, opt, {...})`
 * made once. The returned loss tensors are valid until the next call.
 *
 * @module
 */
import { Tensor } from "../kernels/core/tensor.ts";
import { copyTensor } from "../kernels/nn/module.ts";
import type { CaptureStats } from "../kernels/core/capture.ts";
import { captureSeededStep } from "./_captured_step.ts";
import type { AdamW } from "../kernels/nn/optim.ts";
import type { WorldActionModel } from "../models/world_action/model.ts";
import type { WorldBatchArrays } from "./world_batch.ts";
import { type JointWeights, worldActionStep, type WorldLossParts } from "./world_step.ts";

/** Options of {@link captureWorldActionStep}. */
export interface CapturedWorldStepOptions {
  /** Stage 2 (joint loss) or stage 1 (world loss only). */
  joint: boolean;
  weights?: JointWeights;
  /** false: run every step eagerly (`--no-replay`). Default true. */
  replay?: boolean;
  /** Throw when the step cannot be replayed instead of running it eagerly (tests). */
  strict?: boolean;
}

/** A captured training step: call it like {@link worldActionStep}. */
export interface CapturedWorldStep {
  /**
   * One optimizer step on `a` with dropout seed `stepSeed`; `obsTokens` are i32 [B, L, P]
   * tokens made on the GPU (stage 1), instead of `a.obsTokens`.
   */
  (a: WorldBatchArrays, stepSeed: number, obsTokens?: Tensor): WorldLossParts;
  stats(): CaptureStats;
  /** Free the captured buffers (the model and optimizer stay valid). */
  dispose(): void;
}

/** Capture {@link worldActionStep} for `model` and `opt` (see the module doc). */
export function captureWorldActionStep(
  model: WorldActionModel,
  opt: AdamW,
  opts: CapturedWorldStepOptions,
): CapturedWorldStep {
  return captureSeededStep<WorldBatchArrays, WorldLossParts>(
    "world-action step",
    ["a", "obsTokens"],
    opts,
    worldStepRun(model, opt, opts),
  );
}

/**
 * The eager step a world-action capture records: {@link worldActionStep} with the capture's
 * options; `update` false stops after backward (captured_grads.ts).
 */
export function worldStepRun(
  model: WorldActionModel,
  opt: AdamW,
  opts: CapturedWorldStepOptions,
  update?: false,
): (a: WorldBatchArrays, stepSeed: () => number, obsTokens: Tensor | undefined) => WorldLossParts {
  return (a, stepSeed, obsTokens) =>
    worldActionStep(model, opt, a, {
      joint: opts.joint,
      weights: opts.weights,
      obsTokens,
      stepSeed,
      update,
    });
}

/**
 * Copies of a step's loss tensors, for a caller that keeps them past the next call (a batched
 * readback): a replay's outputs are views of buffers the next replay overwrites.
 */
export function copyParts<P extends object>(parts: P): P {
  const out: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(parts)) {
    if (!(v instanceof Tensor)) continue;
    const c = Tensor.empty(v.shape, v.dtype);
    copyTensor(v, c);
    out[k] = c;
  }
  return out as P;
}
