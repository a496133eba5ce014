/**
 * WGSL for storing f32 values into f16 buffers (the f16 KV cache: kernels/ops/
 * cached_attention.ts and the skinny qkv product's KV epilogue, codegen/matmul/skinny.ts).
 * Stores saturate at the largest finite f16 (+-65504): an out-of-range key or value stays
 * finite instead of becoming an infinity that turns the attention softmax into NaN. The
 * conversion then rounds to a neighbouring f16 (WGSL leaves the choice to the device;
 * round-to-nearest-even in practice). Kernels that use these need `enable f16;`.
 *
 * @module
 */

/** Largest finite f16. */
export const F16_MAX = 65504;

/** WGSL of a scalar f32 expression `v` as an f16 store: clamped, then converted. */
export function toHalf(v: string): string {
  return `f16(clamp(${v}, -${F16_MAX}.0, ${F16_MAX}.0))`;
}

/** {@link toHalf} for a vec4<f32> expression. */
export function toHalf4(v: string): string {
  return `vec4<f16>(clamp(${v}, vec4<f32>(-${F16_MAX}.0), vec4<f32>(${F16_MAX}.0)))`;
}
