/**
 * The authors' tokenizer state dict (their `Tokenizer.state_dict()`) mapped onto ours, and its
 * LPIPS part onto our LPIPS weights file.
 *
 * The encoder/decoder/quantizer names are VQGAN's in both (models/tokenizer/spec.ts), so they
 * map one to one. The configuration comes from the shapes: channels (conv_in), residual
 * blocks per level, levels, down-sampling kernels (their Downsample: kernel = scale + 1,
 * stride = scale, pad (0,1,0,1)), which levels attend (encoder and decoder separately),
 * z channels, code size and vocabulary. Not in the weights, so from their code: 84x84
 * frames, GroupNorm with 2 groups, up-sampling x7 at the lowest level then x2.
 *
 * LPIPS (`lpips.*`, their full LPIPS/VGG16 with the v0.1 linear heads):
 *   lpips.net.slice{N}.{i}.{weight,bias}   vgg.features.{i}.{weight,bias}
 *   lpips.lin{K}.model.1.weight            lin{K}.weight
 *   lpips.scaling_layer.{shift,scale}      dropped (constants our LPIPS has built in)
 *
 * @module
 */
import { PAPER_TOKENIZER, type TokenizerConfig } from "../models/tokenizer/config.ts";
import { parseTokenizerConfig } from "../models/tokenizer/config.ts";
import { tokenizerParamSpec } from "../models/tokenizer/spec.ts";
import { lpipsParameterShapes } from "../models/tokenizer/lpips.ts";
import { checkSource } from "./jowa_world_map.ts";
import { JowaImportError, type MappedTensor, OneTensorCache, type Source } from "./jowa_source.ts";

/** Options of the tokenizer import. */
export interface JowaTokenizerOptions {
  /** Frame side (default 84, their Atari frames). */
  resolution?: number;
  /** GroupNorm groups (default 2, their `Normalize`). */
  groups?: number;
}

const REQUIRED = [
  "encoder.conv_in.weight",
  "encoder.conv_out.weight",
  "embedding.weight",
  "decoder.conv_in.weight",
];

/** The tokenizer configuration their state dict describes. */
export function inferTokenizerConfig(
  file: string,
  src: Source,
  opts: JowaTokenizerOptions = {},
): TokenizerConfig {
  const missing = REQUIRED.filter((k) => !src.has(k));
  if (missing.length) {
    throw new JowaImportError(file, [
      `not a JOWA tokenizer state dict: missing ${missing.map((k) => `'${k}'`).join(", ")}`,
    ]);
  }
  const shape = (k: string) => src.get(k)!.shape;
  const count = (re: RegExp) => {
    const seen = new Set<string>();
    for (const k of src.keys()) {
      const m = re.exec(k);
      if (m) seen.add(m[1]);
    }
    return seen.size;
  };
  const levels = count(/^encoder\.down\.(\d+)\./);
  const numResBlocks = count(/^encoder\.down\.0\.block\.(\d+)\./);
  const down = [];
  for (let i = 0; i + 1 < levels; i++) {
    const k = src.get(`encoder.down.${i}.downsample.conv.weight`)?.shape[2] ?? 2;
    down.push({ kernel: k, stride: k - 1, pad: [0, 1, 0, 1] });
  }
  // Which levels attend, by resolution: encoder level i runs at enc[i] (highest first),
  // decoder level i at dec[i] (their up factors, from the lowest resolution).
  const resolution = opts.resolution ?? 84;
  const enc = [resolution];
  for (const d of down) enc.push(Math.floor((enc.at(-1)! + 1 - d.kernel) / d.stride) + 1);
  const up = down.map((_, j) => (j === 0 ? 7 : 2)); // their Decoder: x7 lowest, then x2
  const dec = [enc.at(-1)!];
  for (const f of up) dec.unshift(dec[0] * f);
  const attnAt = (prefix: string, at: number[]) =>
    at.filter((_, i) => src.has(`${prefix}.${i}.attn.0.norm.weight`));
  const raw = {
    ...PAPER_TOKENIZER,
    resolution,
    inChannels: shape("encoder.conv_in.weight")[1],
    ch: shape("encoder.conv_in.weight")[0],
    down,
    up,
    numResBlocks,
    groups: opts.groups ?? 2,
    zChannels: shape("encoder.conv_out.weight")[0],
    embedDim: shape("embedding.weight")[1],
    vocab: shape("embedding.weight")[0],
    attnResolutions: attnAt("encoder.down", enc),
    decoderAttnResolutions: attnAt("decoder.up", dec),
    init: "orthogonal",
  };
  try {
    return parseTokenizerConfig(raw);
  } catch (e) {
    throw new JowaImportError(file, [
      `its shapes give no valid tokenizer: ${(e as Error).message}`,
    ]);
  }
}

/** Every tensor of our tokenizer with its source (names are the same); checked first. */
export function planTokenizer(file: string, src: Source, cfg: TokenizerConfig): MappedTensor[] {
  const spec = tokenizerParamSpec(cfg);
  const expected = new Map(spec.map((s) => [s.name, s.shape]));
  const problems = checkSource(src, expected, [/^lpips\./]);
  if (problems.length) throw new JowaImportError(file, problems);
  const cache = new OneTensorCache(src);
  return spec.map((s) => ({
    name: s.name,
    shape: s.shape,
    read: async () => Float32Array.from(await cache.read(s.name)),
  }));
}

/** Our LPIPS name for their `lpips.*` key; null for the dropped constants; undefined if unknown. */
export function lpipsName(key: string): string | null | undefined {
  let m = /^lpips\.net\.slice[1-5]\.(\d+)\.(weight|bias)$/.exec(key);
  if (m) return `vgg.features.${m[1]}.${m[2]}`;
  m = /^lpips\.lin([0-4])\.model\.1\.weight$/.exec(key);
  if (m) return `lin${m[1]}.weight`;
  if (/^lpips\.scaling_layer\.(shift|scale)$/.test(key)) return null;
  return undefined;
}

/**
 * Our LPIPS weights (models/tokenizer/lpips.ts names) from the `lpips.*` part of their
 * tokenizer state dict; null when it has none. An incomplete or misshapen part is an error.
 */
export function planLpips(file: string, src: Source): MappedTensor[] | null {
  const keys = [...src.keys()].filter((k) => k.startsWith("lpips."));
  if (keys.length === 0) return null;
  const ours = lpipsParameterShapes();
  const theirs = new Map<string, string>(); // our name -> their key
  const problems: string[] = [];
  for (const k of keys) {
    const n = lpipsName(k);
    if (n === undefined) problems.push(`unexpected '${src.get(k)!.name}' in the LPIPS part`);
    else if (n !== null) theirs.set(n, k);
  }
  const expected = new Map<string, readonly number[]>();
  for (const [n, shape] of ours) {
    const k = theirs.get(n);
    if (k) expected.set(k, shape);
    else problems.push(`missing LPIPS tensor for our '${n}' [${shape}]`);
  }
  const sub: Source = new Map([...expected.keys()].map((k) => [k, src.get(k)!]));
  problems.push(...checkSource(sub, expected, []));
  if (problems.length) throw new JowaImportError(file, problems);
  const cache = new OneTensorCache(src);
  return [...ours].map(([n, shape]) => ({
    name: n,
    shape,
    read: async () => Float32Array.from(await cache.read(theirs.get(n)!)),
  }));
}
