/**
 * JOWA's training objectives (Eqs. 8-10 of the paper) as the authors' code computes them
 * (`JOWAModel.compute_loss`, src/models/jowa_model.py), each a function of head outputs:
 *
 * - world loss: three cross-entropies, each ONE mean over its unmasked targets: the next
 *   observation token (every observation token of the segment but the first, 287 targets per
 *   8-step segment: frame 0's tokens 1..35 included), the reward class sign(r) + 1 and the
 *   termination class (every real timestep);
 * - action loss: the C51 TD loss against the projected target distribution of the target
 *   Q head at t+1 for a* = argmax over VALID actions (a terminal's target is r alone), plus
 *   the CQL penalty alpha * mean(logsumexp_a Q(o, a) - Q(o, a_data)) over every real
 *   timestep, the logsumexp over ALL actions (Eq. 9; `cqlActions: "valid"` restricts it to
 *   the game's valid actions);
 * - joint objective: beta * world + action.
 *
 * Masked means divide by the number of unmasked rows (an empty mask gives 0).
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
import { constTensor, type Tensor } from "../kernels/core/tensor.ts";

/** Hyper-parameters of the action loss (paper values as defaults). */
export interface ActionLossOptions {
  gamma?: number;
  /** CQL weight alpha. */
  cqlAlpha?: number;
  /**
   * Actions of the CQL logsumexp: "all" (default; Eq. 9 and the authors' code) or "valid"
   * (the game's valid actions only, the others pushed to -1e4 before it).
   */
  cqlActions?: CqlActions;
  support?: Support;
}

/** Which actions the CQL logsumexp runs over. */
export type CqlActions = "all" | "valid";

/**
 * Targets of the world part. Observation rows and timestep rows may have any (matching)
 * leading shape, e.g. [B, L*P - 1] and [B, L].
 */
export interface WorldTargets {
  /** i32 [...R]: the token each observation-head row predicts. */
  obsTokens: Tensor;
  /** f32 [...R]: 1 where that token belongs to a real timestep, 0 for padding. */
  obsMask: Tensor;
  /** i32 [...S]: sign(r) + 1. */
  rewardClass: Tensor;
  /** i32 [...S]: 0 or 1. */
  terminal: Tensor;
  /** f32 [...S]: 1 for real timesteps, 0 for padding. */
  mask: Tensor;
}

/** The three cross-entropies of the world loss and their sum (scalars). */
export interface WorldLossTerms {
  obs: Tensor;
  reward: Tensor;
  end: Tensor;
  /** obs + reward + end (Eq. 8). */
  world: Tensor;
}

/** Eq. 8: CE(obs) + CE(reward) + CE(termination), each a mean over its unmasked rows. */
export function worldLoss(
  obsLogits: Tensor, // [...R, V]
  rewardLogits: Tensor, // [...S, 3]
  terminalLogits: Tensor, // [...S, 2]
  t: WorldTargets,
): WorldLossTerms {
  const obs = crossEntropy(obsLogits, t.obsTokens, t.obsMask);
  const reward = crossEntropy(rewardLogits, t.rewardClass, t.mask);
  const end = crossEntropy(terminalLogits, t.terminal, t.mask);
  return { obs, reward, end, world: add(add(obs, reward), end) };
}

/** Inputs of the C51 TD loss for N transitions (o_t, a_t, r_t, done_t, o_{t+1}). */
export interface TdBatch {
  /** Online Q head distributions at o_t: f32 [N, A, atoms] (ensemble average, sums to 1). */
  probs: Tensor;
  /**
   * Target Q head distributions at o_{t+1}: f32 [N, A, atoms] (no gradient). A terminal
   * transition ignores it (any distribution will do).
   */
  nextTargetProbs: Tensor;
  actions: Tensor; // i32 [N]
  rewards: Tensor; // f32 [N], as trained on (clipped in DQN-Replay)
  terminals: Tensor; // f32 [N] 0/1
  /** Valid actions of each transition's game: f32 [N, A] (1 valid, 0 not). */
  valid: Tensor;
  /** f32 [N]: 1 for the transitions the TD loss averages over. */
  mask: Tensor;
}

