/**
 * minGPT's pre-LN transformer block and a small GPT built from it, read top to bottom:
 *
 *   x = x + dropout(proj(attention(ln1(x))))
 *   x = x + dropout(fc2(gelu(fc1(ln2(x)))))
 *
 * The JOWA world-action model stacks the same `Block`.
 *
 * @module
 */
import {
  add,
  crossEntropy,
  dropout,
  fusedAttention,
  gelu,
  geluErf,
  matmul,
} from "../../kernels/ops/mod.ts";
import type { MatmulOptions } from "../../kernels/ops/matmul.ts";
import { matmulF16, usesF16 } from "../../kernels/ops/matmul_f16.ts";
import { sumPartsNorm } from "../../kernels/ops/sum_parts_norm.ts";
import {
  fusesQkvAttention,
  type GreedyInput,
  qkvAttentionProj,
} from "../../kernels/ops/qkv_attention_proj.ts";
import { fusesMlpUp, sumPartsMlpUp } from "../../kernels/ops/sum_parts_mlp_up.ts";
import { dropoutAddLayerNorm, type ResidualNorm } from "../../kernels/ops/fused_residual_norm.ts";
import { Module } from "../../kernels/nn/module.ts";
import { Embedding, InitRng, LayerNorm, Linear } from "../../kernels/nn/layers.ts";
import type { Tensor } from "../../kernels/core/tensor.ts";
import { reshape, slice } from "../../kernels/ops/layout.ts";
import { type Seed, SeedStream } from "../../util/rng.ts";

/** Sizes of a transformer stack. */
export interface BlockConfig {
  d: number;
  heads: number;
  dropout: number;
  /** Attention mask: causal for language-like sequences. */
  causal: boolean;
  /** The MLP's GELU: "erf" exact (PyTorch's nn.GELU(), JOWA), "tanh" GPT-2's (default). */
  gelu?: "erf" | "tanh";
  /**
   * GPT-2's scaled init of the residual projections (attn.proj, mlp.fc2):
   * N(0, 0.02 / sqrt(2 layers)) when true (default), plain N(0, 0.02) when false (JOWA).
   */
  scaledInit?: boolean;
}

/** Multi-head self-attention with a fused QKV projection. */
export class SelfAttention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;

  constructor(readonly cfg: BlockConfig, rng: InitRng, projStd: number) {
    super();
    this.qkv = this.child("qkv", new Linear(cfg.d, 3 * cfg.d, rng));
    this.proj = this.child("proj", new Linear(cfg.d, cfg.d, rng, { std: projStd }));
  }

  /**
   * The packed q, k, v [B, T, 3d] of the full-sequence paths (`forward`, training): stored
   * f16 where the projection takes the f16 path (`--precision f16`: f16 weight copies, f32
   * accumulation, rounded once at the store), which `fusedAttention` reads with f32
   * arithmetic; f32 otherwise. The decode paths keep their own (f32) projection.
   */
  packedQkv(x: Tensor): Tensor {
    const l = this.qkv;
    if (!usesF16(x, l.weight)) return l.forward(x);
    return matmulF16(x, l.weight, { transB: true, bias: l.bias ?? undefined, outDtype: "f16" });
  }

  /** [B, T, d] -> [B, T, d]. */
  forward(x: Tensor, seeds: SeedStream): Tensor {
    const p = this.training ? this.cfg.dropout : 0;
    const y = fusedAttention(this.packedQkv(x), {
      heads: this.cfg.heads,
      causal: this.cfg.causal,
      dropout: p,
      seed: seeds.nextSeed(),
    });
    return drop(this.proj.forward(y), p, seeds);
  }
}

/** The feed-forward part: d -> 4d -> GELU (exact or tanh form, `cfg.gelu`) -> d. */
export class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(readonly cfg: BlockConfig, rng: InitRng, projStd: number) {
    super();
    this.fc1 = this.child("fc1", new Linear(cfg.d, 4 * cfg.d, rng));
    this.fc2 = this.child("fc2", new Linear(4 * cfg.d, cfg.d, rng, { std: projStd }));
  }

  /** [..., d] -> [..., d]. */
  forward(x: Tensor, seeds: SeedStream): Tensor {
    const act = this.cfg.gelu === "erf" ? geluErf : gelu;
    return drop(
      this.fc2.forward(act(this.fc1.forward(x))),
      this.training ? this.cfg.dropout : 0,
      seeds,
    );
  }
}

