/**
 * The loss of fine-tuning's second stage on a mixed batch (train/finetune_batch.ts):
 * beta x world loss (real part only) + C51 TD loss (real and synthetic transitions) + the
 * COMBO penalty (train/combo.ts) instead of CQL. The first stage (real data only) uses the
 * pretraining joint loss of train/world_step.ts unchanged.
 *
 * The world part and the TD batch are those of pretraining (`worldTerms`, `actionBatch` in
 * train/world_step.ts) on the same forward.
 *
 * @module
 */
import { add, concat, mulScalar } from "../kernels/ops/mod.ts";
import { backward } from "../kernels/core/autograd.ts";
import type { AdamW } from "../kernels/nn/optim.ts";
import { type Tensor, tensor } from "../kernels/core/tensor.ts";
import type { Seed } from "../util/rng.ts";
import type { WorldActionModel } from "../models/world_action/model.ts";
import { c51TdLoss } from "./losses.ts";
import { comboPenalty } from "./combo.ts";
import type { MixedBatch } from "./finetune_batch.ts";
import {
  actionBatch,
  type JointWeights,
  segmentForward,
  type WorldLossParts,
  worldTerms,
} from "./world_step.ts";

/** Loss parts of a mixed-batch step (`cql` is absent; `combo` replaces it). */
export interface ComboLossParts extends WorldLossParts {
  combo: Tensor;
}

/**
 * Forward the model on the mixed batch and build the loss parts. `realTokens` i32 [Br, L, P]
 * are the real part's tokens when a tokenizer made them on the GPU (else the arrays hold all).
 */
export function comboLosses(
  model: WorldActionModel,
  m: MixedBatch,
  opts: { stepSeed: Seed; weights: JointWeights; realTokens?: Tensor },
): ComboLossParts {
  const a = m.arrays;
  const { B, L, P } = a;
  const obsT = opts.realTokens
    ? concat([opts.realTokens, tensor(m.syntheticTokens, [m.synthetic, L, P], "i32")], 0)
    : tensor(a.obsTokens!, [B, L, P], "i32");
  const out = segmentForward(model, a, obsT, { stepSeed: opts.stepSeed, target: true });
  const { obs, reward, end, world } = worldTerms(out, a, obsT);
  const batch = actionBatch(out, a);
  const support = model.cfg; // the config's C51 atoms and range
  const td = c51TdLoss(batch, { gamma: opts.weights.gamma, support });
  const combo = comboPenalty({
    probs: batch.probs,
    actions: tensor(m.rowActions, [B * L], "i32"),
    negativeMask: tensor(m.negativeMask, [B * L]),
    positiveMask: tensor(m.positiveMask, [B * L]),
  }, { alpha: opts.weights.alpha, support });
  const action = add(td, combo);
  const total = add(mulScalar(world, opts.weights.beta), action);
  return { total, obs, reward, end, world, td, combo, action };
}

/**
 * One optimizer step on a mixed batch (inside the caller's `tidy`); with `update: false` it
 * stops after backward, the gradients in place (data parallel averages them first).
 */
export function comboStep(
  model: WorldActionModel,
  opt: AdamW,
  m: MixedBatch,
  opts: { stepSeed: Seed; weights: JointWeights; realTokens?: Tensor; update?: boolean },
): ComboLossParts {
  const parts = comboLosses(model, m, opts);
  opt.zeroGrad();
  backward(opt.scaleLoss(parts.total)); // times the loss scale under f16 (optim.ts)
  if (opts.update !== false) opt.update();
  return parts;
}
