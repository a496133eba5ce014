/**
 * A float64 CPU reference of the whole VQ-VAE tokenizer (models/tokenizer/model.ts), by parameter
 * name, for model-level tests. The quantizer's stop-gradients are made explicit: given the
 * values at the base point (`StopGrad`), the loss is the surrogate whose finite differences
 * equal the straight-through gradient there:
 *   zq = z + (e0 - z0), codebook = mean((z0 - e[idx])^2), commitment = mean((z - e0)^2).
 */
import type { TokenizerConfig } from "../../models/tokenizer/config.ts";
import { levelResolutions } from "../../models/tokenizer/config.ts";
import {
  attentionRef,
  conv2dRef,
  groupNormRef,
  type Img,
  upsampleRef,
} from "./cpu_tokenizer_ops.ts";

/** Parameter values by dotted name. */
export type Params = Map<string, Float64Array>;

/** Values held fixed by the stop-gradients (from a forward at the base parameters). */
export interface StopGrad {
  indices: Int32Array;
  z0: Float64Array;
  e0: Float64Array;
}

/** What the reference computes. */
export interface CpuTokenizerOut {
  loss: number;
  reconLoss: number;
  codebookLoss: number;
  commitmentLoss: number;
  recon: Img;
  stop: StopGrad;
}

function get(p: Params, name: string): Float64Array {
  const v = p.get(name);
  if (!v) throw new Error(`cpu tokenizer: no parameter ${name}`);
  return v;
}

function conv(
  p: Params,
  name: string,
  x: Img,
  k: number,
  stride = 1,
  pad: number | number[] = 0,
): Img {
  const w = get(p, `${name}.weight`);
  const O = get(p, `${name}.bias`).length;
  const C = x.shape[1];
  const pd = typeof pad === "number" ? [pad, pad, pad, pad] : pad;
  return conv2dRef(
    x,
    w,
    [O, C, k, k],
    get(p, `${name}.bias`),
    stride,
    pd as [number, number, number, number],
  );
}

const gn = (p: Params, name: string, x: Img, groups: number) =>
  groupNormRef(x, groups, get(p, `${name}.weight`), get(p, `${name}.bias`));

function swish(x: Img): Img {
  return { data: x.data.map((v) => v / (1 + Math.exp(-v))), shape: x.shape };
}

function plus(a: Img, b: Img): Img {
  return { data: a.data.map((v, i) => v + b.data[i]), shape: a.shape };
}

function resBlock(p: Params, name: string, x: Img, groups: number): Img {
  let h = conv(p, `${name}.conv1`, swish(gn(p, `${name}.norm1`, x, groups)), 3, 1, 1);
  h = conv(p, `${name}.conv2`, swish(gn(p, `${name}.norm2`, h, groups)), 3, 1, 1);
  return plus(x, h);
}

function attnBlock(p: Params, name: string, x: Img, groups: number): Img {
  const [N, C, H, W] = x.shape;
  const T = H * W;
  const h = gn(p, `${name}.norm`, x, groups);
  const [q, k, v] = ["q", "k", "v"].map((s) => conv(p, `${name}.${s}`, h, 1));
  const out = new Float64Array(x.data.length);
  const rows = (img: Img, n: number) => {
    const r = new Float64Array(T * C);
    for (let c = 0; c < C; c++) {
      for (let t = 0; t < T; t++) r[t * C + c] = img.data[(n * C + c) * T + t];
    }
    return r;
  };
  for (let n = 0; n < N; n++) {
    const a = attentionRef(rows(q, n), rows(k, n), rows(v, n), T, C);
    for (let c = 0; c < C; c++) for (let t = 0; t < T; t++) out[(n * C + c) * T + t] = a[t * C + c];
  }
  return plus(x, conv(p, `${name}.proj_out`, { data: out, shape: x.shape }, 1));
}

function level(
  p: Params,
  name: string,
  x: Img,
  blocks: number,
  attn: boolean,
  groups: number,
): Img {
  let h = x;
  for (let i = 0; i < blocks; i++) {
    h = resBlock(p, `${name}.block.${i}`, h, groups);
    if (attn) h = attnBlock(p, `${name}.attn.${i}`, h, groups);
  }
  return h;
}

function mid(p: Params, name: string, x: Img, groups: number): Img {
  const h = attnBlock(p, `${name}.attn_1`, resBlock(p, `${name}.block_1`, x, groups), groups);
  return resBlock(p, `${name}.block_2`, h, groups);
}

