/**
 * One forward pass of the world-action model on a batch and its loss parts (train/losses.ts):
 * the world loss of Eq. 8 as its three cross-entropies (so each can be logged), and in stage 2
 * the action loss of Eq. 9 (C51 TD + CQL) and the joint objective of Eq. 10, on the rows and
 * masks of train/world_batch.ts (the authors' `compute_loss`).
 *
 * @module
 */
import { concat, reshape, slice } from "../kernels/ops/mod.ts";
import { backward } from "../kernels/core/autograd.ts";
import type { AdamW } from "../kernels/nn/optim.ts";
import { type Tensor, tensor } from "../kernels/core/tensor.ts";
import {
  interleave,
  type WorldActionModel,
  type WorldActionOutputs,
} from "../models/world_action/model.ts";
import {
  type ActionBatch,
  actionLoss,
  type CqlActions,
  jointLoss,
  worldLoss,
  type WorldLossTerms,
} from "./losses.ts";
import type { WorldBatchArrays } from "./world_batch.ts";
import type { Seed } from "../util/rng.ts";

/** Loss weights of the joint objective (paper values by default). */
export interface JointWeights {
  /** beta of Eq. 10. */
  beta: number;
  /** CQL weight alpha of Eq. 9. */
  alpha: number;
  /** Discount. */
  gamma: number;
  /** Actions of the CQL logsumexp (default "all", as Eq. 9 and the authors' code). */
  cqlActions?: CqlActions;
}

/** Paper values: beta 0.1, alpha 0.1, gamma 0.99. */
export const PAPER_WEIGHTS: JointWeights = { beta: 0.1, alpha: 0.1, gamma: 0.99 };

/** Scalar loss tensors of one step; `total` is what backward starts from. */
export interface WorldLossParts {
  total: Tensor;
  obs: Tensor;
  reward: Tensor;
  end: Tensor;
  world: Tensor;
  td?: Tensor;
  cql?: Tensor;
  action?: Tensor;
}

/**
 * Forward the model on the batch and build the loss parts. `joint` adds the action loss
 * (stage 2); without it the total is the world loss alone (stage 1).
 */
export function worldActionLosses(
  model: WorldActionModel,
  a: WorldBatchArrays,
  opts: {
    joint: boolean;
    stepSeed: Seed;
    weights?: JointWeights;
    /** i32 [B, L, P] tokens made on the GPU (stage 1), instead of `a.obsTokens`. */
    obsTokens?: Tensor;
  },
): WorldLossParts {
  const w = opts.weights ?? PAPER_WEIGHTS;
  const obsT = opts.obsTokens ?? tensor(a.obsTokens!, [a.B, a.L, a.P], "i32");
  const out = segmentForward(model, a, obsT, { stepSeed: opts.stepSeed, target: opts.joint });
  const world = worldTerms(out, a, obsT);
  if (!opts.joint) return { total: world.world, ...world };
  const action = actionLoss(actionBatch(out, a), {
    gamma: w.gamma,
    cqlAlpha: w.alpha,
    cqlActions: w.cqlActions,
    support: model.cfg, // the config's C51 atoms and range
  });
  return { total: jointLoss(world.world, action.action, w.beta), ...world, ...action };
}

/**
 * The model's forward on whole segments: tokens `obsT` i32 [B, L, P] interleaved with the
 * batch's actions, every head at its default rows.
 */
export function segmentForward(
  model: WorldActionModel,
  a: WorldBatchArrays,
  obsT: Tensor,
  opts: { stepSeed: Seed; target: boolean },
): WorldActionOutputs {
  const tokens = interleave(obsT, tensor(a.stepActions, [a.B, a.L], "i32"));
  return model.forward(tokens, tensor(a.taskIds, [a.B], "i32"), opts);
}

/**
 * The world loss of a {@link segmentForward}: observation-head rows 0..L*P-2 (all but the
 * last action token's) predict tokens 1..L*P-1 of the flattened observations `obsT`.
 */
export function worldTerms(
  out: WorldActionOutputs,
  a: WorldBatchArrays,
  obsT: Tensor,
): WorldLossTerms {
  const { B, L, P } = a;
  const R = L * P - 1;
  return worldLoss(slice(out.obsLogits!, 1, 0, R), out.rewardLogits!, out.endLogits!, {
    obsTokens: slice(reshape(obsT, [B, L * P]), 1, 1, L * P),
    obsMask: tensor(a.obsMask, [B, R]),
    rewardClass: tensor(a.rewardClass, [B, L], "i32"),
    terminal: tensor(a.terminal, [B, L], "i32"),
    mask: tensor(a.stepMask, [B, L]),
  });
}

/**
 * The action-loss inputs of a {@link segmentForward} (with the target head): one row per
 * timestep (B*L), transition s bootstrapping from the target head at s+1.
 */
export function actionBatch(out: WorldActionOutputs, a: WorldBatchArrays): ActionBatch {
  const { B, L } = a;
  const [, , A, K] = out.q!.probs.shape;
  const N = B * L;
  const tp = out.targetQ!.probs; // [B, L, A, K]
  // The last slot has no next step: it counts only when terminal, whose target ignores the
  // distribution, so its own stands in.
  const next = L > 1 ? concat([slice(tp, 1, 1, L), slice(tp, 1, L - 1, L)], 1) : tp;
  return {
    probs: reshape(out.q!.probs, [N, A, K]),
    nextTargetProbs: reshape(next, [N, A, K]),
    actions: tensor(a.stepActions, [N], "i32"),
    rewards: tensor(a.rewards, [N]),
    terminals: tensor(a.terminals, [N]),
    valid: tensor(a.valid, [N, A]),
    mask: tensor(a.tdMask, [N]),
    cqlMask: tensor(a.stepMask, [N]),
  };
}

/** Options of {@link worldActionStep}. */
export interface WorldActionStepOptions {
  joint: boolean;
  /** Dropout seed of the step (a function in a captured step: see captured_world_step.ts). */
  stepSeed: Seed;
  weights?: JointWeights;
  obsTokens?: Tensor;
  /** false: stop after backward, the gradients in place (data parallel averages them first). */
  update?: boolean;
}

/**
 * One optimizer step of the world-action model (inside the caller's `tidy`): losses,
 * backward from the total, AdamW update. Returns the loss parts (scalars, still on the GPU).
 */
export function worldActionStep(
  model: WorldActionModel,
  opt: AdamW,
  a: WorldBatchArrays,
  opts: WorldActionStepOptions,
): WorldLossParts {
  const parts = worldActionLosses(model, a, opts);
  opt.zeroGrad();
  backward(opt.scaleLoss(parts.total)); // times the loss scale under f16 (optim.ts)
  if (opts.update !== false) opt.update();
  return parts;
}
