/**
 * The tokenizer's encoder and decoder (VQGAN's, with JOWA's strides; shapes documented in
 * models/tokenizer/model.ts).
 *
 * @module
 */
import { silu } from "../../kernels/ops/mod.ts";
import { Module } from "../../kernels/nn/module.ts";
import type { InitRng } from "../../kernels/nn/layers.ts";
import type { Tensor } from "../../kernels/core/tensor.ts";
import {
  AttnBlock,
  Conv2d,
  Downsample,
  GroupNorm,
  ModuleList,
  Namespace,
  ResnetBlock,
  Upsample,
} from "./layers.ts";
import { levelResolutions, type TokenizerConfig } from "./config.ts";

/** One resolution level: residual blocks, each followed by attention where configured. */
class Level extends Namespace {
  readonly block: ModuleList<ResnetBlock>;
  readonly attn: ModuleList<AttnBlock>;
  resample: Downsample | Upsample | null = null;

  constructor(cfg: TokenizerConfig, blocks: number, attn: boolean, rng: InitRng) {
    super();
    this.block = this.add("block", new ModuleList<ResnetBlock>());
    this.attn = this.add("attn", new ModuleList<AttnBlock>());
    for (let i = 0; i < blocks; i++) {
      this.block.push(new ResnetBlock(cfg.ch, cfg.ch, cfg.groups, rng));
      if (attn) this.attn.push(new AttnBlock(cfg.ch, cfg.groups, rng));
    }
  }

  /** Blocks (and attention) without the resampling. */
  blocks(x: Tensor): Tensor {
    let h = x;
    this.block.items.forEach((b, i) => {
      h = b.forward(h);
      if (this.attn.items.length) h = this.attn.items[i].forward(h);
    });
    return h;
  }
}

/** res, attn, res at the lowest resolution. */
class Mid extends Namespace {
  readonly block1: ResnetBlock;
  readonly attn1: AttnBlock;
  readonly block2: ResnetBlock;

  constructor(cfg: TokenizerConfig, rng: InitRng) {
    super();
    this.block1 = this.add("block_1", new ResnetBlock(cfg.ch, cfg.ch, cfg.groups, rng));
    this.attn1 = this.add("attn_1", new AttnBlock(cfg.ch, cfg.groups, rng));
    this.block2 = this.add("block_2", new ResnetBlock(cfg.ch, cfg.ch, cfg.groups, rng));
  }

  forward(x: Tensor): Tensor {
    return this.block2.forward(this.attn1.forward(this.block1.forward(x)));
  }
}

/** Frames [N, inChannels, R, R] -> z [N, zChannels, g, g]. */
export class Encoder extends Module {
  readonly convIn: Conv2d;
  readonly down: ModuleList<Level>;
  readonly mid: Mid;
  readonly normOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(readonly cfg: TokenizerConfig, rng: InitRng) {
    super();
    const res = levelResolutions(cfg);
    this.convIn = this.child("conv_in", new Conv2d(cfg.inChannels, cfg.ch, 3, rng, 1, 1));
    this.down = this.child("down", new ModuleList<Level>());
    res.forEach((r, i) => {
      const level = new Level(cfg, cfg.numResBlocks, cfg.attnResolutions.includes(r), rng);
      if (i < cfg.down.length) {
        const d = cfg.down[i];
        level.resample = level.add(
          "downsample",
          new Downsample(cfg.ch, d.kernel, d.stride, d.pad, rng),
        );
      }
      this.down.push(level);
    });
    this.mid = this.child("mid", new Mid(cfg, rng));
    this.normOut = this.child("norm_out", new GroupNorm(cfg.ch, cfg.groups));
    this.convOut = this.child("conv_out", new Conv2d(cfg.ch, cfg.zChannels, 3, rng, 1, 1));
  }

  forward(x: Tensor): Tensor {
    let h = this.convIn.forward(x);
    for (const level of this.down.items) {
      h = level.blocks(h);
      if (level.resample) h = level.resample.forward(h);
    }
    h = this.mid.forward(h);
    return this.convOut.forward(silu(this.normOut.forward(h)));
  }
}

/** z [N, zChannels, g, g] -> frames [N, inChannels, R, R]. */
export class Decoder extends Module {
  readonly convIn: Conv2d;
  readonly mid: Mid;
  readonly up: ModuleList<Level>;
  readonly normOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(readonly cfg: TokenizerConfig, rng: InitRng) {
    super();
    const levels = cfg.up.length + 1;
    this.convIn = this.child("conv_in", new Conv2d(cfg.zChannels, cfg.ch, 3, rng, 1, 1));
    this.mid = this.child("mid", new Mid(cfg, rng));
    // VQGAN builds up[i] from the lowest resolution (i = levels - 1) to the highest (i = 0).
    const built: Level[] = [];
    let r = levelResolutions(cfg).at(-1)!;
    for (let j = 0; j < levels; j++) {
      const attn = cfg.decoderAttnResolutions.includes(r);
      const level = new Level(cfg, cfg.numResBlocks + 1, attn, rng);
      if (j < cfg.up.length) {
        level.resample = level.add("upsample", new Upsample(cfg.ch, cfg.up[j], rng));
        r *= cfg.up[j];
      }
      built.unshift(level);
    }
    if (r !== cfg.resolution) {
      throw new Error(`tokenizer: decoder reaches ${r}, not the resolution ${cfg.resolution}`);
    }
    this.up = this.child("up", new ModuleList<Level>(built));
    this.normOut = this.child("norm_out", new GroupNorm(cfg.ch, cfg.groups));
    this.convOut = this.child("conv_out", new Conv2d(cfg.ch, cfg.inChannels, 3, rng, 1, 1));
  }

  forward(z: Tensor): Tensor {
    let h = this.mid.forward(this.convIn.forward(z));
    for (let i = this.up.items.length - 1; i >= 0; i--) {
      const level = this.up.items[i];
      h = level.blocks(h);
      if (level.resample) h = level.resample.forward(h);
    }
    return this.convOut.forward(silu(this.normOut.forward(h)));
  }
}
