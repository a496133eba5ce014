/**
 * JOWA's world-action model (jowa.md, "World-action model"): a minGPT pre-LN transformer
 * over interleaved tokens (per timestep `obsTokens` observation tokens, then one action
 * token), with
 *
 *   input = token embedding (obs table or action table, by position)
 *         + learned absolute position embedding
 *         + task embedding (separate tables for observation and action positions),
 *
 * embedding dropout, `layers` causal blocks (transformer.ts `Block`), a final
 * LayerNorm, and heads read at the positions of models/world_action_model_layout.ts:
 * next-observation token (all but the last observation token of each timestep), reward and
 * termination (action tokens), distributional Q (last observation token), plus a target copy
 * of the Q head that is never trained (`updateTarget()` copies on the GPU).
 *
 * Token ids are raw: observation ids in [0, obsVocab) at observation positions, action ids
 * in [0, actions) at action positions (the position decides the table).
 *
 * ```ts
 * const model = new WorldActionModel(worldActionConfig("tiny"));
 * const out = model.forward(tokens, tasks, { target: true }); // tokens i32 [B, T]
 * // out.obsLogits [B, rows.obs.length, V], out.rewardLogits [B, rows.action.length, 3],
 * // out.q.probs [B, rows.q.length, 18, 51], out.targetQ (no gradient)
 * ```
 *
 * Incremental decoding with a KV cache: models/kv_cache.ts.
 *
 * @module
 */
import { noGrad } from "../../kernels/core/autograd.ts";
import { add, concat, indexSelect, reshape, slice } from "../../kernels/ops/mod.ts";
import { copyTensor, Module } from "../../kernels/nn/module.ts";
import { Embedding, InitRng, LayerNorm } from "../../kernels/nn/layers.ts";
import { constTensor, keep, type Tensor, tensor } from "../../kernels/core/tensor.ts";
import { supportValues } from "../../kernels/ops/c51.ts";
import { contextLength, tokensPerStep, validateConfig, type WorldActionConfig } from "./configs.ts";
import { MlpHead, QHead, type QOutputs } from "./heads.ts";
import { type HeadRows, headRows, kindRuns } from "./layout.ts";
import { worldActionParamSpec } from "./spec.ts";
import { Block, forwardStack } from "./transformer.ts";
import { type Seed, SeedStream } from "../../util/rng.ts";
import { decodeStep, KvCache, type StepOptions } from "./kv_cache.ts";
import type { CacheDType } from "../../kernels/ops/cached_attention.ts";
import { fusesPrologue } from "../../kernels/ops/matmul.ts";

/** Outputs for a block of t tokens starting at absolute position `start`. */
export interface WorldActionOutputs {
  start: number;
  /** Number of tokens in the block. */
  length: number;
  /** Offsets within the block that each head read (see world_action_model_layout.ts). */
  rows: HeadRows;
  /** [N, rows.obs.length, obsVocab]; null when no row predicts an observation token. */
  obsLogits: Tensor | null;
  /** [N, rows.action.length, rewardClasses]; class = sign(r) + 1. */
  rewardLogits: Tensor | null;
  /** [N, rows.action.length, endClasses]. */
  endLogits: Tensor | null;
  /** Q head at rows.q: distributions [N, rows.q.length, actions, atoms], values [.., actions]. */
  q: QOutputs | null;
  /** The target Q head at rows.q on detached features (only with `target: true`). */
  targetQ: QOutputs | null;
}

/** Options of a forward pass. */
export interface ForwardOptions {
  /** Seed of this step's dropout masks. */
  stepSeed?: Seed;
  /** Also evaluate the target Q head (no gradient). */
  target?: boolean;
  /** Rows (offsets) for the next-observation head instead of the default rows.obs. */
  obsRows?: number[];
}

/** The world-action model. Parameter names: models/world_action_model_spec.ts. */
export class WorldActionModel extends Module {
  readonly cfg: WorldActionConfig;
  readonly obsEmbed: Embedding;
  readonly actionEmbed: Embedding;
  readonly positionEmbed: Embedding;
  readonly taskObsEmbed: Embedding;
  readonly taskActionEmbed: Embedding;
  readonly blocks: Block[] = [];
  readonly lnF: LayerNorm;
  readonly headObs: MlpHead;
  readonly headReward: MlpHead;
  readonly headEnd: MlpHead;
  readonly headQ: QHead;
  /** The target Q head: not a child (not trained, not in `parameters()`), same shapes. */
  readonly targetQ: QHead;
  /** The C51 support [atoms]. */
  readonly support: Tensor;

