/**
 * The real world-action model behind the planner's `PlanningModel` interface, with the KV
 * cache of models/kv_cache.ts: a prefill per context, cache branching by parent index, and
 * incremental decoding of the imagined action + 36 greedy observation tokens.
 *
 * An adapter (not part of models/) because the planner needs a few derived values the model
 * API leaves to callers: the imagined reward as argmax class - 1 (f32), the greedy tokens
 * gathered into [M, 36], and Q at the last observation token as [M, actions].
 *
 * @module
 */
import { noGrad } from "../kernels/core/autograd.ts";
import { argmax, reshape, slice } from "../kernels/ops/mod.ts";
import { mapKernel } from "../kernels/ops/map.ts";
import { Tensor, tidy } from "../kernels/core/tensor.ts";
import { greedyTokensInto } from "./greedy_tokens.ts";
import { fusesGreedyStep, type KvCache } from "../models/world_action/kv_cache.ts";
import type { WorldActionModel, WorldActionOutputs } from "../models/world_action/model.ts";
import type { CacheDType } from "../kernels/ops/cached_attention.ts";
import type { Imagined, PlanningModel, PlanningState } from "./planning_model.ts";

/** A batch of KV-cached sequences. */
export class CachedState implements PlanningState {
  #disposed = false;
  constructor(readonly cache: KvCache) {}
  /** Number of sequences. */
  get n(): number {
    return this.cache.n;
  }
  /** Release the cache. */
  dispose(): void {
    if (!this.#disposed) this.cache.dispose();
    this.#disposed = true;
  }
}

/** Q values [N, actions] at the last Q row of a block's outputs. */
export function lastQ(out: WorldActionOutputs): Tensor {
  if (!out.q) throw new Error("planning: the block does not end on an observation's last token");
  const v = out.q.values; // [N, rows, actions]
  const [N, R, A] = v.shape;
  return reshape(R === 1 ? v : slice(v, 1, R - 1, R), [N, A]);
}

/** Imagined reward f32 [M] = argmax class - 1 of reward logits [M, 1, classes]. */
export function imaginedReward(logits: Tensor): Tensor {
  const [M, , C] = logits.shape;
  const cls = argmax(reshape(logits, [M, C]), -1);
  return mapKernel("planning.reward", [cls], "a - 1.0", "f32");
}

/** Greedy next token i32 [M] from next-observation logits [M, 1, V]. */
export function greedyToken(logits: Tensor): Tensor {
  const [M, , V] = logits.shape;
  return argmax(reshape(logits, [M, V]), -1);
}

/** Options of {@link WamPlanningModel}. */
export interface WamPlanningOptions {
  /**
   * Element type of the planner's KV caches: "f16" halves their memory and the bytes each
   * decode step reads (f32 arithmetic; `deno task eval --precision f16`). Default: the
   * process-wide precision's (kernels/core/precision.ts).
   */
  cacheDtype?: CacheDType;
}

/** The KV-cached planning adapter over a world-action model (switched to eval mode). */
export class WamPlanningModel implements PlanningModel<CachedState> {
  readonly actions: number;
  readonly obsTokens: number;
  readonly timesteps: number;

  constructor(readonly model: WorldActionModel, readonly opts: WamPlanningOptions = {}) {
    model.eval();
    this.actions = model.cfg.actions;
    this.obsTokens = model.cfg.obsTokens;
    this.timesteps = model.cfg.timesteps;
  }

  prefill(tokens: Tensor, tasks: Tensor): { state: CachedState; q: Tensor } {
    const cache = this.model.newCache(tasks, undefined, this.opts.cacheDtype);
    const q = noGrad(() => tidy(() => lastQ(this.model.step(cache, tokens, { lastQOnly: true }))));
    return { state: new CachedState(cache), q };
  }

  branch(state: CachedState, parents: Tensor): CachedState {
    return new CachedState(state.cache.branch(parents));
  }

  imagine(state: CachedState, actions: Tensor): Imagined {
    const M = state.n;
    const cache = state.cache;
    return noGrad(() => {
      // Each greedy token goes straight into its column of `obs`, and the same dispatch looks
      // up its input embedding for the next step (eval/greedy_tokens.ts: no argmax, embedding
      // or concat dispatches of their own).
      const obs = Tensor.empty([M, this.obsTokens], "i32");
      const m = this.model;
      const greedy = (out: WorldActionOutputs, j: number) => {
        const logits = reshape(out.obsLogits!, [M, m.cfg.obsVocab]);
        return greedyTokensInto(logits, obs, j, {
          obs: m.obsEmbed.weight,
          taskObs: m.taskObsEmbed.weight,
          position: m.positionEmbed.weight,
          tasks: cache.tasks,
          at: cache.length,
        });
      };
      // The next step's input: its greedy tokens (and embedding) from the kernel above, or,
      // where the model's first decode kernel takes the argmax itself (kv_cache.ts
      // `fusesGreedyStep`), the logits: no greedy-token dispatch.
      type Next = { tok: Tensor; x: Tensor | null } | { logits: Tensor };
      const pick = (out: WorldActionOutputs, j: number): Next =>
        out.obsLogits && fusesGreedyStep(m, cache)
          ? { logits: reshape(out.obsLogits, [M, m.cfg.obsVocab]) }
          : greedy(out, j);
      const first = tidy(() => {
        const out = m.step(cache, reshape(actions, [M, 1]));
        return { reward: imaginedReward(out.rewardLogits!), next: pick(out, 0) };
      });
      let next: Next = first.next;
      let q: Tensor | null = null;
      for (let j = 0; j < this.obsTokens; j++) {
        // One token per step; only the next input (and Q at the last one) outlives the step.
        const input = next;
        const res = tidy(() => {
          const out = "logits" in input
            ? m.step(cache, Tensor.empty([M, 1], "i32"), {
              greedy: { logits: input.logits, obs, column: j },
            })
            : m.step(cache, reshape(input.tok, [M, 1]), { embedded: input.x! });
          return j < this.obsTokens - 1 ? pick(out, j + 1) : lastQ(out);
        });
        if ("logits" in input) input.logits.dispose();
        else {
          input.tok.dispose();
          input.x!.dispose();
        }
        if (j < this.obsTokens - 1) next = res as Next;
        else q = res as Tensor;
      }
      return { reward: first.reward, obs, q: q! };
    });
  }
}
