/**
 * KV-cached inference for the world-action model: batched incremental decoding of N
 * sequences (E environments x K beams) in lockstep, and cache branching for beam search.
 *
 * Planner-facing API (everything stays on the GPU; no readback happens here):
 *
 * ```ts
 * model.eval();
 * const cache = model.newCache(tasks);          // tasks i32 [E]; capacity = context (296)
 * // Prefill the real context: past timesteps + the current observation (ends on an obs token).
 * let out = model.step(cache, contextTokens);   // i32 [E, t]; positions 0..t-1
 * // out.q.values [E, 1, 18] at the current observation (rows.q = [t - 1])
 * // -> top-K valid actions (kernels/ops/topk.ts), parents = [0,0,..,1,1,..] (i32 [E*K]):
 * const beams = cache.branch(parents);          // GPU copy of the shared prefix, [E*K] seqs
 * out = model.step(beams, actions);             // i32 [E*K, 1] at an action position:
 * //   out.rewardLogits [E*K, 1, 3] (imagined reward = argmax - 1),
 * //   out.obsLogits [E*K, 1, V] predicts the first token of the next observation
 * for (let j = 0; j < 36; j++) {                // greedy observation tokens, one at a time
 *   out = model.step(beams, argmax(out.obsLogits, -1)); // i32 [E*K, 1]
 * }                                             // the 36th gives out.q (next state's Q)
 * ```
 *
 * - `step` appends t tokens to every sequence and returns the heads' outputs at the new
 *   positions (`WorldActionOutputs`, rows relative to the block). From an empty cache it runs
 *   the fused full-attention kernel (prefill); later steps attend the cache with the causal
 *   offset (kernels/ops/cached_attention.ts). It needs eval mode and records no gradient.
 *   A decoding layer is 4 dispatches where the skinny kernel applies (M = N t <= 16 rows):
 *   ln1 + qkv + KV write, attention + per-head proj, their sum + ln2 + fc1 + GELU, fc2 +
 *   residual.
 * - `branch(parents)` gathers sequences by an arbitrary parent index (i32 [M], on the GPU):
 *   beam expansion (`repeat(K)`) and pruning to the best K alike; the parent is unchanged.
 * - Sliding context: a cache holds `capacity` positions. Before appending, check
 *   `fits(cache, t)`; when the real context plus the planning horizon no longer fits,
 *   `reset()` the cache and prefill the last `planningWindow(...)` timesteps again
 *   (models/kv_cache_window.ts).
 *
 * Caches are not tidied: they live until `dispose()`.
 *
 * @module
 */
import { noGrad } from "../../kernels/core/autograd.ts";
import { fusedAttention, indexSelect } from "../../kernels/ops/mod.ts";
import {
  cachedAttention,
  cachedAttentionProj,
  gatherCache,
} from "../../kernels/ops/cached_attention.ts";
import { fusesPrologue } from "../../kernels/ops/matmul.ts";
import { constTensor, keep, Tensor, tidy } from "../../kernels/core/tensor.ts";
import { contextLength, type WorldActionConfig } from "./configs.ts";
import { SeedStream } from "../../util/rng.ts";
import type { WorldActionModel, WorldActionOutputs } from "./model.ts";

/** Keys and values of every layer for N sequences of equal length. */
export class KvCache {
  /** Positions filled in every sequence. */
  length = 0;

  /**
   * Prefer `KvCache.create` / `model.newCache`.
   * @param layers per layer f32 [2, N, heads, capacity, d / heads] (kept, owned by the cache)
   * @param tasks i32 [N] task id of each sequence
   */
  constructor(readonly cfg: WorldActionConfig, readonly layers: Tensor[], readonly tasks: Tensor) {
    for (const t of [...layers, tasks]) keep(t);
  }

  /** An empty cache of `tasks.shape[0]` sequences. */
  static create(
    cfg: WorldActionConfig,
    tasks: Tensor,
    capacity = contextLength(cfg),
  ): KvCache {
    if (tasks.rank !== 1 || tasks.dtype !== "i32") {
      throw new Error(`KvCache: tasks ${tasks} must be i32 [N]`);
    }
    if (capacity > contextLength(cfg)) {
      throw new Error(`KvCache: capacity ${capacity} beyond the model's context`);
    }
    const N = tasks.shape[0];
    const D = cfg.d / cfg.heads;
    const layers = Array.from(
      { length: cfg.layers },
      // Uninitialized: positions >= length are never read.
      () => Tensor.empty([2, N, cfg.heads, capacity, D]),
    );
    return new KvCache(cfg, layers, tasks.view(tasks.shape));
  }

