/**
 * The tokenizer's part of pretraining, as a thin adapter over models/tokenizer/model.ts: stage-1
 * loss parts on a subset of the batch's frames, token ids of every frame of a batch (on the
 * GPU, for the world part), and the frame encoder that builds the stage-2 token stores.
 *
 * @module
 */
import { concat } from "../kernels/ops/mod.ts";
import { backward } from "../kernels/core/autograd.ts";
import type { AdamW } from "../kernels/nn/optim.ts";
import { snapshot } from "./trainer.ts";
import { readAll, type Tensor } from "../kernels/core/tensor.ts";
import { type PerceptualLoss, Tokenizer, TOKENIZER_CONFIGS } from "../models/tokenizer/model.ts";
import { Lpips } from "../models/tokenizer/lpips.ts";
import { FRAME_BYTES } from "../offline/mod.ts";
import type { FrameEncoder } from "../offline/mod.ts";

/**
 * A tokenizer of a named size ("tiny" | "paper") initialized from `seed`; with `perceptual`
 * its training loss has the LPIPS term.
 */
export function makeTokenizer(name: string, seed: number, perceptual?: PerceptualLoss): Tokenizer {
  const base = TOKENIZER_CONFIGS[name];
  if (!base) throw new Error(`unknown tokenizer config '${name}'`);
  return new Tokenizer({ ...base, seed }, { perceptual });
}

/**
 * The LPIPS network of `--lpips FILE` (after the runtime is up), or undefined without one.
 * @throws Error naming the flag and file (missing, unreadable or wrong tensors).
 */
export async function loadPerceptual(file: string | null | undefined): Promise<Lpips | undefined> {
  if (!file) return undefined;
  try {
    return await Lpips.load(file);
  } catch (e) {
    throw new Error(`--lpips ${file}: ${(e as Error).message.split("\n")[0]}`);
  }
}

/** Indices of `n` frames spread evenly over `total` (a deterministic subset). */
export function frameSubset(total: number, n: number): number[] {
  const k = Math.min(n, total);
  return Array.from({ length: k }, (_, i) => Math.floor((i * total) / k));
}

/** Bytes of the chosen frames of a [F, 84, 84] uint8 array. */
export function pickFrames(frames: Uint8Array, idx: readonly number[]): Uint8Array {
  const out = new Uint8Array(idx.length * FRAME_BYTES);
  idx.forEach((f, i) =>
    out.set(frames.subarray(f * FRAME_BYTES, (f + 1) * FRAME_BYTES), i * FRAME_BYTES)
  );
  return out;
}

/** Scalar loss tensors of a tokenizer step. */
export interface TokenizerLossParts {
  total: Tensor;
  parts: Record<string, Tensor>;
}

/**
 * Stage-1 tokenizer losses on `tokenizerBatch` frames of a batch's `frames` [B*L, 84, 84]
 * (all of them when the batch is no larger); also returns the ids of all frames, i32
 * [B, L, 36], for the world part (from the same forward when it saw every frame).
 */
export function tokenizerStep(
  tok: Tokenizer,
  frames: Uint8Array,
  B: number,
  L: number,
  tokenizerBatch: number,
): { losses: TokenizerLossParts; ids: Tensor } {
  const total = B * L;
  const all = tokenizerBatch >= total;
  const input = all ? frames : pickFrames(frames, frameSubset(total, tokenizerBatch));
  const out = tok.forward(input);
  const parts: Record<string, Tensor> = {
    tok_recon: out.reconLoss,
    tok_codebook: out.codebookLoss,
    tok_commit: out.commitmentLoss,
  };
  if (out.perceptualLoss) parts.tok_perceptual = out.perceptualLoss;
  const ids = (all ? out.indices : encodeChunked(tok, frames, ENCODE_CHUNK))
    .view([B, L, tok.tokensPerFrame]);
  return { losses: { total: out.loss, parts }, ids };
}

/**
 * The tokenizer's part of a stage-1 training step, inside the step's `tidy`: its losses into
 * `out` (and `tok_total`), backward, and unless `deferUpdate` (data parallel: the update
 * waits for the averaged gradients) the update, with its clip stats in `norms.tokenizer`.
 * @returns the batch's token ids, made before the update.
 */
export function trainTokenizerStep(
  tok: Tokenizer,
  opt: AdamW,
  frames: Uint8Array,
  shape: { B: number; L: number; tokenizerBatch: number },
  deferUpdate: boolean,
  out: Record<string, Tensor>,
  norms: Record<string, Tensor>,
): Tensor {
  const t = tokenizerStep(tok, frames, shape.B, shape.L, shape.tokenizerBatch);
  opt.zeroGrad();
  backward(t.losses.total);
  if (!deferUpdate) {
    opt.update();
    norms.tokenizer = snapshot(opt.clipStats);
  }
  Object.assign(out, t.losses.parts);
  out.tok_total = t.losses.total;
  return t.ids;
}

/** Frames per encoder pass: bounds activation memory (the paper tokenizer at 84x84). */
export const ENCODE_CHUNK = 256;

/** Token ids i32 [F, 36] of frames [F, 84, 84], `chunk` frames per encoder pass. */
export function encodeChunked(tok: Tokenizer, frames: Uint8Array, chunk: number): Tensor {
  const F = frames.length / FRAME_BYTES;
  if (F <= chunk) return tok.encode(frames);
  const parts: Tensor[] = [];
  for (let s = 0; s < F; s += chunk) {
    parts.push(tok.encode(frames.subarray(s * FRAME_BYTES, Math.min(F, s + chunk) * FRAME_BYTES)));
  }
  return concat(parts, 0);
}

/**
 * A FrameEncoder for tokenizeStore: encodes `chunk` frames per GPU pass. The last chunk of
 * an episode is zero-padded to `chunk` frames: kernels are compiled per shape, so one shape
 * for every call avoids a compilation per distinct episode length.
 */
export function frameEncoder(tok: Tokenizer, chunk = 256): FrameEncoder {
  const buf = new Uint8Array(chunk * FRAME_BYTES);
  return async (frames: Uint8Array, T: number) => {
    const P = tok.tokensPerFrame;
    const out = new Uint16Array(T * P);
    for (let s = 0; s < T; s += chunk) {
      const n = Math.min(T, s + chunk) - s;
      buf.fill(0);
      buf.set(frames.subarray(s * FRAME_BYTES, (s + n) * FRAME_BYTES));
      const ids = tok.encode(buf);
      const [v] = await readAll([ids]);
      ids.dispose();
      out.set(v.subarray(0, n * P), s * P);
    }
    return out;
  };
}