/** The encoder and pre_quant_conv: x [N, C, R, R] -> z [N, E, g, g]. */
export function cpuEncode(p: Params, cfg: TokenizerConfig, x: Img): Img {
  const res = levelResolutions(cfg);
  let h = conv(p, "encoder.conv_in", x, 3, 1, 1);
  res.forEach((r, i) => {
    h = level(
      p,
      `encoder.down.${i}`,
      h,
      cfg.numResBlocks,
      cfg.attnResolutions.includes(r),
      cfg.groups,
    );
    if (i < cfg.down.length) {
      const d = cfg.down[i];
      h = conv(p, `encoder.down.${i}.downsample.conv`, h, d.kernel, d.stride, d.pad);
    }
  });
  h = mid(p, "encoder.mid", h, cfg.groups);
  h = conv(p, "encoder.conv_out", swish(gn(p, "encoder.norm_out", h, cfg.groups)), 3, 1, 1);
  return conv(p, "pre_quant_conv", h, 1);
}

/** post_quant_conv and the decoder: zq [N, E, g, g] -> [N, C, R, R]. */
export function cpuDecode(p: Params, cfg: TokenizerConfig, zq: Img): Img {
  let h = conv(p, "decoder.conv_in", conv(p, "post_quant_conv", zq, 1), 3, 1, 1);
  h = mid(p, "decoder.mid", h, cfg.groups);
  let r = h.shape[2];
  for (let i = cfg.up.length; i >= 0; i--) {
    h = level(
      p,
      `decoder.up.${i}`,
      h,
      cfg.numResBlocks + 1,
      cfg.decoderAttnResolutions.includes(r),
      cfg.groups,
    );
    if (i > 0) {
      const f = cfg.up[cfg.up.length - i];
      h = conv(p, `decoder.up.${i}.upsample.conv`, upsampleRef(h, f, f), 3, 1, 1);
      r *= f;
    }
  }
  return conv(p, "decoder.conv_out", swish(gn(p, "decoder.norm_out", h, cfg.groups)), 3, 1, 1);
}

/** Full forward and loss (L1 + codebook + beta * commitment), frames x in [-1, 1]. */
export function cpuTokenizer(
  p: Params,
  cfg: TokenizerConfig,
  x: Img,
  sg?: StopGrad,
): CpuTokenizerOut {
  const z = cpuEncode(p, cfg, x);
  const [N, E, g] = z.shape;
  const T = g * g;
  // Rows n*T + t of the latent, as the GPU quantizes them.
  const rows = new Float64Array(N * T * E);
  for (let n = 0; n < N; n++) {
    for (let e = 0; e < E; e++) {
      for (let t = 0; t < T; t++) rows[(n * T + t) * E + e] = z.data[(n * E + e) * T + t];
    }
  }
  const book = get(p, "embedding.weight");
  const V = book.length / E;
  let stop = sg;
  if (!stop) {
    const indices = new Int32Array(N * T);
    const e0 = new Float64Array(rows.length);
    for (let i = 0; i < N * T; i++) {
      let best = Infinity;
      for (let v = 0; v < V; v++) {
        let d = 0;
        for (let k = 0; k < E; k++) d += (rows[i * E + k] - book[v * E + k]) ** 2;
        if (d < best) {
          best = d;
          indices[i] = v;
        }
      }
      for (let k = 0; k < E; k++) e0[i * E + k] = book[indices[i] * E + k];
    }
    stop = { indices, z0: rows.slice(), e0 };
  }
  let codebookLoss = 0, commitmentLoss = 0;
  const zq = new Float64Array(z.data.length);
  for (let i = 0; i < N * T; i++) {
    const n = Math.floor(i / T), t = i % T;
    for (let k = 0; k < E; k++) {
      const j = i * E + k;
      const e = book[stop.indices[i] * E + k];
      codebookLoss += (stop.z0[j] - e) ** 2;
      commitmentLoss += (rows[j] - stop.e0[j]) ** 2;
      zq[(n * E + k) * T + t] = rows[j] + (stop.e0[j] - stop.z0[j]);
    }
  }
  codebookLoss /= rows.length;
  commitmentLoss /= rows.length;
  const recon = cpuDecode(p, cfg, { data: zq, shape: z.shape });
  let reconLoss = 0;
  for (let i = 0; i < x.data.length; i++) reconLoss += Math.abs(x.data[i] - recon.data[i]);
  reconLoss /= x.data.length;
  return {
    loss: reconLoss + codebookLoss + cfg.beta * commitmentLoss,
    reconLoss,
    codebookLoss,
    commitmentLoss,
    recon,
    stop,
  };
}
