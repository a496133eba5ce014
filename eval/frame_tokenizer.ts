/**
 * What evaluation needs from the observation tokenizer (models/tokenizer/model.ts `Tokenizer`
 * satisfies it): frames -> tokens on the GPU, and tokens -> frames for recordings.
 *
 * @module
 */
import type { Tensor } from "../kernels/core/tensor.ts";

/** Frames <-> observation tokens. */
export interface FrameTokenizer {
  /** Tokens per frame (36). */
  readonly tokensPerFrame: number;
  /** Uint8 frames [N * 84 * 84] (or a tensor) -> token ids i32 [N, tokensPerFrame]. */
  encode(frames: Uint8Array | Tensor): Tensor;
  /** Token ids i32 [N, tokensPerFrame] -> frames f32 [N, 1, 84, 84] in [-1, 1]. */
  decode(ids: Tensor): Tensor;
}
