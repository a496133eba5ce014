/**
 * Sizes of the VQ-VAE tokenizer (see models/tokenizer/model.ts for the full architecture).
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
  /** Resolutions whose encoder blocks are followed by self-attention. */
  attnResolutions: number[];
  /**
   * Resolutions whose DECODER blocks are followed by self-attention. The authors' decoder has
   * none ([]): its resolution counter starts at 4, not 6 ("bug in decoder", their nets.py),
   * so 4, 28 and 56 never match [6, 12]; only the mid block attends. A stored config
   * without this field predates it and used `attnResolutions`.
   */
  decoderAttnResolutions: number[];
  /** GroupNorm groups (the authors' `Normalize`: 2; VQGAN: 32). */
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
  /**
   * "orthogonal": the authors' init, every encoder/decoder convolution orthogonal with gain
   * sqrt(2) (ReLU's) and zero bias, pre/post-quant convolutions PyTorch's default. "default":
   * PyTorch's default for all (weight and bias U(+-1/sqrt(fan_in))). Fresh models only.
   */
  init: "orthogonal" | "default";
}

const JOWA_DOWN: DownStep[] = [
  { kernel: 8, stride: 7, pad: [0, 1, 0, 1] }, // 84 -> 12
  { kernel: 3, stride: 2, pad: [0, 1, 0, 1] }, // 12 -> 6
];

/**
 * The reference sizes (jowa.md): 64 channels, 2048 codes of 512, 36 tokens per frame, with
 * the authors' architecture (their config/tokenizer/default.yaml and nets.py): GroupNorm with
 * 2 groups (eps 1e-6), two residual blocks per encoder level (three per decoder level),
 * attention after the encoder blocks at 12 and 6, none in the decoder's up levels, and their
 * orthogonal init. Checked against fixtures made by their classes
 * (tests/jowa_parity_model_test.ts). Remaining departure: their LPIPS has dropout (p 0.5)
 * before each linear head while training; ours has none (models/tokenizer/lpips.ts).
 */
export const PAPER_TOKENIZER: TokenizerConfig = {
  resolution: 84,
  inChannels: 1,
  ch: 64,
  down: JOWA_DOWN,
  up: [7, 2],
  numResBlocks: 2,
  attnResolutions: [6, 12],
  decoderAttnResolutions: [],
  groups: 2,
  zChannels: 512,
  embedDim: 512,
  vocab: 2048,
  beta: 1.0,
  seed: 0,
  init: "orthogonal",
};

/**
 * Same strides and 6x6 token grid, small widths: tests and the CPU demo. Keeps what its
 * learning tests were tuned with: 4 groups, decoder attention at 6, PyTorch's default init.
 */
export const TINY_TOKENIZER: TokenizerConfig = {
  ...PAPER_TOKENIZER,
  ch: 8,
  groups: 4,
  zChannels: 16,
  embedDim: 16,
  vocab: 64,
  decoderAttnResolutions: [6, 12],
  init: "default",
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

const INT_FIELDS = [
  "resolution",
  "inChannels",
  "ch",
  "numResBlocks",
  "groups",
  "zChannels",
  "embedDim",
  "vocab",
] as const;

function describe(v: unknown): string {
  if (v === undefined) return "missing";
  if (v === null || typeof v === "number") return String(v);
  return Array.isArray(v) ? "an array" : `a ${typeof v}`;
}

function intList(o: Record<string, unknown>, k: string, min: number, len?: number): number[] {
  const v = o[k];
  if (
    !Array.isArray(v) || (len !== undefined && v.length !== len) ||
    v.some((x) => !Number.isInteger(x) || x < min)
  ) {
    const want = len === undefined ? "a list of integers" : `${len} integers`;
    throw new Error(`tokenizer config field '${k}' is ${describe(v)}, expected ${want} >= ${min}`);
  }
  return v as number[];
}

/**
 * A tokenizer config read from untrusted JSON (a checkpoint's `config` metadata): every
 * field of {@link TokenizerConfig} at its type (extra fields dropped), and the sizes
 * consistent (groups divide the channels, one up factor per down step, a token grid that the
 * decoder scales back to the resolution). Throws a one-line Error naming the first bad field.
 */
export function parseTokenizerConfig(raw: unknown): TokenizerConfig {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new Error(`tokenizer config is ${describe(raw)}, expected an object`);
  }
  const o = raw as Record<string, unknown>;
  const c: Record<string, unknown> = {};
  for (const k of INT_FIELDS) {
    if (!Number.isInteger(o[k]) || (o[k] as number) < 1) {
      throw new Error(
        `tokenizer config field '${k}' is ${describe(o[k])}, expected an integer >= 1`,
      );
    }
    c[k] = o[k];
  }
  for (const k of ["beta", "seed"] as const) {
    if (typeof o[k] !== "number" || !Number.isFinite(o[k])) {
      throw new Error(`tokenizer config field '${k}' is ${describe(o[k])}, expected a number`);
    }
    c[k] = o[k];
  }
  if (!Array.isArray(o.down) || o.down.length === 0) {
    throw new Error(`tokenizer config field 'down' is ${describe(o.down)}, expected a list`);
  }
  c.down = o.down.map((d: unknown, i: number) => {
    const s = (d ?? {}) as Record<string, unknown>;
    const [kernel, stride] = [s.kernel, s.stride];
    if (!Number.isInteger(kernel) || !Number.isInteger(stride) || +kernel! < 1 || +stride! < 1) {
      throw new Error(`tokenizer config field 'down[${i}]' needs integer kernel and stride >= 1`);
    }
    return { kernel, stride, pad: intList(s, `pad`, 0, 4) };
  });
  c.up = intList(o, "up", 1, (o.down as unknown[]).length);
  c.attnResolutions = intList(o, "attnResolutions", 1);
  // Configs saved before these fields existed: decoder attention as the encoder's, default init.
  c.decoderAttnResolutions = o.decoderAttnResolutions === undefined
    ? c.attnResolutions
    : intList(o, "decoderAttnResolutions", 1);
  const init = o.init ?? "default";
  if (init !== "orthogonal" && init !== "default") {
    throw new Error(
      `tokenizer config field 'init' is ${describe(init)}, expected "orthogonal" or "default"`,
    );
  }
  c.init = init;
  // Field order of the interface, so a re-saved config reads like the original.
  const order = Object.keys(PAPER_TOKENIZER) as (keyof TokenizerConfig)[];
  const cfg = Object.fromEntries(order.map((k) => [k, c[k]])) as unknown as TokenizerConfig;
  if (cfg.ch % cfg.groups !== 0) {
    throw new Error(`tokenizer config: groups ${cfg.groups} do not divide ch ${cfg.ch}`);
  }
  const grid = tokenGrid(cfg);
  const back = cfg.up.reduce((a, b) => a * b, grid);
  if (grid < 1 || back !== cfg.resolution) {
    throw new Error(
      `tokenizer config: down steps give a ${grid}x${grid} grid that up ${
        JSON.stringify(cfg.up)
      } scales to ${back}, not the resolution ${cfg.resolution}`,
    );
  }
  return cfg;
}