/** Inputs of the CQL penalty for N timesteps. */
export interface CqlBatch {
  /** Online Q head distributions f32 [N, A, atoms]. */
  probs: Tensor;
  actions: Tensor; // i32 [N]
  /** f32 [N]: the rows averaged over (every real timestep). */
  mask: Tensor;
  /** f32 [N, A]: needed only with `cqlActions: "valid"`. */
  valid?: Tensor;
}

/** Both action losses' inputs: the TD transitions and CQL's rows (`cqlMask`). */
export interface ActionBatch extends TdBatch {
  /** f32 [N]: rows of the CQL penalty (every real timestep, the last one included). */
  cqlMask: Tensor;
}

/**
 * The C51 TD loss (cross-entropy of the projected target against the online distribution
 * of the taken action), masked mean over transitions.
 */
export function c51TdLoss(b: TdBatch, opts: ActionLossOptions = {}): Tensor {
  const support = opts.support ?? JOWA_SUPPORT;
  const gamma = opts.gamma ?? 0.99;
  const target = targetDistribution(b, gamma, support);
  const chosen = selectAction(b.probs, b.actions); // [N, atoms]
  // The ensemble average can put exactly zero mass on an atom the target reaches.
  const logp = log(addScalar(chosen, 1e-8));
  const perRow = neg(sum(mul(logp, target), 1)); // [N]
  return maskedMean(perRow, b.mask);
}

/** CQL penalty alpha * mean(logsumexp_a Q(o, a) - Q(o, a_data)) over unmasked rows. */
export function cqlPenalty(b: CqlBatch, opts: ActionLossOptions = {}): Tensor {
  const support = opts.support ?? JOWA_SUPPORT;
  const alpha = opts.cqlAlpha ?? 0.1;
  const actions = opts.cqlActions ?? "all";
  const q = qValues(b.probs, support); // [N, A]
  let qNeg = q;
  if (actions === "valid") {
    if (!b.valid) throw new Error('cqlPenalty: cqlActions "valid" needs the valid-action mask');
    // Invalid actions drop out of the logsumexp (their Q is pushed to -1e4 before it).
    qNeg = add(q, mapKernel("cql.invalid", [b.valid], "(a - 1.0) * 1.0e4", "f32"));
  } else if (actions !== "all") {
    throw new Error(`cqlPenalty: cqlActions must be "all" or "valid", not ${actions}`);
  }
  const gap = sub(
    logsumexp(qNeg),
    reshape(selectAction(reshape(q, [...q.shape, 1]), b.actions), [q.shape[0]]),
  );
  return mulScalar(maskedMean(gap, b.mask), alpha);
}

/** The parts of Eq. 9's action loss (scalars). */
export interface ActionLossTerms {
  td: Tensor;
  cql: Tensor;
  /** td + cql. */
  action: Tensor;
}

/** Eq. 9: C51 TD loss (over `mask`) + CQL penalty (over `cqlMask`). */
export function actionLoss(b: ActionBatch, opts: ActionLossOptions = {}): ActionLossTerms {
  const td = c51TdLoss(b, opts);
  const cql = cqlPenalty(
    { probs: b.probs, actions: b.actions, mask: b.cqlMask, valid: b.valid },
    opts,
  );
  return { td, cql, action: add(td, cql) };
}

/** Eq. 10: beta * world + action. */
export function jointLoss(world: Tensor, action: Tensor, beta = 0.1): Tensor {
  return add(mulScalar(world, beta), action);
}

/** Q(o, a) = sum_i z_i p_i with a gradient (a matmul against the support). */
export function qValues(probs: Tensor, support: Support = JOWA_SUPPORT): Tensor {
  const [N, A, K] = probs.shape;
  const z = constTensor(Float32Array.from(supportValues(support)), [K, 1]);
  const q = reshape(matmul(reshape(probs, [N * A, K]), z), [N, A]);
  return q;
}

/** The projected target: target head at t+1, a* over valid actions, r + gamma z. */
function targetDistribution(b: TdBatch, gamma: number, support: Support): Tensor {
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
