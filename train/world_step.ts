/**
 * One forward pass of the world-action model on a batch and its loss parts: the world loss
 * of Eq. 8 split into its three cross-entropies (so each can be logged), and in stage 2 the
 * action loss of Eq. 9 (C51 TD + CQL) and the joint objective of Eq. 10.
 *
 * The world loss is the same sum as `worldLoss` in train/losses.ts, computed part by part
 * because reward/termination use every real step while the next-observation term needs the
 * next frame (see train/world_batch.ts).
 *
 * @module
 */
import { add, concat, crossEntropy, mulScalar, reshape, slice } from "../kernels/ops/mod.ts";
import { backward } from "../kernels/core/autograd.ts";
import type { AdamW } from "../kernels/nn/optim.ts";
import { type Tensor, tensor } from "../kernels/core/tensor.ts";
import { nextObservationRows, type WorldActionModel } from "../models/world_action/model.ts";
import { c51TdLoss, cqlPenalty } from "./losses.ts";
import type { WorldBatchArrays } from "./world_batch.ts";

/** Loss weights of the joint objective (paper values by default). */
export interface JointWeights {
  /** beta of Eq. 10. */
  beta: number;
  /** CQL weight alpha of Eq. 9. */
  alpha: number;
  /** Discount. */
  gamma: number;
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
    stepSeed: number;
    weights?: JointWeights;
    /** i32 [B, L, P] tokens made on the GPU (stage 1), instead of `a.obsTokens`. */
    obsTokens?: Tensor;
  },
): WorldLossParts {
  const w = opts.weights ?? PAPER_WEIGHTS;
  const { B, L, P } = a;
  const N = B * (L - 1);
  const cfg = model.cfg;
  const obsT = opts.obsTokens ?? tensor(a.obsTokens!, [B, L, P], "i32");
  // Interleave on the GPU: [B, L, P] obs + [B, L, 1] action -> [B, L*(P+1)].
  const tokens = reshape(
    concat([obsT, tensor(a.stepActions, [B, L, 1], "i32")], 2),
    [B, L * (P + 1)],
  );
  const tasks = tensor(a.taskIds, [B], "i32");
  const out = model.forward(tokens, tasks, {
    stepSeed: opts.stepSeed,
    target: opts.joint,
    obsRows: nextObservationRows(cfg, L),
  });
  const obsLogits = reshape(out.obsLogits!, [N, P, cfg.obsVocab]);
  const tokenMask = tensor(expandMask(a.nextObsMask, P), [N, P]);
  const nextObs = reshape(slice(obsT, 1, 1, L), [N, P]);
  const obs = crossEntropy(obsLogits, nextObs, tokenMask);
  const stepMask = tensor(a.stepMask, [B * L]);
  const reward = crossEntropy(
    reshape(out.rewardLogits!, [B * L, cfg.rewardClasses]),
    tensor(a.rewardClass, [B * L], "i32"),
    stepMask,
  );
  const end = crossEntropy(
    reshape(out.endLogits!, [B * L, cfg.endClasses]),
    tensor(a.terminal, [B * L], "i32"),
    stepMask,
  );
  const world = add(add(obs, reward), end);
  if (!opts.joint) return { total: world, obs, reward, end, world };
  const A = cfg.actions, K = cfg.atoms;
  const probs = reshape(slice(out.q!.probs, 1, 0, L - 1), [N, A, K]);
  const nextTargetProbs = reshape(slice(out.targetQ!.probs, 1, 1, L), [N, A, K]);
  const batch = {
    probs,
    nextTargetProbs,
    actions: tensor(a.actions, [N], "i32"),
    rewards: tensor(a.rewards, [N]),
    terminals: tensor(a.terminals, [N]),
    valid: tensor(a.valid, [N, A]),
    mask: tensor(a.actionMask, [N]),
  };
  const support = { atoms: K, vMin: cfg.vMin, vMax: cfg.vMax };
  const td = c51TdLoss(batch, { gamma: w.gamma, support });
  const cql = cqlPenalty(batch, { cqlAlpha: w.alpha, support });
  const action = add(td, cql);
  const total = add(mulScalar(world, w.beta), action);
  return { total, obs, reward, end, world, td, cql, action };
}

/** [N] -> [N*P], each value repeated P times. */
function expandMask(m: Float32Array, P: number): Float32Array {
  const out = new Float32Array(m.length * P);
  for (let i = 0; i < m.length; i++) out.fill(m[i], i * P, (i + 1) * P);
  return out;
}

/** Options of {@link worldActionStep}. */
export interface WorldActionStepOptions {
  joint: boolean;
  stepSeed: number;
  weights?: JointWeights;
  obsTokens?: Tensor;
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
  backward(parts.total);
  opt.update();
  return parts;
}
