/**
 * The planner under capture and replay (kernels/core/capture.ts): one call of
 * {@link beamSearch} — the prefill of every environment's window and each imagined depth
 * (expand, KV-cache branch, 37 decode steps, prune) — recorded per input shape and replayed
 * afterwards with the new contexts copied in, bit for bit what the eager planner computes.
 *
 * The capture key is the inputs' shapes: environments N, window length (the past tokens'
 * length), and whether the best paths are kept. Every depth's cache length is a function of
 * those, so the position uniforms of cached attention are constants of the capture.
 * The readback of the decision stays outside: the caller reads `actions` once per
 * environment step. Inside, the prefill and each depth are submitted as recorded (the replay
 * submits at the same points), so the GPU starts before the host finished.
 *
 * Outputs of a replay are views of the capture's buffers: valid until the next call with
 * the same shapes (disposing them is harmless).
 *
 * @module
 */
import { capture, type CaptureStats } from "../kernels/core/capture.ts";
import { type Tensor, tensor } from "../kernels/core/tensor.ts";
import { concat } from "../kernels/ops/mod.ts";
import { beamSearch, type BeamSearchOptions, type PlanOutput } from "./beam_search.ts";
import type { PlanningModel } from "./planning_model.ts";

/** Inputs of one planning call for N environments whose windows hold w observations. */
export interface PlannerInputs {
  /** i32 [N, obsTokens]: the current observations' tokens (on the GPU: the tokenizer's). */
  current: Tensor;
  /** [N * (w - 1) * (obsTokens + 1)] the tokens before them (empty when w = 1). */
  past: Int32Array;
  /** [N] task ids. */
  tasks: Int32Array;
  /** [N * actions] 1 for each game's valid actions, 0 elsewhere. */
  valid: Float32Array;
  /** Also return the best paths (recordings). */
  keepPaths: boolean;
}

/** Options of {@link capturePlanner}: the search settings plus the capture's. */
export interface CapturedPlannerOptions extends Omit<BeamSearchOptions, "keepPaths"> {
  /** false: plan eagerly on every call (`--no-replay`). Default true. */
  replay?: boolean;
  /** Throw when a call cannot be replayed instead of planning eagerly (tests). */
  strict?: boolean;
  /** Input shapes kept captured (least recently used evicted). Default 4. */
  maxCaptures?: number;
}

/** A captured planner: plans like {@link beamSearch} from host contexts. */
export interface CapturedPlanner {
  (inputs: PlannerInputs): PlanOutput;
  stats(): CaptureStats;
  /** Free the captured buffers (outputs of replays become invalid). */
  dispose(): void;
}

/** Capture {@link beamSearch} over `model` with fixed search settings (see the module doc). */
export function capturePlanner(
  model: PlanningModel,
  opts: CapturedPlannerOptions,
): CapturedPlanner {
  const search = { horizon: opts.horizon, beamWidth: opts.beamWidth, gamma: opts.gamma };
  const captured = capture<PlannerInputs, PlanOutput>((inp) => {
    const N = inp.tasks.length;
    const O = model.obsTokens;
    if (inp.current.rank !== 2 || inp.current.shape[0] !== N || inp.current.shape[1] !== O) {
      throw new Error(`planner: current tokens ${inp.current} must be i32 [${N}, ${O}]`);
    }
    if (inp.valid.length !== N * model.actions || inp.past.length % (N * (O + 1)) !== 0) {
      throw new Error(
        `planner: ${inp.valid.length} valid flags or ${inp.past.length} past tokens do not ` +
          `fit ${N} environments`,
      );
    }
    // tensor() of an input array: a replay refills it from the new call's array.
    const tokens = inp.past.length === 0
      ? inp.current
      : concat([tensor(inp.past, [N, inp.past.length / N], "i32"), inp.current], 1);
    return beamSearch(model, {
      tokens,
      tasks: tensor(inp.tasks, [N], "i32"),
      valid: tensor(inp.valid, [N, model.actions]),
    }, { ...search, keepPaths: inp.keepPaths });
  }, {
    name: "planner",
    replay: opts.replay,
    strict: opts.strict,
    maxCaptures: opts.maxCaptures,
  });
  const plan = ((inputs: PlannerInputs) => captured(inputs)) as CapturedPlanner;
  plan.stats = captured.stats;
  plan.dispose = captured.dispose;
  return plan;
}
