/**
 * WGSL generators for fused (flash-style) self-attention, forward and backward: the public
 * entry points. The kernels live in _forward.ts, _backward.ts (delta and
 * the plan), _dkdv.ts and _dq.ts; tests/helpers/attention_reference.ts is the float64 CPU
 * reference and attention_dispatch.ts minimal raw-WebGPU plumbing for tests and benchmarks.
 *
 * Forward (one kernel): a workgroup owns BR query rows of one head; NS threads share a row,
 * each holding D/NS dims of q and of the output accumulator as separate vec4 variables.
 * BC-key tiles of K and V are staged in workgroup memory; each thread writes its partial
 * q·k dot products to workgroup memory, the NS partials are summed after a barrier, and an
 * online softmax (base 2, running max m and sum l) rescales the accumulator once per tile.
 * No T x T matrix touches global memory; the kernel also writes L = logsumexp of each row's
 * scaled scores ([BH, Tq], natural log) for the backward.
 *
 * Backward (two kernels, FlashAttention-2 style, no atomics): dQ with a workgroup per query
 * block looping over key tiles, which also writes delta = rowsum(dO * O); then dK/dV with a
 * workgroup per key block looping over query tiles. Both recompute P = exp(S - L) from Q, K
 * and L, and are register-blocked by default (4 rows or keys x 8 dims per thread; see
 * _blocked.ts).
 *
 * Dropout multiplies P by keep/(1-p) with keep from a counter-based hash of
 * (seed, bh, i, j) (see {@link dropoutKeep}); {seed, p} come from a small uniform so the
 * backward regenerates the same mask. L is the logsumexp before dropout.
 *
 * q, k, v may be stored f16 (`spec.qkvDtype`, `--precision f16`): each vec4 is converted to
 * f32 as it is loaded, so tiles, workgroup memory and all arithmetic are those of f32 (the
 * f16 kernels equal the f32 kernels on f16-representable values, bit for bit); only the
 * global reads of q, k, v halve. o, lse, dO and the gradients stay f32.
 *
 * Hot loops over the head dimension and over a tile are unrolled in the generated text with
 * named vec4 variables: naga clamps dynamic indices into private arrays, which would move
 * them out of registers. Tiles are picked to fit the device limits; `spec.tiles` overrides
 * them for tuning, including register blocking (several query rows or keys per thread, so
 * each workgroup-memory read feeds several accumulators), off by default.
 *
 * @module
 */

export type {
  AttentionLayout,
  AttentionLimits,
  AttentionSpec,
  AttentionTiles,
  KernelPlan,
} from "./common.ts";
export {
  ATTENTION_PARAMS_BYTES,
  attentionParams,
  dropoutKeep,
  dropoutThreshold,
  pcgHash,
} from "./common.ts";
export { attentionForwardGrid, planAttentionForward } from "./_forward.ts";
export { dynamicRowsBucket } from "./_tiles.ts";
export { planAttentionBackward } from "./_backward.ts";
