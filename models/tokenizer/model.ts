/**
 * JOWA's VQ-VAE tokenizer: 84x84 grayscale frames <-> 6x6 = 36 tokens from a codebook.
 *
 * Architecture (reference: jowa.md "Tokenizer"; where it is silent we follow VQGAN
 * (Esser et al. 2021) as IRIS and JOWA's public code do, marked [VQGAN]). Shapes for the
 * `paper` config (ch = 64, zChannels = embedDim = 512, vocab = 2048, 32 groups); `tiny` has
 * the same strides and grid with ch = 8, 4 groups, zChannels = embedDim = 16, vocab = 64.
 *
 *   input  uint8 [N, 1, 84, 84] -> x / 127.5 - 1 in [-1, 1]
 *   encoder.conv_in            3x3 s1 p1        [N, 1, 84, 84]  -> [N, 64, 84, 84]
 *   encoder.down.0.block.{0,1}  ResnetBlock      84x84 (no attention at 84)
 *   encoder.down.0.downsample   pad (0,1,0,1), 8x8 s7 -> [N, 64, 12, 12]   (85 - 8) / 7 + 1 = 12
 *   encoder.down.1.block.{0,1} + attn.{0,1}      12x12 (attention at 12)
 *   encoder.down.1.downsample   pad (0,1,0,1), 3x3 s2 -> [N, 64, 6, 6]     (13 - 3) / 2 + 1 = 6
 *   encoder.down.2.block.{0,1} + attn.{0,1}      6x6 (attention at 6; no downsample)
 *   encoder.mid.{block_1, attn_1, block_2}       6x6
 *   encoder.norm_out, swish, encoder.conv_out 3x3 p1 -> [N, 512, 6, 6]      [VQGAN]
 *   pre_quant_conv             1x1               -> [N, 512, 6, 6]
 *   quantize: [N, 512, 6, 6] -> rows [N*36, 512] (row = n*36 + y*6 + x), nearest row of
 *     embedding.weight [2048, 512] by L2 distance -> ids [N, 36] (raster order)
 *   post_quant_conv            1x1               [N, 512, 6, 6] -> [N, 512, 6, 6]
 *   decoder.conv_in            3x3 p1            -> [N, 64, 6, 6]
 *   decoder.mid.{block_1, attn_1, block_2}       6x6
 *   decoder.up.2.block.{0,1,2} + attn.{0,1,2}    6x6 (numResBlocks + 1 blocks per decoder
 *                                                  level, as VQGAN's decoder) [VQGAN]
 *   decoder.up.2.upsample      nearest x7, 3x3 p1 -> [N, 64, 42, 42]
 *   decoder.up.1.block.{0,1,2}                   42x42 (no attention)
 *   decoder.up.1.upsample      nearest x2, 3x3 p1 -> [N, 64, 84, 84]
 *   decoder.up.0.block.{0,1,2}                   84x84
 *   decoder.norm_out, swish, decoder.conv_out 3x3 p1 -> [N, 1, 84, 84]  (no output squashing)
 *
 * Blocks: ResnetBlock = x + conv2(swish(norm2(conv1(swish(norm1(x)))))), AttnBlock =
 * x + proj_out(softmax(q k^T / sqrt(C)) v) over the H*W positions with q, k, v 1x1 convs of
 * norm(x); GroupNorm eps 1e-6 (models/tokenizer_layers.ts). Decoder levels are named as in
 * VQGAN (up.0 is the highest resolution; the decoder runs up.2, up.1, up.0).
 *
 * Loss (jowa.md): L1(x, recon) in [-1, 1] + codebook mean((sg[z] - e)^2) + beta * commitment
 * mean((z - sg[e])^2) with beta = 1 and the straight-through gradient, + LPIPS(x, recon) when
 * VGG16/LPIPS weights are given (models/tokenizer/lpips.ts), all with weight 1.
 *
 * Parameter names (`namedParameters()`, state dicts, checkpoints) are VQGAN's, e.g.
 * "encoder.conv_in.weight" [64, 1, 3, 3], "encoder.down.0.block.1.norm2.bias" [64],
 * "encoder.down.1.attn.0.proj_out.weight" [64, 64, 1, 1], "encoder.down.0.downsample.conv.weight"
 * [64, 64, 8, 8], "pre_quant_conv.weight" [512, 512, 1, 1], "embedding.weight" [2048, 512],
 * "decoder.up.2.upsample.conv.weight" [64, 64, 3, 3], "decoder.conv_out.bias" [1].
 * Initialization (`init`): "orthogonal", the authors' (encoder/decoder convolutions orthogonal
 * with gain sqrt(2), zero biases; pre/post-quant convolutions PyTorch's default), or
 * "default", PyTorch's defaults throughout; the codebook U(-1/vocab, 1/vocab) as IRIS.
 * The `paper` config is the authors' architecture (models/tokenizer/config.ts): 2 groups and
 * no attention in the decoder's up levels, unlike the 32 groups and the up.2 attention drawn
 * above.
 *
 * @module
 */
