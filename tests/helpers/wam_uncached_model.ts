/**
 * The world-action model behind `PlanningModel` WITHOUT a KV cache: every sequence keeps its
 * full token row, and every imagined token recomputes the whole context with
 * `model.forward`. Slow (quadratic), for checking the cached path (eval/wam_planning_model.ts);
 * the public code plans this way, re-running its context.
 *
 * Rows are right-padded to the model's full context: attention is causal, so tokens after
 * the current position change nothing before it, and every forward has the same shapes
 * (one set of compiled pipelines instead of one per length). Tokens are written and head
 * rows picked through small uploaded index tensors for the same reason.
 *
 * @module
 */
import { noGrad } from "../../kernels/core/autograd.ts";
import { concat, indexSelect, reshape } from "../../kernels/ops/mod.ts";
import { mapKernel } from "../../kernels/ops/map.ts";
import { keep, type Tensor, tensor, tidy } from "../../kernels/core/tensor.ts";
import { contextLength } from "../../models/world_action/configs.ts";
import { headRows } from "../../models/world_action/layout.ts";
import type { WorldActionModel } from "../../models/world_action/model.ts";
import type { Imagined, PlanningModel, PlanningState } from "../../eval/planning_model.ts";
import { greedyToken, imaginedReward } from "../../eval/wam_planning_model.ts";

/** Full-context token rows [M, context] (valid up to `length`) and task ids [M]. */
export class TokenState implements PlanningState {
  constructor(public tokens: Tensor, readonly tasks: Tensor, public length: number) {
    keep(tokens);
    keep(tasks);
  }
  /** Number of sequences. */
  get n(): number {
    return this.tasks.size;
  }
  /** Release the rows. */
  dispose(): void {
    this.tokens.dispose();
    this.tasks.dispose();
  }
}

/** Row `row` (same for every sequence) of x [M, R, C] -> [M, 1, C], via an uploaded index. */
function pickRow(x: Tensor, row: number): Tensor {
  const [M, R, C] = x.shape;
  const idx = tensor(Int32Array.from({ length: M }, (_, m) => m * R + row), [M], "i32");
  return reshape(indexSelect(reshape(x, [M * R, C]), idx), [M, 1, C]);
}

/** Recompute-everything planning adapter (eval mode). */
export class UncachedPlanningModel implements PlanningModel<TokenState> {
  readonly actions: number;
  readonly obsTokens: number;
  readonly timesteps: number;
  readonly #T: number;

  constructor(readonly model: WorldActionModel) {
    model.eval();
    this.actions = model.cfg.actions;
    this.obsTokens = model.cfg.obsTokens;
    this.timesteps = model.cfg.timesteps;
    this.#T = contextLength(model.cfg);
  }

  /** Full forward of the padded rows; the heads at position `pos`. */
  #at(state: TokenState, pos: number) {
    const out = this.model.forward(state.tokens, state.tasks);
    const rows = headRows(this.model.cfg, 0, this.#T);
    const pick = (t: Tensor | null, list: number[]) => {
      const r = list.indexOf(pos);
      return t && r >= 0 ? pickRow(t, r) : null;
    };
    return {
      obs: pick(out.obsLogits, rows.obs),
      reward: pick(out.rewardLogits, rows.action),
      q: pick(out.q?.values ?? null, rows.q),
    };
  }

  prefill(tokens: Tensor, tasks: Tensor): { state: TokenState; q: Tensor } {
    const [N, t] = tokens.shape;
    const padded = tidy(() =>
      concat([tokens, tensor(new Int32Array(N * (this.#T - t)), [N, this.#T - t], "i32")], 1)
    );
    const state = new TokenState(padded, tasks.view(tasks.shape), t);
    const q = noGrad(() => tidy(() => reshape(this.#at(state, t - 1).q!, [N, this.actions])));
    return { state, q };
  }

  branch(state: TokenState, parents: Tensor): TokenState {
    const tokens = indexSelect(state.tokens, parents);
    return new TokenState(tokens, indexSelect(state.tasks, parents), state.length);
  }

  /** Write tok [M] at the next position of every row and run the full context. */
  #extend(state: TokenState, tok: Tensor) {
    const M = state.n;
    const pos = state.length;
    const onehot = new Int32Array(this.#T);
    onehot[pos] = 1;
    const grown = mapKernel(
      "uncached.write",
      [state.tokens, reshape(tok, [M, 1]), tensor(onehot, [1, this.#T], "i32")],
      "select(a, b, c != 0)",
      "i32",
      undefined,
      "",
      true,
    );
    state.tokens.dispose();
    state.tokens = keep(grown);
    state.length = pos + 1;
    return this.#at(state, pos);
  }

  imagine(state: TokenState, actions: Tensor): Imagined {
    const M = state.n;
    return noGrad(() => {
      const first = tidy(() => {
        const out = this.#extend(state, actions);
        return { reward: imaginedReward(out.reward!), tok: greedyToken(out.obs!) };
      });
      const toks: Tensor[] = [first.tok];
      let q: Tensor | null = null;
      for (let j = 0; j < this.obsTokens; j++) {
        const last = j === this.obsTokens - 1;
        const next = tidy(() => {
          const out = this.#extend(state, toks[j]);
          return last ? reshape(out.q!, [M, this.actions]) : greedyToken(out.obs!);
        });
        if (last) q = next;
        else toks.push(next);
      }
      return { reward: first.reward, obs: concat(toks.map((t) => reshape(t, [M, 1])), 1), q: q! };
    });
  }
}
