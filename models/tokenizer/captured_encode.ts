/**
 * Tokenizer encode under capture and replay (kernels/core/capture.ts): frames -> tokens with
 * the encoder's dispatches recorded once per frame count and replayed afterwards. Byte frames
 * are converted on the host exactly as `Tokenizer.preprocess` does (one upload, outside the
 * capture), so the tokens equal `Tokenizer.encode`'s bit for bit.
 *
 * @module
 */
import { noGrad } from "../../kernels/core/autograd.ts";
import { capture, type CaptureStats } from "../../kernels/core/capture.ts";
import { type Tensor, tidy } from "../../kernels/core/tensor.ts";
import { vectorQuantize } from "../../kernels/ops/mod.ts";
import type { Frames, Tokenizer } from "./model.ts";

/** A captured `Tokenizer.encode` (same contract; tokens valid until the next call). */
export interface CapturedEncode {
  (frames: Frames): Tensor;
  stats(): CaptureStats;
  dispose(): void;
}

/** Capture `tok.encode`; `replay: false` keeps it eager (`--no-replay`). */
export function captureEncode(tok: Tokenizer, opts: { replay?: boolean } = {}): CapturedEncode {
  const captured = capture<Tensor, Tensor>(
    (x) =>
      noGrad(() =>
        tidy(() => {
          const zRows = tok.latents(x);
          const q = vectorQuantize(zRows, tok.embedding.weight);
          return q.indices.view([zRows.shape[0] / tok.tokensPerFrame, tok.tokensPerFrame]);
        })
      ),
    { name: "tokenizer encode", replay: opts.replay },
  );
  const encode = ((frames: Frames) => {
    const x = tok.preprocess(frames);
    try {
      return captured(x);
    } finally {
      if (x !== frames) x.dispose();
    }
  }) as CapturedEncode;
  encode.stats = captured.stats;
  encode.dispose = captured.dispose;
  return encode;
}