  /** Number of sequences. */
  get n(): number {
    return this.tasks.shape[0];
  }

  /** Positions each sequence can hold. */
  get capacity(): number {
    return this.layers[0]?.shape[3] ?? 0;
  }

  /**
   * A new cache whose sequence m continues sequence parents[m] (i32 [M], GPU values allowed;
   * indices are clamped). Copies only the filled positions.
   */
  branch(parents: Tensor): KvCache {
    const layers = this.layers.map((l) => gatherCache(l, parents, this.length));
    const tasks = indexSelect(this.tasks, parents);
    const out = new KvCache(this.cfg, layers, tasks);
    out.length = this.length;
    return out;
  }

  /** Each sequence repeated k times, consecutively (children of n are n*k .. n*k+k-1). */
  repeat(k: number): KvCache {
    const parents = Int32Array.from({ length: this.n * k }, (_, i) => Math.floor(i / k));
    // A function of (n, k) alone: a captured step replays it as recorded.
    const idx = constTensor(parents, [parents.length], "i32");
    const out = this.branch(idx);
    idx.dispose();
    return out;
  }

  /** Forget every position (to prefill a new window). */
  reset(): void {
    this.length = 0;
  }

  /** Release the GPU memory. */
  dispose(): void {
    for (const t of this.layers) t.dispose();
    this.tasks.dispose();
  }
}

/** Whether `t` more tokens fit into the cache. */
export function fits(cache: KvCache, t: number): boolean {
  return cache.length + t <= cache.capacity;
}

/**
 * Append tokens [N, t] (i32, raw ids; the position decides obs or action) to every sequence
 * of `cache` and return the heads at the new positions. Eval mode only; no gradient.
 */
export function decodeStep(
  model: WorldActionModel,
  cache: KvCache,
  tokens: Tensor,
): WorldActionOutputs {
  if (model.training) throw new Error("decodeStep: call model.eval() first (no dropout here)");
  if (tokens.rank !== 2 || tokens.shape[0] !== cache.n) {
    throw new Error(`decodeStep: tokens [${tokens.shape}] must be [${cache.n}, t]`);
  }
  const start = cache.length;
  const t = tokens.shape[1];
  if (!fits(cache, t)) {
    throw new Error(
      `decodeStep: ${t} tokens after ${start} exceed the cache capacity ${cache.capacity}; ` +
        "reset() and prefill a shorter window (models/kv_cache_window.ts)",
    );
  }
  const out = noGrad(() =>
    tidy(() => {
      const seeds = new SeedStream(0);
      let x = model.embed(tokens, cache.tasks, start);
      for (let l = 0; l < model.blocks.length; l++) {
        const b = model.blocks[l];
        // Fused prologues/epilogues (transformer.ts decodeQkv / decodeTail*): ln1 + qkv +
        // KV write; attention + proj partials; their sum + ln2 + fc1 + GELU; fc2 + residual.
        const layer = cache.layers[l];
        const qkv = b.decodeQkv(x, { cache: layer, start });
        const rows = x.shape[0] * x.shape[1];
        if (start === 0 || !fusesPrologue(rows, 4 * model.cfg.d, model.cfg.d, model.cfg.heads)) {
          // Prefill, or a shape the fused sum does not take: attention, then proj + residual.
          const y = start === 0
            ? fusedAttention(qkv, { heads: model.cfg.heads, causal: true })
            : cachedAttention(qkv, layer, start);
          x = b.decodeTail(x, y, seeds);
        } else {
          const parts = cachedAttentionProj(qkv, layer, start, b.attn.proj.weight);
          x = b.decodeTailParts(x, parts, seeds);
        }
      }
      // ln_f fused into the heads' first layers (model.ts decodeHeads).
      return model.decodeHeads(x, start, seeds);
    })
  );
  cache.length = start + t;
  return out;
}
