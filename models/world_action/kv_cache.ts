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
 *   A decoding layer after the prefill with at most 16 rows (N t) is 3 dispatches by default
 *   (`decodeDefaults.compactLayer`, transformer.ts `decodeCompact`): ln1 + qkv + KV write +
 *   attention + per-head proj partials, one workgroup per (sequence, head) (kernels/ops/
 *   qkv_attention_proj.ts); the partials' sum + ln2 + fc1 + GELU in a few fat workgroups
 *   (kernels/ops/sum_parts_mlp_up.ts); fc2 + residual. Off, it is 5 (ln1 + qkv + KV write;
 *   attention + per-head proj; sum + ln2; fc1 + GELU; fc2 + residual).
 *   The embedding is one dispatch (kernels/ops/embed_interleaved.ts), none (`embedded`), or
 *   part of the first layer's kernel (`greedy`: the planner's greedy observation tokens);
 *   `lastQOnly` runs only the Q head, at the last Q row (planning prefills). A warm
 *   JOWA-150M planning step (H = 2, K = 4, one env) records 2,980 dispatches (4,828 with
 *   `compactLayer` off; `deno task bench overhead`).
 * - `branch(parents)` gathers sequences by an arbitrary parent index (i32 [M], on the GPU):
 *   beam expansion (`repeat(K)`) and pruning to the best K alike; the parent is unchanged.
 * - Sliding context: a cache holds `capacity` positions. Before appending, check
 *   `fits(cache, t)`; when the real context plus the planning horizon no longer fits,
 *   `reset()` the cache and prefill the last `planningWindow(...)` timesteps again
 *   (models/kv_cache_window.ts).
 *
 * - Large caches: a layer's cache is bound whole by the kernels, so a cache above the adapter's
 *   `maxStorageBufferBindingSize` (lavapipe and the WebGPU default: 128 MiB) is held as parts
 *   of whole environments, decoded one part after the other (`_kv_cache_parts.ts`).
 * - Element type (`cache.dtype`): f32, or f16 when created under `--precision f16`
 *   (kernels/core/precision.ts): half the memory (and parts), half the bytes attention reads;
 *   every kernel that writes or reads the cache converts and computes in f32
 *   (kernels/ops/cached_attention.ts). A prefill's attention over its own fresh window runs
 *   on the f32 projections (fusedAttention); only later steps read the f16 keys and values.
 *
 * Caches are not tidied: they live until `dispose()`.
 *
 * @module
 */
import { noGrad } from "../../kernels/core/autograd.ts";
import { precision } from "../../kernels/core/precision.ts";
import { fusedAttention, indexSelect, slice } from "../../kernels/ops/mod.ts";
import {
  cachedAttention,
  cachedAttentionProj,
  type CacheDType,
  gatherCache,
} from "../../kernels/ops/cached_attention.ts";
import { constTensor, keep, Tensor, tidy } from "../../kernels/core/tensor.ts";
import { runtime } from "../../kernels/core/runtime.ts";
import { contextLength, tokensPerStep, type WorldActionConfig } from "./configs.ts";
import { embedInterleaved } from "../../kernels/ops/embed_interleaved.ts";
import { SeedStream } from "../../util/rng.ts";
import type { WorldActionModel, WorldActionOutputs } from "./model.ts";
import { groupsPerPart, joinOutputs, partParents, partRanges } from "./_kv_cache_parts.ts";

/**
 * Most rows (sequences x new tokens) of a decode step whose attention kernel also applies the
 * output projection (cached_attention.ts `cachedAttentionProj`, which reads the projection
 * weight once per row); more rows take attention then a tiled proj matmul.
 */
const PROJ_ROWS = 16;

/**
 * Keys and values of every layer for N sequences of equal length. A cache above the adapter's
 * largest storage binding is held as `parts` (models/world_action/_kv_cache_parts.ts).
 */
export class KvCache {
  /** Positions filled in every sequence. */
  length = 0;

  /**
   * Element type of the keys and values (every layer and part): "f16" for a cache created
   * under precision f16, else "f32". Kernels that read or write the cache follow it.
   */
  readonly dtype: CacheDType;

