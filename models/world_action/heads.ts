/**
 * The world-action model's output heads: the 2-layer MLP prediction heads (next observation
 * token, reward class, termination) and the distributional Q head, an ensemble of MLPs
 * [Linear -> (Dropout, first block only) -> LayerNorm -> Mish] x (qLayers - 1) -> Linear to
 * actions x atoms whose atom distributions are averaged.
 *
 * @module
 */
import {
  addScalar,
  concat,
  dropout,
  exp,
  logSoftmax,
  logsumexp,
  matmul,
  mish,
  mul,
  relu,
  reshape,
  sum,
} from "../../kernels/ops/mod.ts";
import { Module } from "../../kernels/nn/module.ts";
import { type InitRng, LayerNorm, Linear } from "../../kernels/nn/layers.ts";
import type { Tensor } from "../../kernels/core/tensor.ts";
import type { WorldActionConfig } from "./configs.ts";
import type { SeedStream } from "../../util/rng.ts";
import type { MatmulOptions } from "../../kernels/ops/matmul.ts";
import { ensembleDistribution } from "../../kernels/ops/ensemble_distribution.ts";

/** Linear(d, d) -> ReLU -> Linear(d, classes) (IRIS's head). */
export class MlpHead extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(d: number, classes: number, rng: InitRng) {
    super();
    this.fc1 = this.child("fc1", new Linear(d, d, rng));
    this.fc2 = this.child("fc2", new Linear(d, classes, rng));
  }

  /** [..., d] -> [..., classes] logits. */
  forward(x: Tensor): Tensor {
    return this.fc2.forward(relu(this.fc1.forward(x)));
  }

  /**
   * Decoding (no gradient): forward(layerNorm(x)) with the norm as fc1's prologue and ReLU as
   * its epilogue (matmul's `layerNorm` / `activation`): 2 dispatches where the rows are few.
   */
  decode(x: Tensor, norm: LayerNorm): Tensor {
    const h = matmul(x, this.fc1.weight, {
      transB: true,
      bias: this.fc1.bias ?? undefined,
      activation: "relu",
      layerNorm: { weight: norm.weight, bias: norm.bias, eps: norm.eps },
    });
    return this.fc2.forward(h);
  }
}

/**
 * One Q-head ensemble member. As the authors' `mlp(..., dropout)` (their utils.py), only the
 * FIRST hidden block has dropout. With `init: "jowa"` its Linears keep PyTorch's default
 * init, as their stacked ensemble does. Departure: their ensemble runs a functorch copy whose
 * dropout `.eval()` never switches off (in the target head too), so their evaluation and TD
 * targets are slightly random; ours applies dropout only in training, never in the target.
 */
export class QMember extends Module {
  readonly hidden: { linear: Linear; norm: LayerNorm }[] = [];
  readonly out: Linear;

  constructor(readonly cfg: WorldActionConfig, rng: InitRng) {
    super();
    let din = cfg.d;
    const opts = { torchDefault: cfg.init === "jowa" };
    for (let j = 0; j < cfg.qLayers - 1; j++) {
      this.hidden.push({
        linear: this.child(`hidden.${j}.linear`, new Linear(din, cfg.qHidden, rng, opts)),
        norm: this.child(`hidden.${j}.norm`, new LayerNorm(cfg.qHidden)),
      });
      din = cfg.qHidden;
    }
    this.out = this.child("out", new Linear(din, cfg.actions * cfg.atoms, rng, opts));
  }

  /** [..., d] -> logits [..., actions, atoms]. */
  forward(x: Tensor, seeds: SeedStream): Tensor {
    const p = this.training ? this.cfg.qDropout : 0;
    let h = x;
    for (const [j, { linear, norm }] of this.hidden.entries()) {
      const seed = seeds.nextSeed(); // drawn at p = 0 too: train and eval see the same seeds
      let y = linear.forward(h);
      if (p > 0 && j === 0) y = dropout(y, p, seed);
      h = mish(norm.forward(y));
    }
    const logits = this.out.forward(h);
    return reshape(logits, [...x.shape.slice(0, -1), this.cfg.actions, this.cfg.atoms]);
  }

