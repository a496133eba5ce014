/**
 * Convolution kernels as implicit GEMMs (generator: conv_emit.ts; tiling: matmul_wgsl.ts).
 * No im2col buffer is ever materialized: the GEMM operand loads compute the address of the
 * input pixel (or of the output gradient) on the fly.
 *
 * With x [N, C, H, W], w [O, C, kh, kw], y [N, O, OH, OW] and KK = kh * kw:
 *   forward   y  = W[O, C*KK] · im2col(x)[C*KK, N*OH*OW]          (+ bias[O])
 *   input     dx = W^T-gather[C, O*KK] · col2im(dy)[O*KK, N*H*W]   (transposed convolution)
 *   weight    dw = dy[O, N*OH*OW] · im2col(x)^T[N*OH*OW, C*KK]     (split over K when few tiles)
 * The input gradient tests, per k, whether an output pixel maps onto the input pixel
 * (divisibility by the stride); for stride s about (s^2 - 1)/s^2 of its k loads are zeros.
 * Padding tests use u32 wrap-around: a coordinate below zero wraps to a huge value, so one
 * `< H` test covers both ends.
 *
 * @module
 */

import { type GemmOperand, type GemmSpec, generateImplicitGemm } from "./conv_emit.ts";
import { foldGrid } from "./matmul_grid.ts";
import {
  chooseSplit,
  chooseTile,
  type MatmulLimits,
  type MatmulSpec,
  type MatmulTile,
} from "./matmul_wgsl.ts";

/** Sizes of one 2-D convolution (NCHW, OIHW weights). */
export interface ConvGeometry {
  N: number;
  C: number;
  H: number;
  W: number;
  O: number;
  kh: number;
  kw: number;
  stride: number;
  /** Zero padding [top, bottom, left, right]. */
  pad: [number, number, number, number];
}

/** Which GEMM of the convolution. */
export type ConvKind = "forward" | "input" | "weight";

/** A generated convolution kernel and how to dispatch it. */
export interface ConvPlan {
  code: string;
  workgroups: [number, number, number];
  label: string;
  tile: MatmulTile;
  /** GEMM sizes. */
  M: number;
  N: number;
  K: number;
  /**
   * Split-K parts (weight gradient only): binding 2 is then a [parts, O, C*kh*kw] scratch
   * whose sum over the first axis is dw.
   */
  parts: number;
  /** Elements of the output binding (including the split scratch). */
  outElems: number;
}

/** Output height and width; throws when the kernel does not fit the padded input. */
export function convOutputSize(g: ConvGeometry): [number, number] {
  const [pt, pb, pl, pr] = g.pad;
  const OH = Math.floor((g.H + pt + pb - g.kh) / g.stride) + 1;
  const OW = Math.floor((g.W + pl + pr - g.kw) / g.stride) + 1;
  if (OH < 1 || OW < 1) {
    throw new Error(
      `conv2d: kernel ${g.kh}x${g.kw} does not fit input ${g.H}x${g.W} padded [${g.pad}]`,
    );
  }
  return [OH, OW];
}

/** Short label, e.g. "conv2d.forward 2x64x12x12 k3 s2 p[1,1,1,1] -> 64". */
export function convLabel(g: ConvGeometry, kind: ConvKind): string {
  return `conv2d.${kind} ${g.N}x${g.C}x${g.H}x${g.W} k${g.kh}x${g.kw} s${g.stride} ` +
    `p[${g.pad}] -> ${g.O}`;
}

const decl = (i: number, name: string, write = false) =>
  `@group(0) @binding(${i}) var<storage, ${write ? "read_write" : "read"}> ${name}: array<f32>;`;

/** The input pixel behind output (oy, ox) and kernel tap (ky, kx), with its padding test. */
function tapOf(g: ConvGeometry, v: string, oy: string, ox: string, ky: string, kx: string) {
  const [pt, , pl] = g.pad;
  const s = g.stride;
  const sub = (p: number) => (p ? ` - ${p}u` : "");
  return {
    pre: [
      `let ${v}iy = ${oy} * ${s}u + ${ky}${sub(pt)};`,
      `let ${v}ix = ${ox} * ${s}u + ${kx}${sub(pl)};`,
    ],
    cond: `${v}iy < ${g.H}u && ${v}ix < ${g.W}u`,
  };
}