  /**
   * Prefer `KvCache.create` / `model.newCache`.
   * @param layers per layer f32 or f16 [2, N, heads, capacity, d / heads] (kept, owned by the
   *   cache; all of one dtype); empty when the cache is split into `parts`
   * @param tasks i32 [N] task id of each sequence
   * @param groups environments: the sequences form `groups` equal runs, and branching never
   *   takes a parent from another run (default N: one sequence each)
   * @param parts sub-caches of `perPart` consecutive groups each, in order (owned)
   */
  constructor(
    readonly cfg: WorldActionConfig,
    readonly layers: Tensor[],
    readonly tasks: Tensor,
    readonly groups = tasks.shape[0],
    readonly parts: KvCache[] | null = null,
    readonly perPart = 0,
  ) {
    const dtypes = new Set([...layers.map((l) => l.dtype), ...(parts ?? []).map((p) => p.dtype)]);
    const [dtype = "f32", ...more] = dtypes;
    if (more.length > 0 || (dtype !== "f32" && dtype !== "f16")) {
      throw new Error(`KvCache: layers and parts must all be f32 or all f16, got ${[...dtypes]}`);
    }
    this.dtype = dtype;
    for (const t of [...layers, tasks]) keep(t);
  }

  /**
   * An empty cache of `tasks.shape[0]` sequences. `dtype` defaults to the process-wide
   * precision's (f16 under `--precision f16`).
   */
  static create(
    cfg: WorldActionConfig,
    tasks: Tensor,
    capacity = contextLength(cfg),
    dtype: CacheDType = precision(),
  ): KvCache {
    if (tasks.rank !== 1 || tasks.dtype !== "i32") {
      throw new Error(`KvCache: tasks ${tasks} must be i32 [N]`);
    }
    if (capacity > contextLength(cfg)) {
      throw new Error(`KvCache: capacity ${capacity} beyond the model's context`);
    }
    const N = tasks.shape[0];
    const per = groupsPerPart(cfg, N, 1, capacity, 0, dtype);
    if (per > 0) {
      const parts = partRanges(N, per, 1).map(([a, b]) => {
        const t = slice(tasks, 0, a, b);
        const part = KvCache.create(cfg, t, capacity, dtype);
        t.dispose();
        return part;
      });
      return new KvCache(cfg, [], tasks.view(tasks.shape), N, parts, per);
    }
    const D = cfg.d / cfg.heads;
    const layers = Array.from(
      { length: cfg.layers },
      // Uninitialized: positions >= length are never read.
      () => Tensor.empty([2, N, cfg.heads, capacity, D], dtype),
    );
    return new KvCache(cfg, layers, tasks.view(tasks.shape));
  }

  /** Number of sequences. */
  get n(): number {
    return this.tasks.shape[0];
  }

  /** Positions each sequence can hold. */
  get capacity(): number {
    return this.parts ? this.parts[0].capacity : this.layers[0]?.shape[3] ?? 0;
  }

  /**
   * A new cache whose sequence m continues sequence parents[m] (i32 [M], GPU values allowed;
   * indices are clamped). Copies only the filled positions.
   */
  branch(parents: Tensor): KvCache {
    const M = parents.shape[0];
    // Parents stay within their group (environment): M / groups children per group.
    const G = M % this.groups === 0 ? this.groups : 1;
    if (G !== this.groups && this.parts) {
      throw new Error(`KvCache.branch: ${M} children for ${this.groups} environments`);
    }
    const per = groupsPerPart(this.cfg, G, M / G, this.capacity, this.perPart, this.dtype);
    const tasks = indexSelect(this.tasks, parents);
    let out: KvCache;
    if (per === 0) {
      const layers = this.layers.map((l) => gatherCache(l, parents, this.length));
      out = new KvCache(this.cfg, layers, tasks, G);
    } else {
      // Each part copies from the one source part that holds its groups.
      const srcPerGroup = this.n / this.groups;
      const parts = partRanges(G, per, M / G).map(([a, b]) => {
        const g0 = a / (M / G);
        const k = this.parts ? Math.floor(g0 / this.perPart) : 0;
        const src = this.parts ? this.parts[k] : this;
        const p = partParents(parents, a, b, this.parts ? k * this.perPart * srcPerGroup : 0);
        const layers = src.layers.map((l) => gatherCache(l, p, this.length));
        p.dispose();
        const part = new KvCache(this.cfg, layers, slice(tasks, 0, a, b), (b - a) / (M / G));
        part.length = this.length;
        return part;
      });
      out = new KvCache(this.cfg, [], tasks, G, parts, per);
    }
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
    for (const p of this.parts ?? []) p.dispose();
    this.tasks.dispose();
  }
}

