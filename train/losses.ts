/**
 * JOWA's training objectives (Eqs. 8-10 of the paper), each a function of head outputs:
 *
 * - world loss: cross-entropy of the 36 next-observation tokens, the reward class
 *   sign(r) + 1 and the termination class, over unmasked timesteps;
 * - action loss: the C51 TD loss against the projected target distribution of the target
 *   Q head at t+1 for a* = argmax over VALID actions, plus the CQL penalty
 *   alpha * (logsumexp_a Q(o, a) - Q(o, a_data));
 * - joint objective: beta * world + action.
 *
 * @module
 */
import {
  add,
  addScalar,
  c51Project,
  crossEntropy,
  div,
  expectedValue,
  JOWA_SUPPORT,
  log,
  logsumexp,
  maskedArgmax,
  matmul,
  mul,
  mulScalar,
  neg,
  reshape,
  selectAction,
  sub,
  sum,
  sumAll,
  type Support,
  supportValues,
} from "../kernels/ops/mod.ts";
import { mapKernel } from "../kernels/ops/map.ts";
import { type Tensor, tensor } from "../kernels/core/tensor.ts";

/** Hyper-parameters of the action loss (paper values as defaults). */
export interface ActionLossOptions {
  gamma?: number;
  /** CQL weight alpha. */
  cqlAlpha?: number;
  support?: Support;
}

/** Per-timestep targets of the world part. All [N] except obs tokens [N, 36]. */
export interface WorldTargets {
  obsTokens: Tensor; // i32 [N, 36]: the next observation's tokens
  rewardClass: Tensor; // i32 [N]: sign(r) + 1
  terminal: Tensor; // i32 [N]: 0 or 1
  mask: Tensor; // f32 [N]: 1 for real timesteps, 0 for padding
}

/**
 * Eq. 8: CE(obs) + CE(reward) + CE(termination), each a mean over unmasked timesteps (the
 * observation term averages its 36 tokens).
 */
export function worldLoss(
  obsLogits: Tensor, // [N, 36, V]
  rewardLogits: Tensor, // [N, 3]
  terminalLogits: Tensor, // [N, 2]
  t: WorldTargets,
): Tensor {
  const [N, P] = obsLogits.shape;
  const tokenMask = mapKernel("worldLoss.tokenMask", [reshape(t.mask, [N, 1])], "a", "f32", [N, P]);
  const obs = crossEntropy(obsLogits, t.obsTokens, tokenMask);
  const rew = crossEntropy(rewardLogits, t.rewardClass, t.mask);
  const term = crossEntropy(terminalLogits, t.terminal, t.mask);
  return add(add(obs, rew), term);
}

/** Inputs of the action loss for N transitions (o_t, a_t, r_t, done_t, o_{t+1}). */
export interface ActionBatch {
  /** Online Q head distributions at o_t: f32 [N, A, atoms] (ensemble average, sums to 1). */
  probs: Tensor;
  /** Target Q head distributions at o_{t+1}: f32 [N, A, atoms] (no gradient). */
  nextTargetProbs: Tensor;
  actions: Tensor; // i32 [N]
  rewards: Tensor; // f32 [N], as trained on (clipped in DQN-Replay)
  terminals: Tensor; // f32 [N] 0/1
  /** Valid actions of each transition's game: f32 [N, A] (1 valid, 0 not). */
  valid: Tensor;
  mask: Tensor; // f32 [N]
}

/**
 * The C51 TD loss (cross-entropy of the projected target against the online distribution
 * of the taken action), masked mean over transitions.
 */
export function c51TdLoss(b: ActionBatch, opts: ActionLossOptions = {}): Tensor {
  const support = opts.support ?? JOWA_SUPPORT;
  const gamma = opts.gamma ?? 0.99;
  const target = targetDistribution(b, gamma, support);
  const chosen = selectAction(b.probs, b.actions); // [N, atoms]
  // The ensemble average can put exactly zero mass on an atom the target reaches.
  const logp = log(addScalar(chosen, 1e-8));
  const perRow = neg(sum(mul(logp, target), 1)); // [N]
  return maskedMean(perRow, b.mask);
}

/** CQL penalty alpha * mean(logsumexp_a Q(o, a) - Q(o, a_data)) over unmasked transitions. */
export function cqlPenalty(b: ActionBatch, opts: ActionLossOptions = {}): Tensor {
  const support = opts.support ?? JOWA_SUPPORT;
  const alpha = opts.cqlAlpha ?? 0.1;
  const q = qValues(b.probs, support); // [N, A]
  // Invalid actions drop out of the logsumexp (their Q is pushed to -1e4 before it).
  const qMasked = add(q, mapKernel("cql.invalid", [b.valid], "(a - 1.0) * 1.0e4", "f32"));
  const gap = sub(
    logsumexp(qMasked),
    reshape(selectAction(reshape(q, [...q.shape, 1]), b.actions), [q.shape[0]]),
  );
  return mulScalar(maskedMean(gap, b.mask), alpha);
}

/** Eq. 9: C51 TD loss + CQL penalty. */
export function actionLoss(b: ActionBatch, opts: ActionLossOptions = {}): Tensor {
  return add(c51TdLoss(b, opts), cqlPenalty(b, opts));
}

/** Eq. 10: beta * world + action. */
export function jointLoss(world: Tensor, action: Tensor, beta = 0.1): Tensor {
  return add(mulScalar(world, beta), action);
}

/** Q(o, a) = sum_i z_i p_i with a gradient (a matmul against the support). */
export function qValues(probs: Tensor, support: Support = JOWA_SUPPORT): Tensor {
  const [N, A, K] = probs.shape;
  const z = tensor(Float32Array.from(supportValues(support)), [K, 1]);
  const q = reshape(matmul(reshape(probs, [N * A, K]), z), [N, A]);
  return q;
}

/** The projected target: target head at t+1, a* over valid actions, r + gamma z. */
function targetDistribution(b: ActionBatch, gamma: number, support: Support): Tensor {
  const qNext = expectedValue(b.nextTargetProbs, support); // [N, A]
  const best = maskedArgmax(qNext, b.valid);
  const chosen = selectAction(b.nextTargetProbs, best);
  const projected = c51Project(chosen, b.rewards, b.terminals, gamma, support);
  qNext.dispose();
  best.dispose();
  chosen.dispose();
  return projected;
}

/** sum(x * mask) / max(sum(mask), tiny). */
function maskedMean(x: Tensor, mask: Tensor): Tensor {
  const den = mapKernel("maskedMean.den", [sumAll(mask)], "max(a, 1e-12)");
  return div(sumAll(mul(x, mask)), den);
}
