/**
 * JOWA for Deno on WebGPU — the public API.
 *
 * A tensor engine on Deno's native WebGPU (hand-written WGSL kernels behind an autograd tape),
 * the networks of "Scaling Offline Model-Based RL via Jointly-Optimized World-Action Model
 * Pretraining" (JOWA, ICLR 2025), the Atari environments, offline data and evaluation metrics.
 *
 * ```ts
 * import { backward, initRuntime, matmul, sumAll, tensor } from "https://…/mod.ts";
 * await initRuntime();
 * const w = tensor([1, 2, 3, 4], [2, 2]);
 * w.requiresGrad = true;
 * backward(sumAll(matmul(w, w)));
 * console.log(await w.grad!.read());
 * ```
 *
 * Run with `--unstable-webgpu` (or `"unstable": ["webgpu"]` in deno.json).
 *
 * @module
 */

// Engine (kernels/mod.ts: runtime, tensors, tape, every op, modules, layers, AdamW)
export * from "./kernels/mod.ts";

// Models
export { Block, Gpt, type GptConfig } from "./models/world_action/transformer.ts";
export { SeedStream } from "./util/rng.ts";
export * from "./models/safetensors/mod.ts";

// The authors' released checkpoints (`deno task import`) and their forward/encode/decode layouts
export {
  importJowaCheckpoint,
  JowaImportError,
  loadAuthorsTokenizer,
  loadAuthorsWorldModel,
} from "./checkpoint/import_jowa.ts";
export {
  jowaDecode,
  jowaEncode,
  type JowaEncodeOutput,
  jowaForward,
  type JowaForwardOutput,
} from "./models/jowa_authors_api.ts";

// Atari environments
export * from "./envs/mod.ts";

// Offline data (namespaced: DataError, Rng, ... would clash at top level)
export * as data from "./offline/mod.ts";

// Evaluation metrics
export {
  aggregateIqm,
  aggregateMean,
  aggregateMedian,
  dqnNormalizedScore,
  humanNormalizedScore,
  meanStd,
  trimMean,
} from "./eval/metrics.ts";
export {
  ALL_GAMES,
  canonicalGameName,
  FINETUNE_GAMES,
  gameReference,
  PRETRAIN_GAMES,
} from "./atari/mod.ts";
export { stratifiedBootstrapCI, stratifiedBootstrapCIs } from "./eval/bootstrap.ts";
export { computeResults, renderResultsMarkdown } from "./eval/results_table.ts";