  constructor(cfg: WorldActionConfig) {
    super();
    this.cfg = validateConfig(cfg);
    const rng = new InitRng(cfg.seed);
    const d = cfg.d;
    this.obsEmbed = this.child("embed.obs", new Embedding(cfg.obsVocab, d, rng));
    this.actionEmbed = this.child("embed.action", new Embedding(cfg.actions, d, rng));
    this.positionEmbed = this.child("embed.position", new Embedding(contextLength(cfg), d, rng));
    this.taskObsEmbed = this.child("embed.task_obs", new Embedding(cfg.tasks, d, rng));
    this.taskActionEmbed = this.child("embed.task_action", new Embedding(cfg.tasks, d, rng));
    const block = {
      d,
      heads: cfg.heads,
      dropout: cfg.dropout,
      causal: true,
      gelu: cfg.gelu,
      scaledInit: cfg.init !== "jowa",
    };
    for (let i = 0; i < cfg.layers; i++) {
      this.blocks.push(this.child(`blocks.${i}`, new Block(block, rng, cfg.layers)));
    }
    this.lnF = this.child("ln_f", new LayerNorm(d));
    this.headObs = this.child("head_obs", new MlpHead(d, cfg.obsVocab, rng));
    this.headReward = this.child("head_reward", new MlpHead(d, cfg.rewardClasses, rng));
    this.headEnd = this.child("head_end", new MlpHead(d, cfg.endClasses, rng));
    this.headQ = this.child("head_q", new QHead(cfg, rng));
    this.targetQ = new QHead(cfg, rng);
    for (const p of this.targetQ.parameters()) p.requiresGrad = false;
    this.targetQ.eval();
    this.support = keep(tensor(Float32Array.from(supportValues(cfg)), [cfg.atoms]));
    this.#checkSpec();
    this.updateTarget();
  }

