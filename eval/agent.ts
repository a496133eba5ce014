/**
 * The evaluation agent: encodes the environments' current frames, builds each environment's
 * context window, and plans (or acts greedily) for all of them at once, with ONE readback per
 * environment step for the whole batch (the new observation tokens, the actions and, when
 * recording, the imagined frames of the best path come back together).
 *
 * Environments whose windows have different lengths (an episode that started later) are
 * planned in separate groups in the same step; with all episodes started together there is
 * one group. With `replay`, each group's planning (prefill and every imagined depth) is
 * recorded once per shape (environments, window) and replayed afterwards
 * (eval/captured_planner.ts).
 *
 * @module
 */
import { indexSelect, reshape } from "../kernels/ops/mod.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import type { CaptureStats } from "../kernels/core/capture.ts";
import { type CapturedPlanner, capturePlanner } from "./captured_planner.ts";
import { type EnvHistory, windowTimesteps } from "./context_history.ts";
import type { FrameTokenizer } from "./frame_tokenizer.ts";
import type { PlanningModel } from "./planning_model.ts";

/** How the agent decides. */
export interface AgentOptions {
  /** Planning horizon H (0: greedy Q policy). */
  horizon: number;
  /** Beam width K (1: greedy Q policy). */
  beamWidth: number;
  /** Discount used by the planner (default 0.99). */
  gamma?: number;
  /**
   * Timesteps of context kept, the current one included (the authors' per-game `buffer_size`);
   * the window is min(L - H, context). Default: all that fits (L - H).
   */
  context?: number | null;
  /**
   * Replay the planner's recorded GPU work for contexts of a shape seen before
   * (eval/captured_planner.ts; bit for bit the eager decisions). Default false: eager.
   */
  replay?: boolean;
}

/** One environment's inputs for a decision. */
export interface AgentInput {
  /** Its history (past observation tokens and actions). */
  history: EnvHistory;
  /** Task id of its game. */
  task: number;
  /** Valid-action mask, 18 entries of 0/1. */
  valid: ArrayLike<number>;
  /** Also return the imagined frames of the best path (recordings). */
  record?: boolean;
}

/** What came back for each environment. */
export interface AgentDecision {
  /** Tokens of the current observation, to push into the history. */
  tokens: Int32Array;
  /** The planner's action (full action id), before any exploration noise. */
  action: number;
  /** Imagined frames [H, 84 * 84] in [-1, 1] along the best path (record only). */
  imagined: Float32Array | null;
}

/** Plans for a batch of environments. */
export class PlanningAgent {
  readonly horizon: number;
  readonly beamWidth: number;
  readonly gamma: number;
  /** Observations per planning window. */
  readonly window: number;
  /** The planner (captured: replayed for shapes seen before, unless `replay` is false). */
  readonly #plan: CapturedPlanner;

  constructor(
    readonly model: PlanningModel,
    readonly tokenizer: FrameTokenizer,
    opts: AgentOptions,
  ) {
    // K = 1 or H = 0 is the greedy policy: skip the search (same decisions, no imagination).
    const greedy = opts.horizon === 0 || opts.beamWidth === 1;
    this.horizon = greedy ? 0 : opts.horizon;
    this.beamWidth = greedy ? 1 : opts.beamWidth;
    this.gamma = opts.gamma ?? 0.99;
    this.window = windowTimesteps(model.timesteps, this.horizon, opts.context);
    this.#plan = capturePlanner(model, {
      horizon: this.horizon,
      beamWidth: this.beamWidth,
      gamma: this.gamma,
      replay: opts.replay ?? false,
    });
    if (tokenizer.tokensPerFrame !== model.obsTokens) {
      throw new Error(
        `tokenizer gives ${tokenizer.tokensPerFrame} tokens per frame, the model expects ` +
          `${model.obsTokens}`,
      );
    }
  }

  /** Calls of the planner: eager, recorded and replayed (and why any shape fell back). */
  replayStats(): CaptureStats {
    return this.#plan.stats();
  }

  /** Free the planner's captured GPU buffers (the agent stays usable; it records again). */
  dispose(): void {
    this.#plan.dispose();
  }

  /** Decide for every input; `frames` holds their current frames (84 x 84 bytes each). */
  async decide(frames: Uint8Array, inputs: readonly AgentInput[]): Promise<AgentDecision[]> {
    const n = inputs.length;
    if (n === 0) return [];
    const O = this.model.obsTokens;
    const A = this.model.actions;
    const frameSize = frames.length / n;
    const groups = new Map<number, number[]>();
    inputs.forEach((inp, i) => {
      const w = Math.min(inp.history.window, this.window);
      groups.set(w, [...(groups.get(w) ?? []), i]);
    });
    const plans: { rows: number[]; actions: Tensor; imagined: Tensor | null }[] = [];
    const current = tidy(() => this.tokenizer.encode(frames));
    try {
      for (const [w, rows] of groups) {
        plans.push(tidy(() => {
          const G = rows.length;
          const cur = n === G ? current : indexSelect(current, tensor(rows, [G], "i32"));
          const past = new Int32Array(G * (w - 1) * (O + 1));
          rows.forEach((r, g) => past.set(inputs[r].history.pastTokens(w, O), g * past.length / G));
          const valid = new Float32Array(G * A);
          rows.forEach((r, g) => valid.set(Array.from(inputs[r].valid), g * A));
          const recordRows = rows.flatMap((r, g) => (inputs[r].record ? [g] : []));
          const keepPaths = this.horizon > 0 && recordRows.length > 0;
          const out = this.#plan({
            current: cur,
            past,
            tasks: Int32Array.from(rows, (r) => inputs[r].task),
            valid,
            keepPaths,
          });
          let imagined: Tensor | null = null;
          if (keepPaths && out.paths) {
            const R = recordRows.length;
            const picked = indexSelect(out.paths, tensor(recordRows, [R], "i32"));
            imagined = this.tokenizer.decode(reshape(picked, [R * this.horizon, O]));
          }
          return { rows, actions: out.actions, imagined };
        }));
      }
      const tensors = [
        current,
        ...plans.flatMap((p) => [p.actions, ...(p.imagined ? [p.imagined] : [])]),
      ];
      const values = await readAll(tensors);
      const tokens = values[0] as Int32Array;
      const out: AgentDecision[] = inputs.map((_, i) => ({
        tokens: tokens.slice(i * O, (i + 1) * O),
        action: -1,
        imagined: null,
      }));
      let k = 1;
      for (const p of plans) {
        const acts = values[k++] as Int32Array;
        p.rows.forEach((r, g) => (out[r].action = acts[g]));
        if (p.imagined) {
          const img = values[k++] as Float32Array;
          const per = this.horizon * frameSize;
          let j = 0;
          for (const r of p.rows) {
            if (!inputs[r].record) continue;
            out[r].imagined = img.slice(j * per, (j + 1) * per);
            j++;
          }
        }
      }
      return out;
    } finally {
      current.dispose();
      for (const p of plans) {
        p.actions.dispose();
        p.imagined?.dispose();
      }
    }
  }
}
