/**
 * JOWA pretraining (`deno task pretrain`, train/pretrain.ts; see train/README.md): the two
 * stages (tokenizer, then the joint world-action objective), their losses and the run
 * management (checkpoints, resume, Ctrl-C, the non-finite guard).
 *
 * - `pretrainer.ts`: `pretrain(config)`, the whole run; `trainer.ts`: the step loop shared
 *   with fine-tuning;
 * - `pretrain_options.ts`: the configuration, presets and command-line parsing;
 * - `losses.ts`: the world-model cross-entropies, the C51 TD loss and the CQL penalty;
 *   `world_step.ts`: one joint world-action step; `world_batch.ts`: batches from the sampler;
 * - `tokenizer_stage.ts`: stage 1 and the frame encoder of stage 2;
 * - `pretrain_report.ts`, `report.ts`, `metrics_log.ts`: the run's report and metrics.
 * @module
 */
export { pretrain, type PretrainHooks, type PretrainResult, RunError } from "./pretrainer.ts";
export {
  DEFAULT_CONFIG,
  HELP,
  PAPER_GAMES,
  parsePretrainArgs,
  PRESETS,
  type PretrainConfig,
  resolveConfig,
} from "./pretrain_options.ts";
export { actionLoss, c51TdLoss, cqlPenalty, jointLoss, qValues, worldLoss } from "./losses.ts";
export { PAPER_WEIGHTS, worldActionStep } from "./world_step.ts";
