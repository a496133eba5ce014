/**
 * Batched beam search in the imagined MDP (jowa.md, "Planning"): from each environment's
 * current context, every beam expands its top-K valid actions by Q, the world model imagines
 * the reward (argmax class - 1) and the next observation (greedy tokens) of every child, and
 * each environment keeps its K best nodes by
 *
 *   sum_t gamma^t r_t + gamma^depth * max_a Q(leaf, a).
 *
 * After H depths the first action of the best path is the decision. All children of all
 * environments advance together: depth 0 runs N*K sequences, later depths N*K*K, branched
 * from the parents' state (the KV cache of the shared prefix is copied, not recomputed).
 * Nothing is read back here: the caller reads `actions` (with whatever else it needs) once.
 * The prefill and each depth are submitted as they are recorded (`Runtime.submitReady`), so the
 * GPU works while the host records the rest; eval/captured_planner.ts replays the whole call.
 *
 * @module
 */
import { concat, indexSelect, maskedArgmax, reshape } from "../kernels/ops/mod.ts";
import { type Tensor, tidy } from "../kernels/core/tensor.ts";
import { runtime } from "../kernels/core/runtime.ts";
import { beamExpand, beamPrune, type BeamRows, checkBeamWidth } from "./beam_kernels.ts";
import type { PlanningModel, PlanningState } from "./planning_model.ts";

/** Settings of one planning call. */
export interface BeamSearchOptions {
  /** Planning horizon H (0 = greedy). */
  horizon: number;
  /** Beam width K (the search runs even at K = 1; policies shortcut that to greedy). */
  beamWidth: number;
  /** Discount of imagined rewards and the leaf value (default 0.99). */
  gamma?: number;
  /** Also return the best path's imagined observation tokens (for recordings). */
  keepPaths?: boolean;
}

/** Decisions of one planning call (GPU tensors; read them back together). */
export interface PlanOutput {
  /** i32 [N]: the action to take in each environment. */
  actions: Tensor;
  /** f32 [N]: the best leaf's value (the root's max valid Q when greedy). */
  values: Tensor | null;
  /** i32 [N, H * obsTokens]: imagined observations along the best path (keepPaths only). */
  paths: Tensor | null;
  /** i32 [N, H]: the best path's actions, the decision first (keepPaths only). */
  pathActions?: Tensor | null;
  /** f32 [N, H]: the best path's imagined rewards (keepPaths only). */
  pathRewards?: Tensor | null;
}

/** Inputs of one planning call: N environments' contexts. */
export interface PlanInputs {
  /** i32 [N, t]: context tokens ending with the current observation's last token. */
  tokens: Tensor;
  /** i32 [N]: task ids. */
  tasks: Tensor;
  /** f32 [N, actions]: 1 for the game's valid actions, 0 elsewhere. */
  valid: Tensor;
}

function checkOptions(o: BeamSearchOptions): void {
  if (!Number.isInteger(o.horizon) || o.horizon < 0) {
    throw new Error(`planning horizon must be an integer >= 0, got ${o.horizon}`);
  }
  checkBeamWidth(o.beamWidth);
}

/**
 * Plan from already-prefilled sequences: `root` holds N sequences whose Q values are `q0`
 * f32 [N, actions]. Does not dispose `root`.
 */
export function beamSearchFrom<S extends PlanningState>(
  model: PlanningModel<S>,
  root: S,
  q0: Tensor,
  valid: Tensor,
  opts: BeamSearchOptions,
): PlanOutput {
  checkOptions(opts);
  const { horizon: H, beamWidth: K } = opts;
  const gamma = opts.gamma ?? 0.99;
  const N = root.n;
  if (H === 0) return { actions: maskedArgmax(q0, valid), values: null, paths: null };
  const owned: PlanningState[] = [];
  try {
    return tidy(() => {
      let state: S = root;
      let q = q0;
      let prev: BeamRows | null = null;
      let paths: Tensor | null = null;
      let acts: Tensor | null = null;
      let rews: Tensor | null = null;
      let out: PlanOutput | null = null;
      for (let d = 0; d < H; d++) {
        const ex = beamExpand(q, valid, K, prev, d === 0 ? 1 : K);
        const child = model.branch(state, ex.parents);
        owned.push(child);
        const im = model.imagine(child, ex.actions);
        if (opts.keepPaths) {
          const M = ex.actions.size;
          const obs = reshape(im.obs, [M, 1, model.obsTokens]);
          paths = paths ? concat([indexSelect(paths, ex.parents), obs], 1) : obs;
          // Actions and rewards of each child's path, for training-time synthesis.
          const a = reshape(ex.actions, [M, 1]), r = reshape(im.reward, [M, 1]);
          acts = acts ? concat([indexSelect(acts, ex.parents), a], 1) : a;
          rews = rews ? concat([indexSelect(rews, ex.parents), r], 1) : r;
        }
        const pr = beamPrune(ex.base, im.reward, im.q, ex.first, valid, K, d, gamma);
        prev = { sel: pr.sel, score: pr.score, first: ex.first };
        state = child;
        q = im.q;
        // Submit this depth: the GPU runs it while the host records the next one.
        runtime().submitReady();
        if (d === H - 1) {
          out = {
            actions: pr.best,
            values: pr.bestValue,
            paths: paths && reshape(indexSelect(paths, pr.bestRow), [N, H * model.obsTokens]),
            pathActions: acts && indexSelect(acts, pr.bestRow),
            pathRewards: rews && indexSelect(rews, pr.bestRow),
          };
        }
      }
      return out!;
    });
  } finally {
    for (const s of owned) s.dispose();
  }
}

/** Prefill the contexts and plan; the one entry point policies use. */
export function beamSearch<S extends PlanningState>(
  model: PlanningModel<S>,
  inputs: PlanInputs,
  opts: BeamSearchOptions,
): PlanOutput {
  checkOptions(opts);
  const { state, q } = model.prefill(inputs.tokens, inputs.tasks);
  runtime().submitReady();
  try {
    return tidy(() => beamSearchFrom(model, state, q, inputs.valid, opts));
  } finally {
    state.dispose();
  }
}
