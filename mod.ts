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

// Engine
export {
  describeAdapter,
  gpu,
  type GpuContext,
  GpuUnavailableError,
} from "./kernels/core/device.ts";
export { initRuntime, type Kernel, Runtime, runtime, ShaderError } from "./kernels/core/runtime.ts";
export { type AnyTypedArray, keep, readAll, Tensor, tensor, tidy } from "./kernels/core/tensor.ts";
export type { DType } from "./kernels/core/dtype.ts";
export { backward, detach, isGradEnabled, noGrad } from "./kernels/core/autograd.ts";
export * from "./kernels/ops/mod.ts";
export { AdamW, type AdamWOptions } from "./kernels/nn/optim.ts";
export { assignValues, copyTensor, Module, type ParameterValues } from "./kernels/nn/module.ts";
export { Embedding, InitRng, LayerNorm, Linear } from "./kernels/nn/layers.ts";

// Models
export { Block, Gpt, type GptConfig, SeedStream } from "./models/world_action/transformer.ts";
export * from "./models/safetensors/mod.ts";

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
} from "./atari/scores.ts";
export { stratifiedBootstrapCI, stratifiedBootstrapCIs } from "./eval/bootstrap.ts";
export { computeResults, renderResultsMarkdown } from "./eval/results_table.ts";
