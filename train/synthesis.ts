/**
 * Planning-synthesized segments for fine-tuning (paper E.2; the authors' `imagine` with
 * `policy_in_imagination: planning`): from the real context of a sampled segment — its last
 * C = L - H observations and the C - 1 actions and rewards between them — the batched beam
 * search of eval/ (eval/beam_search.ts, on the KV-cached eval/wam_planning_model.ts) imagines
 * H steps; the best path's actions, imagined rewards (argmax class - 1) and greedy observation
 * tokens complete a synthetic segment of length L:
 *
 *   observations  o_1 .. o_C (real)          o'_{C+1} .. o'_{C+H} (imagined)
 *   actions       a_1 .. a_{C-1} (real)      a'_C .. a'_{C+H-1} (the path)   a'_{C+H-1} again
 *   rewards       r_1 .. r_{C-1} (real)      r'_C .. r'_{C+H-1} (imagined)   r'_{C+H-1} again
 *   terminals 0, mask 1 everywhere.
 *
 * The last step repeats the path's last action and reward as the authors' code does (a
 * placeholder: the last step of a segment is never a TD source, and its Q row only enters the
 * COMBO negative term, which does not depend on the action). Imagined terminations are not
 * used (their code sets ends to 0: the planner ignores the termination head).
 *
 * Departures from their code, on purpose: the real actions and rewards stay aligned with their
 * observations (theirs take the real part of actions and rewards one step later than the
 * observations, an off-by-one); and the imagined observations are never decoded (below).
 *
 * Tokens, not frames: the world-action model consumes observation tokens, so the imagined
 * tokens are kept as they are. The authors decode them to frames and re-encode them with the
 * tokenizer only because their replay buffer stores frames; the tokenizer is trained on real
 * frames only, so nothing needs imagined pixels (the report decodes a few for display). The
 * round trip would cost a decoder and an encoder pass per imagined frame and could change
 * tokens (re-encoding a decoded frame is not the identity); theirs also feeds the uint8
 * frames to the encoder without the /255 scaling of real frames.
 *
 * @module
 */
import { concat, reshape, slice } from "../kernels/ops/mod.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { beamSearch } from "../eval/beam_search.ts";
import type { PlanningModel } from "../eval/planning_model.ts";

/** Planner settings of synthesis (paper and public code: H = 2, K = 2). */
export interface SynthesisOptions {
  horizon: number;
  beamWidth: number;
  gamma: number;
}

/** The real contexts synthesis starts from (N segments, C = L - H observations each). */
export interface SynthesisSource {
  /** i32 [N, C, P]: context observation tokens (on the GPU: possibly fresh from a tokenizer). */
  obs: Tensor;
  /** [N, C - 1]: the real actions between the context observations. */
  actions: Int32Array;
  /** [N, C - 1]: the real rewards between them (as trained on). */
  rewards: Float32Array;
  /** [N]. */
  taskIds: Int32Array;
  /** f32 [N, A]: each item's valid actions. */
  valid: Float32Array;
}

/** Synthetic segments on the CPU (N segments of length L = C + H). */
export interface SyntheticSegments {
  count: number;
  L: number;
  P: number;
  /** i32 [N, L, P]. */
  tokens: Int32Array;
  /** i32 [N, L]. */
  actions: Int32Array;
  /** f32 [N, L]. */
  rewards: Float32Array;
  /** [N]. */
  taskIds: Int32Array;
}

/**
 * Items of a real batch that can seed synthesis: their last `L - horizon` steps are real (the
 * authors' `mask_padding[:, -L + H:].all(1)`).
 */
export function synthesisRows(mask: Uint8Array, B: number, L: number, horizon: number): number[] {
  const rows: number[] = [];
  for (let i = 0; i < B; i++) {
    let ok = true;
    for (let s = horizon; s < L; s++) ok &&= mask[i * L + s] === 1;
    if (ok) rows.push(i);
  }
  return rows;
}

/**
 * Plan from every context and build the synthetic segments (one readback). The planner's
 * model must be in eval mode (WamPlanningModel switches it).
 */
export async function synthesize(
  planner: PlanningModel,
  src: SynthesisSource,
  opts: SynthesisOptions,
): Promise<SyntheticSegments> {
  const [N, C, P] = src.obs.shape;
  const H = opts.horizon, L = C + H, A = planner.actions;
  if (H < 1) throw new Error(`synthesis horizon must be >= 1, got ${H}`);
  if (C < 1) throw new Error(`synthesis needs at least one context observation`);
  const plan = tidy(() => {
    // Interleave o_1 a_1 .. o_C (the last action slot is dropped): [N, C * (P + 1) - 1].
    const acts = new Int32Array(N * C);
    for (let i = 0; i < N; i++) {
      acts.set(src.actions.subarray(i * (C - 1), (i + 1) * (C - 1)), i * C);
    }
    const grid = reshape(concat([src.obs, tensor(acts, [N, C, 1], "i32")], 2), [N, C * (P + 1)]);
    const tokens = slice(grid, 1, 0, C * (P + 1) - 1);
    const out = beamSearch(planner, {
      tokens,
      tasks: tensor(src.taskIds, [N], "i32"),
      valid: tensor(src.valid, [N, A]),
    }, { horizon: H, beamWidth: opts.beamWidth, gamma: opts.gamma, keepPaths: true });
    return [out.paths!, out.pathActions!, out.pathRewards!, out.actions];
  });
  let vals;
  try {
    vals = await readAll([src.obs, ...plan]);
  } finally {
    for (const t of plan) t.dispose();
  }
  const [ctx, paths, pathActs, pathRews] = vals as [
    Int32Array,
    Int32Array,
    Int32Array,
    Float32Array,
  ];
  const seg: SyntheticSegments = {
    count: N,
    L,
    P,
    tokens: new Int32Array(N * L * P),
    actions: new Int32Array(N * L),
    rewards: new Float32Array(N * L),
    taskIds: Int32Array.from(src.taskIds),
  };
  for (let i = 0; i < N; i++) {
    seg.tokens.set(ctx.subarray(i * C * P, (i + 1) * C * P), i * L * P);
    seg.tokens.set(paths.subarray(i * H * P, (i + 1) * H * P), (i * L + C) * P);
    for (let s = 0; s < L; s++) {
      const k = i * L + s;
      if (s < C - 1) {
        seg.actions[k] = src.actions[i * (C - 1) + s];
        seg.rewards[k] = src.rewards[i * (C - 1) + s];
      } else {
        const h = Math.min(s - (C - 1), H - 1); // the last step repeats the path's last
        seg.actions[k] = pathActs[i * H + h];
        seg.rewards[k] = pathRews[i * H + h];
      }
    }
  }
  return seg;
}