import { noGrad } from "../../kernels/core/autograd.ts";
import {
  abs,
  add,
  indexSelect,
  meanAll,
  mulScalar,
  permute,
  reshape,
  sub,
  vectorQuantize,
} from "../../kernels/ops/mod.ts";
import { mapKernel } from "../../kernels/ops/map.ts";
import { assignValues, Module } from "../../kernels/nn/module.ts";
import { InitRng } from "../../kernels/nn/layers.ts";
import { type Tensor, tensor, tidy } from "../../kernels/core/tensor.ts";
import { Conv2d } from "./layers.ts";
import { Decoder, Encoder } from "./nets.ts";
import { orthogonalConvInit } from "./orthogonal_init.ts";
import { tokenGrid, type TokenizerConfig } from "./config.ts";

export * from "./config.ts";

/** A perceptual distance: per-frame distances [N] between frames in [-1, 1]. */
export interface PerceptualLoss {
  distance(x: Tensor, y: Tensor): Tensor;
}

/** Frames as the tokenizer takes them. */
export type Frames = Uint8Array | Tensor;

/** Everything `forward` computes (scalars have shape []). */
export interface TokenizerOutput {
  /** Reconstruction in [-1, 1] scale, [N, 1, 84, 84]. */
  recon: Tensor;
  /** Token ids i32 [N, 36]. */
  indices: Tensor;
  reconLoss: Tensor;
  codebookLoss: Tensor;
  commitmentLoss: Tensor;
  /** LPIPS term, null without perceptual weights. */
  perceptualLoss: Tensor | null;
  /** The weighted sum that training minimizes. */
  loss: Tensor;
}

/** The codebook: `weight` [vocab, embedDim]. */
class Codebook extends Module {
  readonly weight: Tensor;

  constructor(vocab: number, dim: number, rng: InitRng) {
    super();
    const w = new Float32Array(vocab * dim);
    for (let i = 0; i < w.length; i++) w[i] = (2 * rng.uniform() - 1) / vocab;
    this.weight = this.param("weight", tensor(w, [vocab, dim]));
  }
}

/** The VQ-VAE tokenizer. */
export class Tokenizer extends Module {
  readonly encoder: Encoder;
  readonly preQuantConv: Conv2d;
  readonly embedding: Codebook;
  readonly postQuantConv: Conv2d;
  readonly decoder: Decoder;
  /** Tokens per side (6) and per frame (36). */
  readonly grid: number;
  readonly tokensPerFrame: number;
  /** Optional LPIPS network; without it the loss has no perceptual term. */
  perceptual: PerceptualLoss | null;

  constructor(readonly cfg: TokenizerConfig, opts: { perceptual?: PerceptualLoss } = {}) {
    super();
    const rng = new InitRng(cfg.seed);
    this.encoder = this.child("encoder", new Encoder(cfg, rng));
    this.preQuantConv = this.child(
      "pre_quant_conv",
      new Conv2d(cfg.zChannels, cfg.embedDim, 1, rng),
    );
    this.embedding = this.child("embedding", new Codebook(cfg.vocab, cfg.embedDim, rng));
    this.postQuantConv = this.child(
      "post_quant_conv",
      new Conv2d(cfg.embedDim, cfg.zChannels, 1, rng),
    );
    this.decoder = this.child("decoder", new Decoder(cfg, rng));
    if (cfg.init === "orthogonal") {
      orthogonalConvInit(this.encoder, rng);
      orthogonalConvInit(this.decoder, rng);
    }
    this.grid = tokenGrid(cfg);
    this.tokensPerFrame = this.grid * this.grid;
    this.perceptual = opts.perceptual ?? null;
  }