/** One pre-LN block. */
export class Block extends Module {
  readonly ln1: LayerNorm;
  readonly attn: SelfAttention;
  readonly ln2: LayerNorm;
  readonly mlp: Mlp;

  /** `layers` sets GPT-2's scaled init of the residual projections (see `scaledInit`). */
  constructor(cfg: BlockConfig, rng: InitRng, layers: number) {
    super();
    const projStd = cfg.scaledInit === false ? 0.02 : 0.02 / Math.sqrt(2 * layers);
    this.ln1 = this.child("ln1", new LayerNorm(cfg.d));
    this.attn = this.child("attn", new SelfAttention(cfg, rng, projStd));
    this.ln2 = this.child("ln2", new LayerNorm(cfg.d));
    this.mlp = this.child("mlp", new Mlp(cfg, rng, projStd));
  }

  /** [B, T, d] -> [B, T, d]. */
  forward(x: Tensor, seeds: SeedStream): Tensor {
    const h = add(x, this.attn.forward(this.ln1.forward(x), seeds));
    return add(h, this.mlp.forward(this.ln2.forward(h), seeds));
  }

  /**
   * `forward` on the seams fused (training path, see {@link forwardStack}): from the stream
   * `h` and `n` = ln1(h), returns the next stream and its norm by `next` (the next block's
   * ln1, or the final norm). Two fused dropout + residual add + layer norm kernels where
   * `forward` plus the next norm take six dispatches; the same values and dropout seeds.
   */
  forwardFused(h: Tensor, n: Tensor, next: LayerNorm, seeds: SeedStream): ResidualNorm {
    const p = this.training ? this.attn.cfg.dropout : 0;
    const y = fusedAttention(this.attn.packedQkv(n), {
      heads: this.attn.cfg.heads,
      causal: this.attn.cfg.causal,
      dropout: p,
      seed: seeds.nextSeed(),
    });
    const mid = addNorm(h, this.attn.proj.forward(y), this.ln2, p, seeds);
    const act = this.mlp.cfg.gelu === "erf" ? geluErf : gelu;
    const u = this.mlp.fc2.forward(act(this.mlp.fc1.forward(mid.n)));
    return addNorm(mid.h, u, next, p, seeds);
  }

  /**
   * Decoding (eval, no gradient), first half: qkv(ln1(x)) [N, t, 3d], with ln1 fused into the
   * projection as a prologue where the rows are few (matmul's `layerNorm` option, the skinny
   * decode kernel); the same values as `attn.qkv.forward(ln1.forward(x))`. With `kvCache`
   * the keys and values also go into the layer's cache from the same kernel (matmul's
   * `kvCache` epilogue; an appendKv dispatch where the kernel does not apply).
   */
  decodeQkv(x: Tensor, kvCache?: MatmulOptions["kvCache"]): Tensor {
    this.#checkDecoding();
    return linear(this.attn.qkv, x, { layerNorm: normOf(this.ln1), kvCache });
  }

  /**
   * Decoding, second half, after attention `y` [N, t, d]: h = x + proj(y) (residual epilogue),
   * then h + fc2(gelu(fc1(ln2(h)))) (ln2 prologue and GELU epilogue on fc1, residual epilogue
   * on fc2): three dispatches where the unfused block takes seven. Draws the MLP's dropout
   * seed as `forward` does, so the stream stays aligned.
   */
  decodeTail(x: Tensor, y: Tensor, seeds: SeedStream): Tensor {
    this.#checkDecoding();
    seeds.nextSeed();
    const h = linear(this.attn.proj, y, { residual: x });
    const activation = this.mlp.cfg.gelu === "erf" ? "gelu_erf" as const : "gelu" as const;
    const u = linear(this.mlp.fc1, h, { activation, layerNorm: normOf(this.ln2) });
    return linear(this.mlp.fc2, u, { residual: h });
  }

