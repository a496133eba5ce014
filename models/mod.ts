/**
 * The networks of JOWA and their file formats:
 *
 * - `world_action/`: the world-action model (`model.ts`: a GPT backbone from
 *   `transformer.ts` with observation, reward, termination and C51 Q heads from `heads.ts`),
 *   its configurations (`configs.ts`, the paper's 40M/70M/150M and a tiny one), the parameter
 *   spec (`spec.ts`), the token layout (`layout.ts`) and the KV cache used for planning
 *   (`kv_cache.ts`, `kv_cache_window.ts`).
 * - `tokenizer/`: the VQ frame tokenizer (`model.ts`, `nets.ts`, `layers.ts`, `config.ts`)
 *   and the LPIPS perceptual loss (`lpips.ts`).
 * - `safetensors/`: reading and writing safetensors files (`mod.ts`).
 * - `params_report.ts`: `deno task params`, parameter counts per configuration.
 * @module
 */
export {
  type ForwardOptions,
  nextObservationRows,
  WorldActionModel,
  type WorldActionOutputs,
} from "./world_action/model.ts";
export {
  type ConfigName,
  CONFIGS,
  contextLength,
  parseWorldActionConfig,
  tokensPerStep,
  validateConfig,
  type WorldActionConfig,
  worldActionConfig,
} from "./world_action/configs.ts";
export { Block, Gpt, type GptConfig } from "./world_action/transformer.ts";
export { KvCache } from "./world_action/kv_cache.ts";
export { countByPart, countParams, worldActionParamSpec } from "./world_action/spec.ts";
export { Tokenizer, type TokenizerOutput } from "./tokenizer/model.ts";
export {
  PAPER_TOKENIZER,
  parseTokenizerConfig,
  TINY_TOKENIZER,
  TOKENIZER_CONFIGS,
  type TokenizerConfig,
} from "./tokenizer/config.ts";
export { Lpips } from "./tokenizer/lpips.ts";
export * from "./safetensors/mod.ts";
export { type ParamsRow, paramsRow } from "./params_report.ts";