/** Whether `t` more tokens fit into the cache. */
export function fits(cache: KvCache, t: number): boolean {
  return cache.length + t <= cache.capacity;
}

/** Options of a decoding step ({@link decodeStep}). */
export interface StepOptions {
  /**
   * The tokens' input embedding [N, t, d] when the caller has it (the planner's greedy-token
   * kernel, eval/greedy_tokens.ts: the same bits as `embed`): saves the embedding dispatch.
   */
  embedded?: Tensor;
  /**
   * Only the Q head, at the block's last Q row (obs, reward and end logits null): what a
   * planning prefill needs, without the heads over every context row.
   */
  lastQOnly?: boolean;
  /**
   * The compact 3-dispatch decode layer (transformer.ts `decodeCompact`: ln1 + qkv + KV write
   * + attention + per-head proj in one dispatch per (sequence, head); partial sum + ln2 +
   * fc1 + GELU; fc2 + residual) where it applies (a step after the prefill with at most
   * PROJ_ROWS rows that fits the kernels). Default: `decodeDefaults.compactLayer` ("auto": on
   * a GPU, off on a CPU adapter).
   */
  compactLayer?: boolean;
  /**
   * Greedy imagined tokens (the planner): this step's tokens are the first argmax of each row
   * of `logits` f32 [N, V] (the previous step's observation logits), stored into column
   * `column` of `obs` i32 [N, O] and into `tokens` (an OUTPUT here, i32 [N, 1]), embedded as
   * observation tokens, all inside the first layer's kernel: no greedy-token dispatch. Needs
   * {@link fusesGreedyStep}.
   */
  greedy?: { logits: Tensor; obs: Tensor; column: number };
}

/**
 * Process-wide defaults of {@link StepOptions} that callers do not pass per step (the
 * planner's): `compactLayer` the compact 3-dispatch decode layer; off, the 5-dispatch layer.
 * `compactLayer: "auto"` (the default) takes the compact layer on a GPU and the 5-dispatch
 * one on a CPU ("fallback") adapter: lavapipe runs the compact kernels' 1024-thread,
 * barrier-heavy workgroups about 50x slower than the five kernels they replace (10-15 ms a
 * call at the tiny config), while on a GPU the estimate is about even
 * (kernels/ops/sum_parts_mlp_up.ts; not yet timed) with two launches fewer per layer.
 */
export const decodeDefaults: { compactLayer: boolean | "auto" } = {
  compactLayer: "auto",
};

/** `decodeDefaults.compactLayer` resolved for this runtime's adapter. */
function compactByDefault(): boolean {
  const d = decodeDefaults.compactLayer;
  return d === "auto" ? !runtime().ctx.adapterInfo.fallback : d;
}

/** Whether a step of `rows` rows after `start` positions takes the compact decode layer. */
function compactApplies(
  model: WorldActionModel,
  cache: KvCache,
  start: number,
  rows: number,
  opts: StepOptions,
): boolean {
  if (!(opts.compactLayer ?? compactByDefault())) return false;
  return start > 0 && rows <= PROJ_ROWS &&
    model.blocks.every((b) => b.decodesCompact(rows, cache.capacity));
}

/**
 * Whether the next single-token step of `cache` can take its tokens from the previous
 * step's logits inside the first layer's kernel (StepOptions `greedy`): the compact layer
 * applies (not a split cache, not the first step) and the next position is an observation
 * token's.
 */
export function fusesGreedyStep(
  model: WorldActionModel,
  cache: KvCache,
  opts: StepOptions = {},
): boolean {
  const period = tokensPerStep(model.cfg);
  return !cache.parts && fits(cache, 1) && cache.length % period !== period - 1 &&
    compactApplies(model, cache, cache.length, cache.n, opts);
}

