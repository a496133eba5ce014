/**
 * The VQGAN building blocks of the tokenizer (Esser et al. 2021, as IRIS and JOWA use them),
 * with VQGAN's parameter names: Conv2d, GroupNorm, ResnetBlock, AttnBlock, Downsample,
 * Upsample, and an indexed list.
 *
 * Initialization follows PyTorch's defaults (convolutions: weight and bias
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)); GroupNorm: weight 1, bias 0).
 *
 * @module
 */
import {
  add,
  concat,
  conv2d,
  fusedAttention,
  groupNorm,
  permute,
  reshape,
  silu,
  upsampleNearest,
} from "../../kernels/ops/mod.ts";
import { Module } from "../../kernels/nn/module.ts";
import type { InitRng } from "../../kernels/nn/layers.ts";
import { type Tensor, tensor } from "../../kernels/core/tensor.ts";

/** U(-bound, bound) samples. */
function uniform(rng: InitRng, n: number, bound: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * rng.uniform() - 1) * bound;
  return out;
}

/** A 2-D convolution layer: weight [out, in, k, k], bias [out]. */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    rng: InitRng,
    readonly stride = 1,
    readonly padding: number | [number, number, number, number] = 0,
  ) {
    super();
    const bound = 1 / Math.sqrt(inChannels * kernel * kernel);
    this.weight = this.param(
      "weight",
      tensor(uniform(rng, outChannels * inChannels * kernel * kernel, bound), [
        outChannels,
        inChannels,
        kernel,
        kernel,
      ]),
    );
    this.bias = this.param("bias", tensor(uniform(rng, outChannels, bound), [outChannels]));
  }

  /** [N, in, H, W] -> [N, out, OH, OW]. */
  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }
}

/** torch.nn.GroupNorm(groups, channels, eps=1e-6, affine=True), VQGAN's `Normalize`. */
export class GroupNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;

  constructor(readonly channels: number, readonly groups: number, readonly eps = 1e-6) {
    super();
    this.weight = this.param("weight", tensor(new Float32Array(channels).fill(1), [channels]));
    this.bias = this.param("bias", tensor(new Float32Array(channels), [channels]));
  }

  /** Normalize [N, C, H, W]. */
  forward(x: Tensor): Tensor {
    return groupNorm(x, this.groups, this.weight, this.bias, this.eps);
  }
}

/**
 * x + conv2(swish(norm2(conv1(swish(norm1(x)))))), with a 1x1 `nin_shortcut` on x when the
 * channel count changes (VQGAN's ResnetBlock without time embedding; dropout 0).
 */
export class ResnetBlock extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly ninShortcut: Conv2d | null;

  constructor(inCh: number, outCh: number, groups: number, rng: InitRng) {
    super();
    this.norm1 = this.child("norm1", new GroupNorm(inCh, groups));
    this.conv1 = this.child("conv1", new Conv2d(inCh, outCh, 3, rng, 1, 1));
    this.norm2 = this.child("norm2", new GroupNorm(outCh, groups));
    this.conv2 = this.child("conv2", new Conv2d(outCh, outCh, 3, rng, 1, 1));
    this.ninShortcut = inCh === outCh
      ? null
      : this.child("nin_shortcut", new Conv2d(inCh, outCh, 1, rng));
  }

  /** [N, in, H, W] -> [N, out, H, W]. */
  forward(x: Tensor): Tensor {
    let h = this.conv1.forward(silu(this.norm1.forward(x)));
    h = this.conv2.forward(silu(this.norm2.forward(h)));
    return add(this.ninShortcut ? this.ninShortcut.forward(x) : x, h);
  }
}

/**
 * VQGAN's AttnBlock: x + proj_out(attention(q, k, v)) with q, k, v 1x1 convolutions of
 * norm(x); one head of dimension C over the H*W positions, softmax scale C^-1/2, no mask.
 * The three 1x1 convolutions run as one (weights concatenated) and the attention is the
 * engine's fused kernel over the packed [N, H*W, 3C] projection.
 */
export class AttnBlock extends Module {
  readonly norm: GroupNorm;
  readonly q: Conv2d;
  readonly k: Conv2d;
  readonly v: Conv2d;
  readonly projOut: Conv2d;

  constructor(readonly channels: number, groups: number, rng: InitRng) {
    super();
    this.norm = this.child("norm", new GroupNorm(channels, groups));
    this.q = this.child("q", new Conv2d(channels, channels, 1, rng));
    this.k = this.child("k", new Conv2d(channels, channels, 1, rng));
    this.v = this.child("v", new Conv2d(channels, channels, 1, rng));
    this.projOut = this.child("proj_out", new Conv2d(channels, channels, 1, rng));
  }

  /** [N, C, H, W] -> [N, C, H, W]. */
  forward(x: Tensor): Tensor {
    const [N, C, H, W] = x.shape;
    const w = concat([this.q.weight, this.k.weight, this.v.weight], 0);
    const b = concat([this.q.bias, this.k.bias, this.v.bias], 0);
    const qkv = conv2d(this.norm.forward(x), w, b); // [N, 3C, H, W]
    const packed = permute(reshape(qkv, [N, 3 * C, H * W]), [0, 2, 1]); // [N, HW, 3C]
    const y = fusedAttention(packed, { heads: 1, causal: false }); // [N, HW, C]
    const h = reshape(permute(y, [0, 2, 1]), [N, C, H, W]);
    return add(x, this.projOut.forward(h));
  }
}

/** A strided convolution after zero padding [top, bottom, left, right] (VQGAN pads (0,1,0,1)). */
export class Downsample extends Module {
  readonly conv: Conv2d;

  constructor(
    channels: number,
    kernel: number,
    stride: number,
    pad: [number, number, number, number],
    rng: InitRng,
  ) {
    super();
    this.conv = this.child("conv", new Conv2d(channels, channels, kernel, rng, stride, pad));
  }

  /** [N, C, H, W] -> [N, C, OH, OW]. */
  forward(x: Tensor): Tensor {
    return this.conv.forward(x);
  }
}

/** Nearest upsampling by `factor`, then a 3x3 convolution (VQGAN's Upsample with_conv). */
export class Upsample extends Module {
  readonly conv: Conv2d;

  constructor(channels: number, readonly factor: number, rng: InitRng) {
    super();
    this.conv = this.child("conv", new Conv2d(channels, channels, 3, rng, 1, 1));
  }

  /** [N, C, H, W] -> [N, C, H * factor, W * factor]. */
  forward(x: Tensor): Tensor {
    return this.conv.forward(upsampleNearest(x, this.factor));
  }
}

/** Sub-modules named "0", "1", ... (PyTorch's ModuleList naming). */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[] = [];

  constructor(items: M[] = []) {
    super();
    items.forEach((m) => this.push(m));
  }

  /** Append (named by its index). */
  push(m: M): M {
    this.items.push(this.child(String(this.items.length), m));
    return m;
  }
}

/** A named bag of sub-modules (VQGAN's `nn.Module()` used as a namespace, e.g. `mid`). */
export class Namespace extends Module {
  /** Register `m` under `name`. */
  add<M extends Module>(name: string, m: M): M {
    return this.child(name, m);
  }
}
