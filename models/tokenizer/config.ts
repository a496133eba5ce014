/**
 * Sizes of the VQ-VAE tokenizer (see models/tokenizer.ts for the full architecture).
 *
 * @module
 */

/** One resolution change of the encoder: a strided convolution after zero padding. */
export interface DownStep {
  kernel: number;
  stride: number;
  /** [top, bottom, left, right]. */
  pad: [number, number, number, number];
}

/** Tokenizer configuration. */
export interface TokenizerConfig {
  /** Input frames are resolution x resolution, `inChannels` channels (1: grayscale). */
  resolution: number;
  inChannels: number;
  /** Channels of every level (VQGAN's ch with ch_mult all 1). */
  ch: number;
  /** Levels: `down.length + 1` (encoder) and as many in the decoder. */
  down: DownStep[];
  /** Decoder upsampling factors, lowest resolution first (mirror of `down`'s strides). */
  up: number[];
  /** Residual blocks per encoder level; the decoder has one more per level (VQGAN). */
  numResBlocks: number;
  /** Resolutions whose blocks are followed by self-attention. */
  attnResolutions: number[];
  /** GroupNorm groups (32 at 64 channels in VQGAN). */
  groups: number;
  /** Encoder output channels (before pre_quant_conv). */
  zChannels: number;
  /** Code vector size and codebook size. */
  embedDim: number;
  vocab: number;
  /** Commitment loss weight. */
  beta: number;
  /** Initialization seed. */
  seed: number;
}

const JOWA_DOWN: DownStep[] = [
  { kernel: 8, stride: 7, pad: [0, 1, 0, 1] }, // 84 -> 12
  { kernel: 3, stride: 2, pad: [0, 1, 0, 1] }, // 12 -> 6
];

/** The reference sizes (jowa.md): 64 channels, 2048 codes of 512, 36 tokens per frame. */
export const PAPER_TOKENIZER: TokenizerConfig = {
  resolution: 84,
  inChannels: 1,
  ch: 64,
  down: JOWA_DOWN,
  up: [7, 2],
  numResBlocks: 2,
  attnResolutions: [6, 12],
  groups: 32,
  zChannels: 512,
  embedDim: 512,
  vocab: 2048,
  beta: 1.0,
  seed: 0,
};

/** Same strides and 6x6 token grid, small widths: tests and the CPU demo. */
export const TINY_TOKENIZER: TokenizerConfig = {
  ...PAPER_TOKENIZER,
  ch: 8,
  groups: 4,
  zChannels: 16,
  embedDim: 16,
  vocab: 64,
};

/** Configurations by name. */
export const TOKENIZER_CONFIGS: Record<string, TokenizerConfig> = {
  paper: PAPER_TOKENIZER,
  tiny: TINY_TOKENIZER,
};

/** Side of the token grid (6 for 84 with strides 7 and 2). */
export function tokenGrid(cfg: TokenizerConfig): number {
  let r = cfg.resolution;
  for (const d of cfg.down) r = Math.floor((r + d.pad[0] + d.pad[1] - d.kernel) / d.stride) + 1;
  return r;
}

/** Resolution of each encoder level, highest first (84, 12, 6). */
export function levelResolutions(cfg: TokenizerConfig): number[] {
  const out = [cfg.resolution];
  let r = cfg.resolution;
  for (const d of cfg.down) {
    r = Math.floor((r + d.pad[0] + d.pad[1] - d.kernel) / d.stride) + 1;
    out.push(r);
  }
  return out;
}