/**
 * Append tokens [N, t] (i32, raw ids; the position decides obs or action) to every sequence
 * of `cache` and return the heads at the new positions. Eval mode only; no gradient.
 */
export function decodeStep(
  model: WorldActionModel,
  cache: KvCache,
  tokens: Tensor,
  opts: StepOptions = {},
): WorldActionOutputs {
  const embedded = opts.embedded;
  if (model.training) throw new Error("decodeStep: call model.eval() first (no dropout here)");
  if (tokens.rank !== 2 || tokens.shape[0] !== cache.n) {
    throw new Error(`decodeStep: tokens [${tokens.shape}] must be [${cache.n}, t]`);
  }
  const start = cache.length;
  const t = tokens.shape[1];
  if (opts.greedy && (t !== 1 || tokens.dtype !== "i32" || !fusesGreedyStep(model, cache, opts))) {
    throw new Error(
      "decodeStep: greedy tokens need one i32 token per sequence and the compact decode " +
        "layer (fusesGreedyStep)",
    );
  }
  if (embedded && embedded.shape.join() !== `${cache.n},${t},${model.cfg.d}`) {
    throw new Error(
      `decodeStep: embedded [${embedded.shape}] must be [${cache.n}, ${t}, ${model.cfg.d}]`,
    );
  }
  if (!fits(cache, t)) {
    throw new Error(
      `decodeStep: ${t} tokens after ${start} exceed the cache capacity ${cache.capacity}; ` +
        "reset() and prefill a shorter window (models/kv_cache_window.ts)",
    );
  }
  if (cache.parts) {
    // One part after the other (each binds only its own cache), outputs joined.
    const out = tidy(() => {
      let a = 0;
      const outs = cache.parts!.map((part) => {
        const b = a + part.n;
        part.length = start;
        const o = decodeStep(
          model,
          part,
          slice(tokens, 0, a, b),
          { ...opts, embedded: embedded && slice(embedded, 0, a, b) },
        );
        a = b;
        return o;
      });
      return joinOutputs(outs);
    });
    cache.length = start + t;
    return out;
  }
  const out = noGrad(() =>
    tidy(() => {
      const seeds = new SeedStream(0);
      // One dispatch (the same values as model.embed's lookups and adds).
      const greedy = opts.greedy;
      const rows0 = tokens.shape[0] * t;
      const compact = compactApplies(model, cache, start, rows0, opts);
      // With greedy tokens the first layer's kernel writes x (the tokens' embedding).
      let x = greedy
        ? Tensor.empty([cache.n, 1, model.cfg.d])
        : embedded ?? embedInterleaved(tokens, cache.tasks, {
          obs: model.obsEmbed.weight,
          action: model.actionEmbed.weight,
          taskObs: model.taskObsEmbed.weight,
          taskAction: model.taskActionEmbed.weight,
          position: model.positionEmbed.weight,
          period: tokensPerStep(model.cfg),
        }, start);
      const L = model.blocks.length;
      for (let l = 0; l < L; l++) {
        const b = model.blocks[l];
        // Fused prologues/epilogues (transformer.ts decode*): ln1 + qkv + KV write;
        // attention + per-head proj partials; their sum + ln2 (once); fc1 + GELU; fc2 +
        // residual.
        const layer = cache.layers[l];
        if (compact) {
          // Three dispatches (transformer.ts decodeCompact).
          x = b.decodeCompact(
            x,
            layer,
            start,
            seeds,
            greedy && l === 0
              ? {
                ...greedy,
                tokens,
                obsTable: model.obsEmbed.weight,
                taskTable: model.taskObsEmbed.weight,
                positionTable: model.positionEmbed.weight,
                tasks: cache.tasks,
              }
              : undefined,
          );
          continue;
        }
        const qkv = b.decodeQkv(x, { cache: layer, start });
        const rows = x.shape[0] * x.shape[1];
        if (start === 0 || rows > PROJ_ROWS) {
          // Prefill, or many rows (the per-head projection in the attention kernel would read
          // the weight once per row): attention, then proj + residual as a matmul.
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
      return model.decodeHeads(x, start, seeds, opts.lastQOnly);
    })
  );
  cache.length = start + t;
  return out;
}
