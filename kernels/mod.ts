/**
 * The tensor engine on Deno's WebGPU: hand-written WGSL kernels behind an autograd tape.
 *
 * Four layers, each importing only the ones above it:
 *
 * - `core/`: the runtime. `device.ts` (the adapter and its limits), `runtime.ts` (one command
 *   encoder per step, pipeline and bind-group caches, shader-error checks), `buffer_pool.ts`,
 *   `tensor.ts` (shapes, dtypes, reference-counted storage, `tidy`), `dtype.ts` and
 *   `autograd.ts` (the tape: `backward`, `noGrad`, `detach`), `capture.ts` (record a step
 *   once, replay it), `precision.ts` (`--precision f16`) and `gpu_profiler.ts` (GPU time per
 *   kernel by timestamp queries, benchmarks only).
 * - `codegen/`: WGSL generators. `wgsl.ts` is the one shared kit (grid folding, f32 literals,
 *   bindings); `matmul/` (tiled batched matmul, split-K), `conv/` (convolutions as implicit
 *   GEMMs) and `attention/` (fused flash-style attention, forward and backward) each have a
 *   `plan.ts` entry point that chooses tiles for the device limits and emits the kernel text.
 * - `ops/`: every differentiable op (elementwise, reductions, layout, softmax, norms, gather,
 *   dropout, top-k, matmul, losses, attention and cached attention, C51, convolutions,
 *   upsampling, group norm, vector quantization), all exported by `ops/mod.ts`.
 * - `nn/`: `module.ts` (named, nested parameters), `layers.ts` (Linear, LayerNorm,
 *   Embedding and their seeded initializers), `optim.ts` (multi-tensor AdamW, gradient
 *   clipping), `f16_shadow.ts` (f16 weight copies) and `loss_scale.ts` (dynamic loss scaling).
 *
 * ```ts
 * import { backward, initRuntime, matmul, sumAll, tensor } from "./mod.ts";
 * await initRuntime();
 * const w = tensor([1, 2, 3, 4], [2, 2]);
 * w.requiresGrad = true;
 * backward(sumAll(matmul(w, w)));
 * console.log(await w.grad!.read());
 * ```
 * @module
 */
export { describeAdapter, gpu, type GpuContext, GpuUnavailableError } from "./core/device.ts";
export { initRuntime, type Kernel, Runtime, runtime, ShaderError } from "./core/runtime.ts";
export { type AnyTypedArray, keep, readAll, Tensor, tensor, tidy } from "./core/tensor.ts";
export type { DType } from "./core/dtype.ts";
export { backward, detach, isGradEnabled, noGrad } from "./core/autograd.ts";
export * from "./ops/mod.ts";
export { AdamW, type AdamWOptions } from "./nn/optim.ts";
export { LossScaler } from "./nn/loss_scale.ts";
export { type Precision, precision, setPrecision } from "./core/precision.ts";
export { capture, type Captured, type CaptureStats } from "./core/capture.ts";
export { GpuProfiler, type KernelTime } from "./core/gpu_profiler.ts";
export { assignValues, copyTensor, Module, type ParameterValues } from "./nn/module.ts";
export { Embedding, InitRng, LayerNorm, Linear } from "./nn/layers.ts";
