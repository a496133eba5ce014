/**
 * Evaluation of a JOWA agent (`deno task eval`, eval/evaluate.ts; see eval/README.md):
 *
 * - planning: `agent.ts` (PlanningAgent: greedy Q or beam search per step), `beam_search.ts`
 *   and `beam_kernels.ts` (batched beam search in the imagined MDP, on the GPU),
 *   `planning_model.ts` and `wam_planning_model.ts` (the world-action model as a planner's
 *   model, with KV-cache branching), `frame_tokenizer.ts`, `context_history.ts`;
 *   `captured_planner.ts` and `replayed_tokenizer.ts` (the planner and the tokenizer's
 *   encode recorded once per shape and replayed; `--no-replay` keeps them eager);
 * - running games: `episode_runner.ts`, `recording.ts` and `gif.ts`;
 * - scores: `metrics.ts` (human- and DQN-normalized scores, IQM, rliable's aggregates),
 *   `bootstrap.ts` (stratified bootstrap confidence intervals), `results_table.ts`,
 *   `results_writer.ts`, `public_protocol.ts` (the public evaluation settings);
 * - the CLI: `eval_options.ts` and `evaluate.ts`.
 * @module
 */
export { type AgentDecision, type AgentInput, type AgentOptions, PlanningAgent } from "./agent.ts";
export {
  beamSearch,
  beamSearchFrom,
  type BeamSearchOptions,
  type PlanInputs,
  type PlanOutput,
} from "./beam_search.ts";
export { checkBeamWidth, MAX_BEAM_WIDTH } from "./beam_kernels.ts";
export type { Imagined, PlanningModel, PlanningState } from "./planning_model.ts";
export { WamPlanningModel } from "./wam_planning_model.ts";
export {
  type CapturedPlanner,
  type CapturedPlannerOptions,
  capturePlanner,
  type PlannerInputs,
} from "./captured_planner.ts";
export { type ReplayedTokenizer, replayedTokenizer } from "./replayed_tokenizer.ts";
export * from "./metrics.ts";
export * from "./bootstrap.ts";
export * from "./results_table.ts";
export { defaultBeamWidth, evaluate } from "./evaluate.ts";
export { type EvalOptions, parseEvalArgs, USAGE } from "./eval_options.ts";