  /** The constructor must agree with the shape description the reports count from. */
  #checkSpec(): void {
    const got = this.namedParameters().map(([n, p]) => `${n}[${p.shape}]`);
    const want = worldActionParamSpec(this.cfg).map((s) => `${s.name}[${s.shape}]`);
    if (got.join() !== want.join()) {
      const diff = got.filter((g, i) => g !== want[i])[0];
      throw new Error(`WorldActionModel: parameters drifted from the spec (first: ${diff})`);
    }
  }

  /** Hard copy of the online Q head into the target head (recorded on the GPU, no readback). */
  updateTarget(): void {
    const src = this.headQ.parameters();
    const dst = this.targetQ.parameters();
    src.forEach((p, i) => copyTensor(p, dst[i]));
  }

  /**
   * An empty KV cache for `tasks.shape[0]` sequences (see models/kv_cache.ts); keys and values
   * in `dtype` (default: f16 under precision f16, else f32).
   */
  newCache(tasks: Tensor, capacity = contextLength(this.cfg), dtype?: CacheDType): KvCache {
    return KvCache.create(this.cfg, tasks, capacity, dtype);
  }

  /**
   * Append tokens [N, t] to every sequence of `cache`; the heads' outputs at the new
   * positions. Eval mode, no gradient. From an empty cache this is the prefill. Options:
   * kv_cache.ts `StepOptions` (a precomputed embedding, only the last Q row).
   */
  step(cache: KvCache, tokens: Tensor, opts: StepOptions = {}): WorldActionOutputs {
    return decodeStep(this, cache, tokens, opts);
  }

  /** Empty `cache` and fill it with `tokens` [N, t] from position 0 (a new window). */
  prefill(cache: KvCache, tokens: Tensor): WorldActionOutputs {
    cache.reset();
    return decodeStep(this, cache, tokens);
  }

  /** The target head's tensors by checkpoint name (`target_q.` + the head_q names). */
  targetTensors(): [string, Tensor][] {
    return this.targetQ.namedParameters("target_q.");
  }

  /**
   * Full forward over token ids [B, T] (i32, T <= context, starting at position 0) for
   * tasks [B] (i32). Dropout follows `training`.
   */
  forward(tokens: Tensor, tasks: Tensor, opts: ForwardOptions = {}): WorldActionOutputs {
    this.#checkTokens(tokens, tasks, 0);
    const seeds = new SeedStream(opts.stepSeed ?? 0);
    const x = this.embed(tokens, tasks, 0);
    const p = this.training ? this.cfg.dropout : 0;
    // Embedding dropout, the blocks and ln_f with each dropout + residual add + layer norm
    // fused (the same values and seeds as dropout, Block.forward, lnF.forward).
    return this.heads(forwardStack(this.blocks, x, p, this.lnF, seeds), 0, seeds, opts);
  }

  #checkTokens(tokens: Tensor, tasks: Tensor, start: number): void {
    if (tokens.rank !== 2 || tokens.dtype !== "i32") {
      throw new Error(`WorldActionModel: tokens ${tokens} must be i32 [N, t]`);
    }
    if (start + tokens.shape[1] > contextLength(this.cfg)) {
      throw new Error(
        `WorldActionModel: positions [${start}, ${start + tokens.shape[1]}) exceed the ` +
          `context of ${contextLength(this.cfg)} tokens`,
      );
    }
    if (tasks.rank !== 1 || tasks.shape[0] !== tokens.shape[0] || tasks.dtype !== "i32") {
      throw new Error(`WorldActionModel: tasks ${tasks} must be i32 [${tokens.shape[0]}]`);
    }
  }

  /** Input embeddings [N, t, d] of tokens [N, t] at positions start.. (no dropout). */
  embed(tokens: Tensor, tasks: Tensor, start: number): Tensor {
    const [N, t] = tokens.shape;
    const d = this.cfg.d;
    const tps = tokensPerStep(this.cfg);
    // Task rows are looked up only for the kinds present (a decoding step has one kind).
    let obsRow: Tensor | null = null;
    let actRow: Tensor | null = null;
    const taskObs = () => obsRow ??= reshape(this.taskObsEmbed.forward(tasks), [N, 1, d]);
    const taskAct = () => actRow ??= reshape(this.taskActionEmbed.forward(tasks), [N, 1, d]);
    let x: Tensor;
    if (start % tps === 0 && t % tps === 0 && t > tps) {
      // Whole timesteps: split the [N, L, tps] grid once instead of one run per timestep.
      const L = t / tps;
      const grid = reshape(tokens, [N, L, tps]);
      const obs = this.obsEmbed.forward(slice(grid, 2, 0, tps - 1));
      const act = this.actionEmbed.forward(slice(grid, 2, tps - 1, tps));
      x = reshape(
        concat([
          add(obs, reshape(taskObs(), [N, 1, 1, d])),
          add(act, reshape(taskAct(), [N, 1, 1, d])),
        ], 2),
        [N, t, d],
      );
    } else {
      const runs = kindRuns(this.cfg, start, t);
      const parts = runs.map((r) => {
        const ids = runs.length === 1 ? tokens : slice(tokens, 1, r.from, r.to);
        return r.action
          ? add(this.actionEmbed.forward(ids), taskAct())
          : add(this.obsEmbed.forward(ids), taskObs());
      });
      x = parts.length === 1 ? parts[0] : concat(parts, 1);
    }
    const positions = constTensor(Int32Array.from({ length: t }, (_, i) => start + i), [t], "i32");
    return add(x, this.positionEmbed.forward(positions));
  }

  /**
   * Decoding (eval, no gradient): the heads on the last block's output `x` [N, t, d] BEFORE
   * the final norm, as `heads(lnF.forward(x), start, seeds)`: rows are picked first (the norm
   * is row-wise) and ln_f runs as the prologue of each MLP head's first layer (with its ReLU
   * as the epilogue), so the observation head is 2 dispatches and the norm runs only on rows
   * a head reads.
   */
  decodeHeads(
    x: Tensor,
    start: number,
    seeds: SeedStream,
    lastQOnly = false,
  ): WorldActionOutputs {
    const [N, t, d] = x.shape;
    if (lastQOnly) {
      // Only Q at the last Q row (a planning prefill): no head runs over the other rows.
      const rows = headRows(this.cfg, start, t);
      rows.obs = [];
      rows.action = [];
      rows.q = rows.q.slice(-1);
      const qIn = gatherRows(x, rows.q);
      return {
        start,
        length: t,
        rows,
        obsLogits: null,
        rewardLogits: null,
        endLogits: null,
        q: qIn && this.headQ.decode(qIn, this.lnF, seeds, this.support),
        targetQ: null,
      };
    }
    // Where the norm cannot be a prologue, one ln_f over all rows is fewer dispatches.
    if (!fusesPrologue(N * t, d, d)) return this.heads(this.lnF.forward(x), start, seeds);
    const rows = headRows(this.cfg, start, t);
    const obsIn = gatherRows(x, rows.obs);
    const actIn = gatherRows(x, rows.action);
    const qIn = gatherRows(x, rows.q);
    return {
      start,
      length: t,
      rows,
      obsLogits: obsIn && this.headObs.decode(obsIn, this.lnF),
      rewardLogits: actIn && this.headReward.decode(actIn, this.lnF),
      endLogits: actIn && this.headEnd.decode(actIn, this.lnF),
      q: qIn && this.headQ.decode(qIn, this.lnF, seeds, this.support),
      targetQ: null,
    };
  }

  /** Apply the heads to final features `h` [N, t, d] of the block starting at `start`. */
  heads(
    h: Tensor,
    start: number,
    seeds: SeedStream,
    opts: ForwardOptions = {},
  ): WorldActionOutputs {
    const t = h.shape[1];
    const rows = headRows(this.cfg, start, t);
    if (opts.obsRows) rows.obs = opts.obsRows;
    const pick = (offs: number[]) => gatherRows(h, offs);
    const obsIn = pick(rows.obs);
    const actIn = pick(rows.action);
    const qIn = pick(rows.q);
    const out: WorldActionOutputs = {
      start,
      length: t,
      rows,
      obsLogits: obsIn && this.headObs.forward(obsIn),
      rewardLogits: actIn && this.headReward.forward(actIn),
      endLogits: actIn && this.headEnd.forward(actIn),
      q: qIn && this.headQ.forward(qIn, seeds, this.support),
      targetQ: null,
    };
    if (qIn && opts.target) {
      out.targetQ = noGrad(() => this.targetQ.forward(qIn.view(qIn.shape), seeds, this.support));
    }
    return out;
  }
}

