/**
 * Every op of the engine. Importing this module also hands the tape the two ops it needs
 * (gradient accumulation and the seed gradient).
 *
 * @module
 */
import { registerTapeOps } from "../core/autograd.ts";
import { add, ones } from "./elementwise.ts";

export * from "./elementwise.ts";
export * from "./reduce.ts";
export * from "./layout.ts";
export * from "./softmax.ts";
export * from "./norm.ts";
export * from "./gather.ts";
export * from "./dropout.ts";
export * from "./topk.ts";
export * from "./matmul.ts";
export * from "./loss.ts";
export * from "./attention.ts";
export * from "./cached_attention.ts";
export * from "./c51.ts";
export * from "./conv.ts";
export * from "./upsample.ts";
export * from "./group_norm.ts";
export * from "./vq.ts";
export * from "./conv_pool.ts";
export * from "./fused_residual_norm.ts";
export { matmulF16, type MatmulF16Options } from "./matmul_f16.ts";

registerTapeOps({ add, ones });
