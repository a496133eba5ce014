/**
 * The small interface the beam-search planner needs from a world-action model, so the same
 * planner runs on the real model (eval/wam_planning_model.ts, KV-cached; and
 * tests/helpers/wam_uncached_model.ts, recomputing full contexts) and on hand-built stubs in tests.
 *
 * A `PlanningState` is a batch of M token sequences that the model can extend. Every method
 * records GPU work only: no readback happens behind the planner's back.
 *
 * @module
 */
import type { Tensor } from "../kernels/core/tensor.ts";

/** A batch of sequences the model can extend; owns GPU memory until `dispose()`. */
export interface PlanningState {
  /** Number of sequences. */
  readonly n: number;
  /** Release the state's GPU memory (idempotent). */
  dispose(): void;
}

/** What one imagined transition gives for every sequence of a state. */
export interface Imagined {
  /** Imagined reward per sequence, f32 [M]: argmax reward class - 1 (in {-1, 0, 1}). */
  reward: Tensor;
  /** Greedy next-observation tokens, i32 [M, obsTokens] (already appended to the state). */
  obs: Tensor;
  /** Q values at the new last observation token, f32 [M, actions]. */
  q: Tensor;
}

/** The batched operations of beam search. */
export interface PlanningModel<S extends PlanningState = PlanningState> {
  /** Size of the action output (18 for Atari). */
  readonly actions: number;
  /** Observation tokens per timestep (36). */
  readonly obsTokens: number;
  /** Timesteps the model's context holds (L = 8). */
  readonly timesteps: number;
  /**
   * Start sequences from contexts `tokens` i32 [N, t] (interleaved observation and action
   * tokens, ending with the last token of the current observation) for `tasks` i32 [N].
   * Returns the state and the Q values f32 [N, actions] at the last token.
   */
  prefill(tokens: Tensor, tasks: Tensor): { state: S; q: Tensor };
  /** A new state whose sequence m continues sequence `parents[m]` (i32 [M], on the GPU). */
  branch(state: S, parents: Tensor): S;
  /**
   * Append action `actions[m]` (i32 [M], full action ids) to every sequence, then imagine the
   * reward and the next observation greedily (the tokens are appended too).
   */
  imagine(state: S, actions: Tensor): Imagined;
}