/** Rows `offs` of every sequence of h [N, t, d] -> [N, offs.length, d] (null when none). */
function gatherRows(h: Tensor, offs: readonly number[]): Tensor | null {
  const [N, t, d] = h.shape;
  if (offs.length === 0) return null;
  if (offs.length === t && offs.every((o, i) => o === i)) return h;
  const contiguous = offs.every((o, i) => o === offs[0] + i);
  if (contiguous) return slice(h, 1, offs[0], offs[0] + offs.length);
  const idx = new Int32Array(N * offs.length);
  for (let n = 0; n < N; n++) offs.forEach((o, k) => (idx[n * offs.length + k] = n * t + o));
  const picked = indexSelect(reshape(h, [N * t, d]), constTensor(idx, [idx.length], "i32"));
  return reshape(picked, [N, offs.length, d]);
}

/**
 * Offsets of a full segment (start 0, `timesteps` whole timesteps) whose next-observation
 * predictions are the observations of timesteps 1..timesteps-1 in order: row
 * s * obsTokens + j of the result predicts token j of observation s + 1. Pass as
 * `obsRows` to get obsLogits shaped per transition.
 */
export function nextObservationRows(c: WorldActionConfig, timesteps: number): number[] {
  const tps = tokensPerStep(c);
  const out: number[] = [];
  for (let s = 0; s + 1 < timesteps; s++) {
    for (let j = 0; j < c.obsTokens; j++) out.push(s * tps + c.obsTokens + j);
  }
  return out;
}

/**
 * Interleave observation tokens [B, L, obsTokens] and actions [B, L] (i32 tensors, on the
 * GPU) into the model's token rows [B, L * (obsTokens + 1)].
 */
export function interleave(obs: Tensor, actions: Tensor): Tensor {
  const [B, L, K] = obs.shape;
  if (obs.rank !== 3 || actions.shape.join() !== `${B},${L}` || obs.dtype !== actions.dtype) {
    throw new Error(`interleave: obs ${obs} and actions ${actions} must be [B, L, K] and [B, L]`);
  }
  const rows = concat([obs, reshape(actions, [B, L, 1])], 2);
  return reshape(rows, [B, L * (K + 1)]);
}