/** y[n, o, oy, ox] = sum over c, ky, kx of w[o, c, ky, kx] x[n, c, oy*s + ky - pt, ...]. */
function forwardGemm(g: ConvGeometry, bias: boolean) {
  const [OH, OW] = convOutputSize(g);
  const KK = g.kh * g.kw, OHW = OH * OW, HW = g.H * g.W;
  const M = g.O, N = g.N * OHW, K = g.C * KK;
  const a: GemmOperand = {
    X: M,
    kFast: true,
    setup: (v, x) => [`let ${v}row = ${x} * ${K}u;`],
    load: (v, k) => ({ pre: [], value: `a_g[${v}row + ${k}]`, cond: null }),
  };
  const b: GemmOperand = {
    X: N,
    kFast: false,
    setup: (v, x) => [
      `let ${v}pix = ${x} % ${OHW}u;`,
      `let ${v}oy = ${v}pix / ${OW}u;`,
      `let ${v}ox = ${v}pix % ${OW}u;`,
      `let ${v}img = (${x} / ${OHW}u) * ${g.C * HW}u;`,
    ],
    load: (v, k) => {
      const tap = tapOf(
        g,
        v,
        `${v}oy`,
        `${v}ox`,
        `((${k} / ${g.kw}u) % ${g.kh}u)`,
        `(${k} % ${g.kw}u)`,
      );
      return {
        pre: tap.pre,
        value: `b_g[${v}img + (${k} / ${KK}u) * ${HW}u + ${v}iy * ${g.W}u + ${v}ix]`,
        cond: tap.cond,
      };
    },
  };
  const bindings = [decl(0, "a_g"), decl(1, "b_g"), decl(2, "c_g", true)];
  if (bias) bindings.push(decl(3, "bias_g"));
  const store = (m: string, n: string, value: string) =>
    `c_g[((${n} / ${OHW}u) * ${M}u + ${m}) * ${OHW}u + ${n} % ${OHW}u] = ${value}${
      bias ? ` + bias_g[${m}]` : ""
    };`;
  return { M, N, K, a, b, bindings, store };
}

/** dx[n, c, iy, ix] = sum over o, ky, kx of w[o, c, ky, kx] dy[n, o, (iy + pt - ky) / s, ...]. */
function inputGemm(g: ConvGeometry) {
  const [OH, OW] = convOutputSize(g);
  const KK = g.kh * g.kw, OHW = OH * OW, HW = g.H * g.W;
  const [pt, , pl] = g.pad;
  const s = g.stride;
  const M = g.C, N = g.N * HW, K = g.O * KK;
  const a: GemmOperand = {
    X: M,
    kFast: true,
    setup: (v, x) => [`let ${v}c = ${x} * ${KK}u;`],
    load: (v, k) => ({
      pre: [],
      value: `a_g[(${k} / ${KK}u) * ${g.C * KK}u + ${v}c + ${k} % ${KK}u]`,
      cond: null,
    }),
  };
  const add = (p: number) => (p ? ` + ${p}u` : "");
  const b: GemmOperand = {
    X: N,
    kFast: false,
    setup: (v, x) => [
      `let ${v}pix = ${x} % ${HW}u;`,
      `let ${v}py = ${v}pix / ${g.W}u${add(pt)};`,
      `let ${v}px = ${v}pix % ${g.W}u${add(pl)};`,
      `let ${v}img = (${x} / ${HW}u) * ${g.O * OHW}u;`,
    ],
    load: (v, k) => {
      // Output row oy reaches this pixel through tap ky when oy * s + ky = py (wraps if < 0).
      const pre = [
        `let ${v}ty = ${v}py - (${k} / ${g.kw}u) % ${g.kh}u;`,
        `let ${v}tx = ${v}px - ${k} % ${g.kw}u;`,
        `let ${v}oy = ${v}ty / ${s}u;`,
        `let ${v}ox = ${v}tx / ${s}u;`,
      ];
      const conds = [`${v}oy < ${OH}u`, `${v}ox < ${OW}u`];
      if (s > 1) conds.push(`${v}ty % ${s}u == 0u`, `${v}tx % ${s}u == 0u`);
      return {
        pre,
        value: `b_g[${v}img + (${k} / ${KK}u) * ${OHW}u + ${v}oy * ${OW}u + ${v}ox]`,
        cond: conds.join(" && "),
      };
    },
  };
  const bindings = [decl(0, "a_g"), decl(1, "b_g"), decl(2, "c_g", true)];
  const store = (m: string, n: string, value: string) =>
    `c_g[((${n} / ${HW}u) * ${M}u + ${m}) * ${HW}u + ${n} % ${HW}u] = ${value};`;
  return { M, N, K, a, b, bindings, store };
}

