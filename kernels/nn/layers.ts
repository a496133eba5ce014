/**
 * Common layers (Linear, LayerNorm, Embedding) and seeded initializers, minGPT's scheme:
 * weights ~ N(0, 0.02), biases 0, norms 1/0.
 *
 * @module
 */
import { Module } from "./module.ts";
import { layerNorm, matmul } from "../ops/mod.ts";
import { indexSelect } from "../ops/gather.ts";
import { type Tensor, tensor } from "../core/tensor.ts";
import { mulberry32 } from "../../util/rng.ts";

/** A seeded normal sampler (mulberry32 + Box-Muller) for reproducible initialization. */
export class InitRng {
  /** Uniform in [0, 1). */
  readonly uniform: () => number;

  constructor(seed: number) {
    this.uniform = mulberry32(seed);
  }

  /** `n` samples of N(0, std^2). */
  normal(n: number, std: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const u = Math.max(this.uniform(), 1e-12);
      const v = this.uniform();
      const r = Math.sqrt(-2 * Math.log(u)) * std;
      out[i] = r * Math.cos(2 * Math.PI * v);
      if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
    }
    return out;
  }
}

/** y = x W^T + b with W stored [out, in] (PyTorch's layout, so reference weights load as is). */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    rng: InitRng,
    opts: {
      bias?: boolean;
      std?: number;
      /** PyTorch's default nn.Linear init instead: weight and bias U(+-1/sqrt(in)). */
      torchDefault?: boolean;
    } = {},
  ) {
    super();
    const std = opts.std ?? 0.02;
    const bound = 1 / Math.sqrt(inFeatures);
    const uniform = (n: number) =>
      Float32Array.from({ length: n }, () => (2 * rng.uniform() - 1) * bound);
    const w = opts.torchDefault
      ? uniform(inFeatures * outFeatures)
      : rng.normal(inFeatures * outFeatures, std);
    this.weight = this.param("weight", tensor(w, [outFeatures, inFeatures]));
    this.bias = opts.bias === false ? null : this.param(
      "bias",
      tensor(opts.torchDefault ? uniform(outFeatures) : new Float32Array(outFeatures), [
        outFeatures,
      ]),
    );
  }

  /** Apply to [..., in]. */
  forward(x: Tensor): Tensor {
    if (x.shape[x.rank - 1] !== this.inFeatures) {
      throw new Error(`Linear(${this.inFeatures}, ${this.outFeatures}): input [${x.shape}]`);
    }
    return matmul(x, this.weight, { transB: true, bias: this.bias ?? undefined });
  }
}

/** Layer norm over the last axis with learned scale and shift. */
export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;

  constructor(readonly features: number, readonly eps = 1e-5) {
    super();
    this.weight = this.param("weight", tensor(new Float32Array(features).fill(1), [features]));
    this.bias = this.param("bias", tensor(new Float32Array(features), [features]));
  }

  /** Normalize [..., features]. */
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/** A lookup table of `count` vectors of size `dim`. */
export class Embedding extends Module {
  readonly weight: Tensor;

  constructor(readonly count: number, readonly dim: number, rng: InitRng, std = 0.02) {
    super();
    this.weight = this.param("weight", tensor(rng.normal(count * dim, std), [count, dim]));
  }

  /** Rows for integer `idx` of any shape: [...idx.shape, dim]. */
  forward(idx: Tensor): Tensor {
    return indexSelect(this.weight, idx);
  }
}