  /**
   * Frames -> f32 [N, C, R, R] in [-1, 1]. A Uint8Array holds N*C*R*R bytes (0..255); an i32
   * or u32 tensor holds byte values; an f32 tensor is taken as already in [-1, 1].
   */
  preprocess(frames: Frames): Tensor {
    const { resolution: R, inChannels: C } = this.cfg;
    const per = C * R * R;
    if (frames instanceof Uint8Array) {
      if (frames.length % per !== 0) {
        throw new Error(`tokenizer: ${frames.length} bytes are not whole ${C}x${R}x${R} frames`);
      }
      const f = Float32Array.from(frames, (v) => v / 127.5 - 1);
      return tensor(f, [frames.length / per, C, R, R]);
    }
    if (frames.size % per !== 0) {
      throw new Error(`tokenizer: frames [${frames.shape}] are not [N, ${C}, ${R}, ${R}]`);
    }
    const shape = [frames.size / per, C, R, R];
    if (frames.dtype === "f32") return reshape(frames, shape);
    return mapKernel("tokenizer.bytes", [frames], "a / 127.5 - 1.0", "f32").view(shape);
  }

  /** Encoder + pre-quantization conv: x [N, C, R, R] -> latent rows [N*36, embedDim]. */
  latents(x: Tensor): Tensor {
    const z = this.preQuantConv.forward(this.encoder.forward(x)); // [N, E, g, g]
    return reshape(permute(z, [0, 2, 3, 1]), [-1, this.cfg.embedDim]);
  }

  /** Code rows [N*36, embedDim] -> reconstruction [N, C, R, R] in [-1, 1] scale. */
  decodeRows(rows: Tensor): Tensor {
    const g = this.grid;
    const z = permute(reshape(rows, [-1, g, g, this.cfg.embedDim]), [0, 3, 1, 2]);
    return this.decoder.forward(this.postQuantConv.forward(z));
  }

  /** Frames -> token ids i32 [N, 36] (no gradient). */
  encode(frames: Frames): Tensor {
    return noGrad(() =>
      tidy(() => {
        const zRows = this.latents(this.preprocess(frames));
        const q = vectorQuantize(zRows, this.embedding.weight);
        return q.indices.view([zRows.shape[0] / this.tokensPerFrame, this.tokensPerFrame]);
      })
    );
  }

  /** Token ids [N, 36] (i32) -> frames f32 [N, C, R, R] in [-1, 1] scale (no gradient). */
  decode(ids: Tensor): Tensor {
    if (ids.dtype !== "i32" || ids.size % this.tokensPerFrame !== 0) {
      throw new Error(`tokenizer: ids must be i32 [N, ${this.tokensPerFrame}], got [${ids.shape}]`);
    }
    return noGrad(() =>
      tidy(() => this.decodeRows(indexSelect(this.embedding.weight, ids.view([ids.size]))))
    );
  }

  /**
   * Data-dependent codebook initialization (not in IRIS/JOWA; as SoundStream's k-means seed,
   * without the k-means): every codebook row becomes a latent vector of `frames`, picked at
   * random with a seed, so the decoder sees informative codes from the first step instead of
   * the near-zero U(-1/vocab, 1/vocab) rows. Useful for short runs (tests, demos).
   */
  async seedCodebook(frames: Frames, seed = 0): Promise<void> {
    const rows = noGrad(() => tidy(() => this.latents(this.preprocess(frames))));
    const z = (await rows.read()) as Float32Array;
    rows.dispose();
    const { vocab, embedDim: E } = this.cfg;
    const count = z.length / E;
    const rng = new InitRng(seed);
    const book = new Float32Array(vocab * E);
    for (let v = 0; v < vocab; v++) {
      const i = Math.floor(rng.uniform() * count);
      book.set(z.subarray(i * E, (i + 1) * E), v * E);
    }
    assignValues(this.embedding.weight, book);
  }

  /** Full pass with every loss term (records the tape when parameters require grad). */
  forward(frames: Frames): TokenizerOutput {
    const x = this.preprocess(frames);
    const q = vectorQuantize(this.latents(x), this.embedding.weight);
    const recon = this.decodeRows(q.zq);
    const reconLoss = meanAll(abs(sub(x, recon)));
    let loss = add(add(reconLoss, q.codebookLoss), mulScalar(q.commitmentLoss, this.cfg.beta));
    let perceptualLoss: Tensor | null = null;
    if (this.perceptual) {
      perceptualLoss = meanAll(this.perceptual.distance(x, recon));
      loss = add(loss, perceptualLoss);
    }
    return {
      recon,
      indices: q.indices.view([x.shape[0], this.tokensPerFrame]),
      reconLoss,
      codebookLoss: q.codebookLoss,
      commitmentLoss: q.commitmentLoss,
      perceptualLoss,
      loss,
    };
  }
}

/** Reconstructions in [-1, 1] -> bytes (clamped, rounded), for viewing. */
export async function toBytes(recon: Tensor): Promise<Uint8Array> {
  const v = await recon.read();
  return Uint8Array.from(v, (x) => Math.max(0, Math.min(255, Math.round((x + 1) * 127.5))));
}