  /**
   * Decoding, second half, from the per-head partial projections `parts` [H, N*t, d] of
   * `cachedAttentionProj` (attention and proj in one dispatch): h = x + proj.bias +
   * sum_h parts[h] and n = ln2(h) in one small dispatch (kernels/ops/sum_parts_norm.ts: the
   * partials are summed once per layer, not by each of fc1's workgroups), then fc1 + GELU
   * and fc2 + residual h: three dispatches; the same values as
   * `decodeTail(x, attention, seeds)`.
   */
  decodeTailParts(x: Tensor, parts: Tensor, seeds: SeedStream): Tensor {
    this.#checkDecoding();
    seeds.nextSeed();
    const bias = this.attn.proj.bias;
    if (!bias) throw new Error("Block: decodeTailParts needs the projection's bias");
    const activation = this.mlp.cfg.gelu === "erf" ? "gelu_erf" as const : "gelu" as const;
    const { h, n } = sumPartsNorm(
      parts.view([parts.shape[0], ...x.shape]),
      x,
      bias,
      normOf(this.ln2)!,
    );
    const u = linear(this.mlp.fc1, n, { activation });
    return linear(this.mlp.fc2, u, { residual: h });
  }

  /**
   * Whether {@link decodeCompact} runs for `rows` decode rows (sequences x new tokens) and a
   * cache of `capacity` positions: the biases exist and both fused kernels fit a workgroup.
   */
  decodesCompact(rows: number, capacity: number): boolean {
    const { d, heads } = this.attn.cfg;
    if (!this.attn.qkv.bias || !this.attn.proj.bias || !this.mlp.fc1.bias) return false;
    return rows >= 1 && fusesQkvAttention(d, heads, capacity) &&
      fusesMlpUp(d, this.mlp.fc1.weight.shape[0]);
  }

  /**
   * A whole decode layer in THREE dispatches (the default where {@link decodesCompact}:
   * kv_cache.ts `decodeDefaults.compactLayer`): ln1 + qkv + KV write + attention + per-head
   * proj partials, one workgroup per (sequence, head) (kernels/ops/qkv_attention_proj.ts);
   * the partials' sum + proj bias + residual, ln2, fc1 + GELU in a few fat workgroups
   * (kernels/ops/sum_parts_mlp_up.ts); fc2 + bias + residual. The values of
   * `decodeQkv` + attention + `decodeTail` up to f32 rounding. `cache` [2, N, H, cap, D] is the
   * layer's, written at positions start.. . With `greedy` (one token per sequence), x is not
   * read but written: the embedding of the greedy tokens (see `GreedyInput`). Draws the MLP's
   * dropout seed as `forward` does.
   */
  decodeCompact(
    x: Tensor,
    cache: Tensor,
    start: number,
    seeds: SeedStream,
    greedy?: GreedyInput,
  ): Tensor {
    this.#checkDecoding();
    seeds.nextSeed();
    const { qkv, proj } = this.attn;
    const parts = qkvAttentionProj(x, cache, start, {
      lnWeight: this.ln1.weight,
      lnBias: this.ln1.bias,
      lnEps: this.ln1.eps,
      qkvWeight: qkv.weight,
      qkvBias: qkv.bias!,
      projWeight: proj.weight,
    }, greedy);
    const activation = this.mlp.cfg.gelu === "erf" ? "gelu_erf" as const : "gelu" as const;
    const { h, u } = sumPartsMlpUp(
      parts.view([parts.shape[0], ...x.shape]),
      x,
      proj.bias!,
      normOf(this.ln2)!,
      { w1: this.mlp.fc1.weight, b1: this.mlp.fc1.bias!, activation },
    );
    return linear(this.mlp.fc2, u, { residual: h });
  }

  #checkDecoding(): void {
    if (this.training) throw new Error("Block: decoding needs eval mode (no dropout)");
  }
}

/** A Linear applied with fused prologue/epilogue options (eval paths). */
function linear(l: Linear, x: Tensor, extra: MatmulOptions): Tensor {
  return matmul(x, l.weight, { transB: true, bias: l.bias ?? undefined, ...extra });
}

