/**
 * The local part of a data-parallel training step under capture and replay
 * (kernels/core/capture.ts): forward, losses and backward of a training step with
 * `update: false` ({@link worldActionStep}, or fine-tuning's {@link comboStep}), recorded once
 * per batch shape and replayed afterwards. The gradient exchange (train/data_parallel.ts:
 * readback, all-reduce, upload) and the AdamW update stay outside, eager, between the replays.
 *
 * A replay runs no op code, so it cannot set `param.grad`: the step returns every gradient as
 * an output, and after each call the parameters' `grad` point at them again (views of the
 * captured buffers, valid until the next call: the exchange reads them and replaces them with
 * the averaged ones, which the update consumes and `zeroGrad` frees).
 *
 * @module
 */
import { keep, type Tensor } from "../kernels/core/tensor.ts";
import { captureSeededStep, type SeededStep, type SeededStepOptions } from "./_captured_step.ts";
import type { AdamW } from "../kernels/nn/optim.ts";
import type { WorldActionModel } from "../models/world_action/model.ts";
import type { WorldBatchArrays } from "./world_batch.ts";
import type { WorldLossParts } from "./world_step.ts";
import {
  type CapturedWorldStep,
  type CapturedWorldStepOptions,
  worldStepRun,
} from "./captured_world_step.ts";
import { type ComboLossParts, comboStep } from "./finetune_losses.ts";
import type { MixedBatch } from "./finetune_batch.ts";
import type { CapturedComboStep, CapturedComboStepOptions } from "./captured_combo_step.ts";

/**
 * Capture `run` (a step that leaves the gradients of `opt`'s parameters in their `grad`, no
 * update) so that after every call, replayed or not, those `grad` hold this call's gradients.
 */
function captureSeededGrads<B, P>(
  name: string,
  fields: readonly [batch: string, tokens: string],
  opts: SeededStepOptions,
  opt: AdamW,
  run: (batch: B, stepSeed: () => number, tokens: Tensor | undefined) => P,
): SeededStep<B, P> {
  const params = opt.params;
  const inner = captureSeededStep<B, { parts: P; grads: (Tensor | null)[] }>(
    name,
    fields,
    opts,
    (batch, stepSeed, tokens) => {
      const parts = run(batch, stepSeed, tokens);
      return { parts, grads: params.map((p) => p.grad) };
    },
  );
  const step = ((batch: B, stepSeed: number, tokens?: Tensor) => {
    const out = inner(batch, stepSeed, tokens);
    params.forEach((p, i) => {
      const g = out.grads[i];
      if (g === p.grad) return; // an eager or recorded call set it already
      p.grad?.dispose();
      // A replay's view: outlives the caller's tidy, like a gradient the tape sets.
      p.grad = g ? keep(g) : null;
    });
    return out.parts;
  }) as SeededStep<B, P>;
  step.stats = inner.stats;
  step.dispose = inner.dispose;
  return step;
}

/**
 * Forward + backward of {@link worldActionStep} for `model` and the parameters of `opt`, no
 * update: call it like a {@link CapturedWorldStep}; afterwards every parameter of `opt` that
 * receives a gradient has it in `grad`, as the eager step leaves it. Free or replace the
 * gradients (`opt.zeroGrad()` after the update) before the next call.
 */
export function captureWorldActionGrads(
  model: WorldActionModel,
  opt: AdamW,
  opts: CapturedWorldStepOptions,
): CapturedWorldStep {
  return captureSeededGrads<WorldBatchArrays, WorldLossParts>(
    "world-action gradients",
    ["a", "obsTokens"],
    opts,
    opt,
    worldStepRun(model, opt, opts, false),
  );
}

/** {@link captureWorldActionGrads} for fine-tuning's mixed-batch step ({@link comboStep}). */
export function captureComboGrads(
  model: WorldActionModel,
  opt: AdamW,
  opts: CapturedComboStepOptions,
): CapturedComboStep {
  return captureSeededGrads<MixedBatch, ComboLossParts>(
    "mixed-batch gradients",
    ["m", "realTokens"],
    opts,
    opt,
    (m, stepSeed, realTokens) =>
      comboStep(model, opt, m, { weights: opts.weights, realTokens, stepSeed, update: false }),
  );
}