/** dw[o, c, ky, kx] = sum over n, oy, ox of dy[n, o, oy, ox] x[n, c, oy*s + ky - pt, ...]. */
function weightGemm(g: ConvGeometry) {
  const [OH, OW] = convOutputSize(g);
  const KK = g.kh * g.kw, OHW = OH * OW, HW = g.H * g.W;
  const M = g.O, N = g.C * KK, K = g.N * OHW;
  const a: GemmOperand = {
    X: M,
    kFast: true,
    setup: (v, x) => [`let ${v}o = ${x} * ${OHW}u;`],
    load: (v, k) => ({
      pre: [],
      value: `a_g[(${k} / ${OHW}u) * ${M * OHW}u + ${v}o + ${k} % ${OHW}u]`,
      cond: null,
    }),
  };
  const b: GemmOperand = {
    X: N,
    kFast: true,
    setup: (v, x) => [
      `let ${v}ky = (${x} / ${g.kw}u) % ${g.kh}u;`,
      `let ${v}kx = ${x} % ${g.kw}u;`,
      `let ${v}c = (${x} / ${KK}u) * ${HW}u;`,
    ],
    load: (v, k) => {
      const pix = `(${k} % ${OHW}u)`;
      const tap = tapOf(g, v, `(${pix} / ${OW}u)`, `(${pix} % ${OW}u)`, `${v}ky`, `${v}kx`);
      return {
        pre: tap.pre,
        value: `b_g[(${k} / ${OHW}u) * ${g.C * HW}u + ${v}c + ${v}iy * ${g.W}u + ${v}ix]`,
        cond: tap.cond,
      };
    },
  };
  const bindings = [decl(0, "a_g"), decl(1, "b_g"), decl(2, "c_g", true)];
  const store = (m: string, n: string, value: string) =>
    `c_g[(s * ${M}u + ${m}) * ${N}u + ${n}] = ${value};`;
  return { M, N, K, a, b, bindings, store };
}

function checkGeometry(g: ConvGeometry): void {
  for (const key of ["N", "C", "H", "W", "O", "kh", "kw", "stride"] as const) {
    const v = g[key];
    if (!Number.isInteger(v) || v < 1) throw new Error(`conv2d: ${key} must be >= 1, got ${v}`);
  }
  if (g.pad.length !== 4 || g.pad.some((p) => !Number.isInteger(p) || p < 0)) {
    throw new Error(`conv2d: padding must be 4 integers >= 0, got [${g.pad}]`);
  }
  convOutputSize(g);
}

/**
 * Plans one of the convolution's GEMMs. Bindings (in order):
 *   forward: 0 w, 1 x, 2 y (write), 3 bias (when `bias`)
 *   input:   0 w, 1 dy, 2 dx (write)
 *   weight:  0 dy, 1 x, 2 dw or the [parts, O, C*kh*kw] scratch (write)
 * `splitK` (weight only): "auto" splits the long N*OH*OW reduction when the output has too
 * few tiles to fill the GPU; a number forces about that many parts.
 */
export function planConv(
  g: ConvGeometry,
  kind: ConvKind,
  limits: MatmulLimits,
  opts: { bias?: boolean; splitK?: number | "auto"; tile?: MatmulTile } = {},
): ConvPlan {
  checkGeometry(g);
  const gemm = kind === "forward"
    ? forwardGemm(g, !!opts.bias)
    : kind === "input"
    ? inputGemm(g)
    : weightGemm(g);
  const { M, N, K } = gemm;
  const mm: MatmulSpec = {
    batch: 1,
    M,
    N,
    K,
    transA: false,
    transB: false,
    aBatchStride: 0,
    bBatchStride: 0,
  };
  let tile = opts.tile ?? chooseTile(mm, limits);
  let parts = 1;
  if (kind === "weight" && opts.splitK !== undefined) {
    if (opts.splitK === "auto") {
      const choice = chooseSplit(mm, limits);
      if (choice) {
        tile = opts.tile ?? choice.tile;
        parts = choice.parts;
      }
    } else parts = Math.max(1, Math.floor(opts.splitK));
  }
  // Ranges of whole slices; recompute parts so none is empty.
  const chunk = Math.ceil(Math.ceil(K / tile.TK) / parts) * tile.TK;
  parts = Math.ceil(K / chunk);
  const label = convLabel(g, kind) + (parts > 1 ? ` split${parts}` : "");
  const total = Math.ceil(M / tile.TM) * Math.ceil(N / tile.TN) * parts;
  const workgroups = foldGrid(total, limits.maxComputeWorkgroupsPerDimension);
  const spec: GemmSpec = {
    M,
    N,
    K,
    parts,
    chunk,
    bindings: gemm.bindings,
    store: gemm.store,
    label,
  };
  const code = generateImplicitGemm(spec, gemm.a, gemm.b, tile, workgroups);
  return { code, workgroups, label, tile, M, N, K, parts, outElems: M * N * parts };
}