function normOf(ln: LayerNorm): MatmulOptions["layerNorm"] {
  return { weight: ln.weight, bias: ln.bias, eps: ln.eps };
}

/** h + dropout(y) and its norm by `ln`, one kernel; draws the seed as `drop` does. */
function addNorm(h: Tensor | null, y: Tensor, ln: LayerNorm, p: number, seeds: SeedStream) {
  const seed = seeds.nextSeed();
  return dropoutAddLayerNorm(h, y, ln.weight, ln.bias, { p, seed, eps: ln.eps });
}

/**
 * The block stack over input embeddings `x` with its input dropout `p` and final norm `lnF`:
 * the same values and dropout seeds as `lnF.forward(blocks' forward of drop(x, p))`, with
 * every dropout + residual add + following layer norm fused into one kernel (forward and
 * backward; kernels/ops/fused_residual_norm.ts): 4 dispatches fewer per block forward and at
 * least 4 fewer per block backward. Training and any full-sequence forward use it.
 */
export function forwardStack(
  blocks: readonly Block[],
  x: Tensor,
  p: number,
  lnF: LayerNorm,
  seeds: SeedStream,
): Tensor {
  let r = addNorm(null, x, blocks.length ? blocks[0].ln1 : lnF, p, seeds);
  blocks.forEach((b, i) => {
    r = b.forwardFused(r.h, r.n, i + 1 < blocks.length ? blocks[i + 1].ln1 : lnF, seeds);
  });
  return r.n;
}

function drop(x: Tensor, p: number, seeds: SeedStream): Tensor {
  const seed = seeds.nextSeed(); // drawn even at p = 0 so train and eval see the same seeds
  return p > 0 ? dropout(x, p, seed) : x;
}

/** A small GPT: token and position embeddings, blocks, final norm, a linear head. */
export interface GptConfig {
  vocab: number;
  context: number;
  layers: number;
  d: number;
  heads: number;
  dropout: number;
  seed: number;
}

/** minGPT in our engine (the engine's demo and integration test model). */
export class Gpt extends Module {
  readonly tokens: Embedding;
  readonly positions: Embedding;
  readonly blocks: Block[];
  readonly lnF: LayerNorm;
  readonly head: Linear;

  constructor(readonly cfg: GptConfig) {
    super();
    const rng = new InitRng(cfg.seed);
    const block = { d: cfg.d, heads: cfg.heads, dropout: cfg.dropout, causal: true };
    this.tokens = this.child("tokens", new Embedding(cfg.vocab, cfg.d, rng));
    this.positions = this.child("positions", new Embedding(cfg.context, cfg.d, rng));
    this.blocks = [];
    for (let i = 0; i < cfg.layers; i++) {
      this.blocks.push(this.child(`blocks.${i}`, new Block(block, rng, cfg.layers)));
    }
    this.lnF = this.child("ln_f", new LayerNorm(cfg.d));
    this.head = this.child("head", new Linear(cfg.d, cfg.vocab, rng, { bias: false }));
  }

  /** Logits [B, T, vocab] for token ids `idx` [B, T] (i32). */
  forward(idx: Tensor, stepSeed: Seed = 0): Tensor {
    const T = idx.shape[1];
    if (idx.rank !== 2 || T > this.cfg.context) {
      throw new Error(`Gpt: token ids [${idx.shape}] must be [B, T <= ${this.cfg.context}]`);
    }
    const seeds = new SeedStream(stepSeed);
    const pos = reshape(slice(this.positions.weight, 0, 0, T), [1, T, this.cfg.d]);
    const x = add(this.tokens.forward(idx), pos);
    const p = this.training ? this.cfg.dropout : 0;
    return this.head.forward(forwardStack(this.blocks, x, p, this.lnF, seeds));
  }

  /** Mean cross-entropy of next-token prediction where `mask` (f32 [B, T]) is 1. */
  loss(idx: Tensor, targets: Tensor, mask?: Tensor, stepSeed: Seed = 0): Tensor {
    return crossEntropy(this.forward(idx, stepSeed), targets, mask);
  }
}
