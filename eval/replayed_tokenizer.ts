/**
 * The evaluation's frame tokenizer with its encode captured and replayed
 * (models/tokenizer/captured_encode.ts): frames -> tokens recorded once per number of frames,
 * replayed afterwards, the same tokens bit for bit. Decoding (recordings only) stays eager.
 *
 * @module
 */
import type { Tensor } from "../kernels/core/tensor.ts";
import { captureEncode } from "../models/tokenizer/captured_encode.ts";
import type { Frames, Tokenizer } from "../models/tokenizer/model.ts";
import type { FrameTokenizer } from "./frame_tokenizer.ts";

/** A {@link FrameTokenizer} whose encode replays; `dispose()` frees the captured buffers. */
export interface ReplayedTokenizer extends FrameTokenizer {
  dispose(): void;
}

/**
 * Wrap `tok` (`replay: false`: encode eagerly, `--no-replay`). Encoded tokens are valid until
 * the next encode of as many frames (the agent reads them within the step).
 */
export function replayedTokenizer(tok: Tokenizer, replay = true): ReplayedTokenizer {
  const encode = captureEncode(tok, { replay });
  return {
    tokensPerFrame: tok.tokensPerFrame,
    encode: (frames: Frames) => encode(frames),
    decode: (ids: Tensor) => tok.decode(ids),
    dispose: () => encode.dispose(),
  };
}