  /**
   * Decoding (eval, no gradient): forward(norm(x)) with every norm fused into the next
   * Linear's prologue (matmul's `layerNorm`, with Mish for the hidden blocks' LayerNorm +
   * Mish): one dispatch per Linear where the rows are few (the skinny kernel). Draws the
   * same seeds as `forward`.
   */
  decode(x: Tensor, norm: LayerNorm, seeds: SeedStream): Tensor {
    if (this.training) throw new Error("QMember: decoding needs eval mode (no dropout)");
    let h = x;
    let pro: NonNullable<MatmulOptions["layerNorm"]> = {
      weight: norm.weight,
      bias: norm.bias,
      eps: norm.eps,
    };
    for (const { linear, norm: n } of this.hidden) {
      seeds.nextSeed();
      h = matmul(h, linear.weight, {
        transB: true,
        bias: linear.bias ?? undefined,
        layerNorm: pro,
      });
      pro = { weight: n.weight, bias: n.bias, eps: n.eps, activation: "mish" };
    }
    const logits = matmul(h, this.out.weight, {
      transB: true,
      bias: this.out.bias ?? undefined,
      layerNorm: pro,
    });
    return reshape(logits, [...x.shape.slice(0, -1), this.cfg.actions, this.cfg.atoms]);
  }
}

/** What the Q head gives for a batch of rows. */
export interface QOutputs {
  /** Logits of each ensemble member, [..., actions, atoms]. */
  logits: Tensor[];
  /** log of the ensemble-mean atom distribution (computed stably), [..., actions, atoms]. */
  logProbs: Tensor;
  /** The ensemble-mean atom distribution, [..., actions, atoms]. */
  probs: Tensor;
  /** Expected value over the support, [..., actions]. */
  values: Tensor;
}

/** The Q-head ensemble (`head_q.{e}` in parameter names). */
export class QHead extends Module {
  readonly members: QMember[] = [];

  constructor(readonly cfg: WorldActionConfig, rng: InitRng) {
    super();
    for (let e = 0; e < cfg.qEnsemble; e++) {
      this.members.push(this.child(`${e}`, new QMember(cfg, rng)));
    }
  }

  /** Distributions and values for features `x` [..., d]; `support` is [atoms]. */
  forward(x: Tensor, seeds: SeedStream, support: Tensor): QOutputs {
    const logits = this.members.map((m) => m.forward(x, seeds));
    return qDistribution(logits, support);
  }

  /**
   * Decoding (eval, no gradient): forward(norm(x)) with the norms fused into the members'
   * Linears (`QMember.decode`) and the ensemble distribution in one dispatch
   * (kernels/ops/ensemble_distribution.ts): (qLayers) E + 1 dispatches where the rows are few.
   */
  decode(x: Tensor, norm: LayerNorm, seeds: SeedStream, support: Tensor): QOutputs {
    const logits = this.members.map((m) => m.decode(x, norm, seeds));
    return { logits, ...ensembleDistribution(logits, support) };
  }
}

/**
 * Average the members' softmax distributions: log mean_e softmax(l_e) =
 * logsumexp_e(logSoftmax(l_e)) - log n, which stays finite where a probability underflows.
 */
export function qDistribution(logits: Tensor[], support: Tensor): QOutputs {
  const n = logits.length;
  let logProbs: Tensor;
  if (n === 1) logProbs = logSoftmax(logits[0]);
  else {
    const shape = logits[0].shape;
    const stacked = concat(logits.map((l) => reshape(logSoftmax(l), [...shape, 1])), shape.length);
    logProbs = addScalar(logsumexp(stacked), -Math.log(n));
  }
  const probs = exp(logProbs);
  const values = sum(mul(probs, support), -1);
  return { logits, logProbs, probs, values };
}
