/**
 * Convolution kernels as implicit GEMMs (generator: emit.ts; tiling: ../matmul/plan.ts).
 * No im2col buffer is ever materialized: the GEMM operand loads compute the address of the
 * input pixel (or of the output gradient) on the fly.
 *
 * With x [N, C, H, W], w [O, C, kh, kw], y [N, O, OH, OW] and KK = kh * kw:
 *   forward   y  = W[O, C*KK] · im2col(x)[C*KK, N*OH*OW]          (+ bias[O])
 *   input     dx = W^T-gather[C, O*KK] · col2im(dy)[O*KK, N*H*W]   (transposed convolution)
 *   weight    dw = dy[O, N*OH*OW] · im2col(x)^T[N*OH*OW, C*KK]     (split over K when few tiles)
 * A strided input gradient is split into stride x stride phases so no zero taps are
 * multiplied (see `inputPhaseGemm`); with stride 1 each k tests whether the output pixel
 * exists (padding).
 * Padding tests use u32 wrap-around: a coordinate below zero wraps to a huge value, so one
 * `< H` test covers both ends.
 *
 * @module
 */

import { type GemmOperand, type GemmSpec, generateImplicitGemm } from "./emit.ts";
import { grid } from "../wgsl.ts";
import {
  chooseSplit,
  chooseTile,
  MATMUL_TILES,
  type MatmulLimits,
  type MatmulSpec,
  type MatmulTile,
} from "../matmul/plan.ts";

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

/** Extra short-row tiles for narrow layers (8 channels: the matmul's shortest is 16). */
const NARROW_TILES: MatmulTile[] = [
  { TM: 8, TN: 128, TK: 16, RM: 4, RN: 4 },
  { TM: 8, TN: 64, TK: 16, RM: 4, RN: 4 },
  { TM: 8, TN: 32, TK: 16, RM: 4, RN: 4 },
];
/** The batch a shape-generic forward plan's tile is chosen for (evaluation's environments). */
const DYNAMIC_BATCH = 16;
/** Enough workgroups to keep a large GPU busy (as the matmul planner). */
const TARGET_WORKGROUPS = 256;

/**
 * Tile for a convolution GEMM with slice depth TK. Unlike the matmul planner, a tile is never
 * taller than the channel count rounded up to a power of two (64 channels must not run in
 * half-empty 128-row tiles), and workgroup memory is checked with the real TK (18 for 3x3).
 * Among the tiles that fit, the most work per thread wins once the grid has enough
 * workgroups; otherwise the tile with the most workgroups.
 */
export function chooseConvTile(mm: MatmulSpec, limits: MatmulLimits, TK = 16): MatmulTile {
  let rows = 8;
  while (rows < mm.M && rows < 128) rows *= 2;
  let cols = 16;
  while (cols < mm.N && cols < 128) cols *= 2;
  const fits = (t: MatmulTile) =>
    t.TM <= rows && t.TN <= cols &&
    (t.TM / t.RM) * (t.TN / t.RN) <= limits.maxComputeInvocationsPerWorkgroup &&
    (t.TM + t.TN) * TK * 4 <= limits.maxComputeWorkgroupStorageSize;
  const candidates = [...MATMUL_TILES, ...NARROW_TILES].filter(fits);
  if (candidates.length === 0) return chooseTile(mm, limits);
  const count = (t: MatmulTile) => Math.ceil(mm.M / t.TM) * Math.ceil(mm.N / t.TN);
  // Most outputs per thread first, then the taller/wider tile (fewer redundant loads).
  candidates.sort((a, b) => b.RM * b.RN - a.RM * a.RN || b.TM * b.TN - a.TM * a.TN);
  const full = candidates.find((t) => count(t) >= TARGET_WORKGROUPS);
  if (full) return full;
  return candidates.reduce((best, t) => (count(t) > count(best) ? t : best));
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

/** Slice depth: a multiple of the taps per channel when they are few (tap math hoisted). */
export function sliceDepth(taps: number): number {
  return taps <= 16 ? taps * Math.max(1, Math.round(16 / taps)) : 16;
}

/** y[n, o, oy, ox] = sum over c, ky, kx of w[o, c, ky, kx] x[n, c, oy*s + ky - pt, ...]. */
function forwardGemm(g: ConvGeometry, bias: boolean, TK: number, dynamicN = false) {
  const [OH, OW] = convOutputSize(g);
  const KK = g.kh * g.kw, OHW = OH * OW, HW = g.H * g.W;
  const [pt, , pl] = g.pad;
  const s = g.stride;
  const M = g.O, N = g.N * OHW, K = g.C * KK;
  const hoist = TK % KK === 0;
  const a: GemmOperand = {
    X: M,
    kFast: true,
    setup: (v, x) => [`let ${v}row = ${x} * ${K}u;`],
    load: (v, k) => ({ pre: [], value: `a_g[${v}row + ${k}]`, cond: null }),
  };
  // The tap (ky, kx) of k: fixed per load unit when TK is a multiple of KK.
  const tap = (v: string, k: string) => [
    `let ${v}ky = (${k} / ${g.kw}u) % ${g.kh}u;`,
    `let ${v}kx = ${k} % ${g.kw}u;`,
    `let ${v}iy = ${v}oy * ${s}u + ${v}ky${sub(pt)};`,
    `let ${v}ix = ${v}ox * ${s}u + ${v}kx${sub(pl)};`,
    `let ${v}pad = ${v}iy < ${g.H}u && ${v}ix < ${g.W}u;`,
    `let ${v}sp = ${v}img + ${v}iy * ${g.W}u + ${v}ix;`,
  ];
  const b: GemmOperand = {
    X: dynamicN ? "dims.x" : N,
    kFast: false,
    setup: (v, x, uk) => [
      `let ${v}pix = ${x} % ${OHW}u;`,
      `let ${v}oy = ${v}pix / ${OW}u;`,
      `let ${v}ox = ${v}pix % ${OW}u;`,
      `let ${v}img = (${x} / ${OHW}u) * ${g.C * HW}u;`,
      ...(hoist ? [...tap(v, uk), `let ${v}c0 = ${uk} / ${KK}u;`] : []),
    ],
    load: (v, k, k0) =>
      hoist
        ? {
          pre: [],
          value: `b_g[${v}sp + (${k0} / ${KK}u + ${v}c0) * ${HW}u]`,
          cond: `${v}pad`,
        }
        : { pre: tap(v, k), value: `b_g[${v}sp + (${k} / ${KK}u) * ${HW}u]`, cond: `${v}pad` },
  };
  const bindings = [decl(0, "a_g"), decl(1, "b_g"), decl(2, "c_g", true)];
  if (bias) bindings.push(decl(3, "bias_g"));
  if (dynamicN) {
    bindings.push(`@group(0) @binding(${bindings.length}) var<uniform> dims: vec4<u32>;`);
  }
  const store = (m: string, n: string, value: string) =>
    `c_g[((${n} / ${OHW}u) * ${M}u + ${m}) * ${OHW}u + ${n} % ${OHW}u] = ${value}${
      bias ? ` + bias_g[${m}]` : ""
    };`;
  return { M, N, K, a, b, bindings, store };
}

/** " - p" (or nothing) and " + p" (or nothing) in u32 WGSL. */
const sub = (p: number) => (p ? ` - ${p}u` : "");
const add = (p: number) => (p ? ` + ${p}u` : "");

/** dx[n, c, iy, ix] = sum over o, ky, kx of w[o, c, ky, kx] dy[n, o, (iy + pt - ky) / s, ...]. */
function inputGemm(g: ConvGeometry, TK: number) {
  const [OH, OW] = convOutputSize(g);
  const KK = g.kh * g.kw, OHW = OH * OW, HW = g.H * g.W;
  const [pt, , pl] = g.pad;
  const s = g.stride;
  const M = g.C, N = g.N * HW, K = g.O * KK;
  const hoist = TK % KK === 0;
  const a: GemmOperand = {
    X: M,
    kFast: true,
    setup: (v, x, uk) => [
      `let ${v}c = ${x} * ${KK}u;`,
      ...(hoist ? [`let ${v}r = ${uk} % ${KK}u;`, `let ${v}o0 = ${uk} / ${KK}u;`] : []),
    ],
    load: (v, k, k0) => ({
      pre: [],
      value: hoist
        ? `a_g[(${k0} / ${KK}u + ${v}o0) * ${g.C * KK}u + ${v}c + ${v}r]`
        : `a_g[(${k} / ${KK}u) * ${g.C * KK}u + ${v}c + ${k} % ${KK}u]`,
      cond: null,
    }),
  };
  // Output row oy reaches input row py = iy + pt through tap ky when oy * s + ky = py; a
  // negative py - ky wraps around and fails the oy < OH test.
  const tap = (v: string, k: string) => {
    const out = [
      `let ${v}ty = ${v}py - (${k} / ${g.kw}u) % ${g.kh}u;`,
      `let ${v}tx = ${v}px - ${k} % ${g.kw}u;`,
      `let ${v}oy = ${v}ty / ${s}u;`,
      `let ${v}ox = ${v}tx / ${s}u;`,
    ];
    const conds = [`${v}oy < ${OH}u`, `${v}ox < ${OW}u`];
    if (s > 1) conds.push(`${v}ty % ${s}u == 0u`, `${v}tx % ${s}u == 0u`);
    out.push(`let ${v}hit = ${conds.join(" && ")};`);
    out.push(`let ${v}sp = ${v}img + ${v}oy * ${OW}u + ${v}ox;`);
    return out;
  };
  const b: GemmOperand = {
    X: N,
    kFast: false,
    setup: (v, x, uk) => [
      `let ${v}pix = ${x} % ${HW}u;`,
      `let ${v}py = ${v}pix / ${g.W}u${add(pt)};`,
      `let ${v}px = ${v}pix % ${g.W}u${add(pl)};`,
      `let ${v}img = (${x} / ${HW}u) * ${g.O * OHW}u;`,
      ...(hoist ? [...tap(v, uk), `let ${v}o0 = ${uk} / ${KK}u;`] : []),
    ],
    load: (v, k, k0) =>
      hoist
        ? {
          pre: [],
          value: `b_g[${v}sp + (${k0} / ${KK}u + ${v}o0) * ${OHW}u]`,
          cond: `${v}hit`,
        }
        : { pre: tap(v, k), value: `b_g[${v}sp + (${k} / ${KK}u) * ${OHW}u]`, cond: `${v}hit` },
  };
  const bindings = [decl(0, "a_g"), decl(1, "b_g"), decl(2, "c_g", true)];
  const store = (m: string, n: string, value: string) =>
    `c_g[((${n} / ${HW}u) * ${M}u + ${m}) * ${HW}u + ${n} % ${HW}u] = ${value};`;
  return { M, N, K, a, b, bindings, store };
}

/**
 * The input gradient of a strided convolution without its zero taps ("sub-pixel"
 * decomposition). Input pixels fall into s*s phases by (iy + pt) mod s and (ix + pl) mod s;
 * within a phase (ry, rx) only taps ky = ry + s*a, kx = rx + s*b reach the pixel, from
 * output (jy - a, jx - b) where iy + pt = s*jy + ry. So the GEMM has K = O * ceil(kh/s) *
 * ceil(kw/s) instead of O * kh * kw (4 instead of 64 taps for k8 s7). Its N axis holds the
 * phases one after another, each padded to whole TN tiles so a workgroup's phase (which the
 * weight loads depend on) is uniform.
 */
function inputPhaseGemm(g: ConvGeometry, TK: number, TN: number) {
  const [OH, OW] = convOutputSize(g);
  const [pt, , pl] = g.pad;
  const s = g.stride;
  const Ty = Math.ceil(g.kh / s), Tx = Math.ceil(g.kw / s), KP = Ty * Tx;
  const Jy = Math.ceil((g.H + pt) / s), Jx = Math.ceil((g.W + pl) / s);
  const P = g.N * Jy * Jx; // virtual pixels per phase
  const NP = Math.ceil(P / TN) * TN;
  const OHW = OH * OW, KK = g.kh * g.kw;
  const M = g.C, N = s * s * NP, K = g.O * KP;
  const hoist = TK % KP === 0;
  // Tap (a, b) of k and the kernel position it means in this workgroup's phase.
  const tapA = (v: string, k: string) => [
    `let ${v}ky = ${v}ry + ${s}u * ((${k} % ${KP}u) / ${Tx}u);`,
    `let ${v}kx = ${v}rx + ${s}u * (${k} % ${Tx}u);`,
    `let ${v}in = ${v}ky < ${g.kh}u && ${v}kx < ${g.kw}u;`,
    `let ${v}wo = ${v}c + ${v}ky * ${g.kw}u + ${v}kx;`,
  ];
  const a: GemmOperand = {
    X: M,
    kFast: true,
    setup: (v, x, uk) => [
      `let ${v}ph = n0 / ${NP}u;`,
      `let ${v}ry = ${v}ph / ${s}u;`,
      `let ${v}rx = ${v}ph % ${s}u;`,
      `let ${v}c = ${x} * ${KK}u;`,
      ...(hoist ? [...tapA(v, uk), `let ${v}o0 = ${uk} / ${KP}u;`] : []),
    ],
    load: (v, k, k0) => {
      const o = hoist ? `(${k0} / ${KP}u + ${v}o0)` : `(${k} / ${KP}u)`;
      return {
        pre: hoist ? [] : tapA(v, k),
        value: `a_g[${o} * ${g.C * KK}u + ${v}wo]`,
        cond: `${v}in`,
      };
    },
  };
  // Output (jy - a, jx - b) of image img; a negative difference wraps and fails the test.
  const tapB = (v: string, k: string) => [
    `let ${v}oy = ${v}jy - (${k} % ${KP}u) / ${Tx}u;`,
    `let ${v}ox = ${v}jx - ${k} % ${Tx}u;`,
    `let ${v}hit = ${v}ok2 && ${v}oy < ${OH}u && ${v}ox < ${OW}u;`,
    `let ${v}sp = ${v}img + ${v}oy * ${OW}u + ${v}ox;`,
  ];
  const b: GemmOperand = {
    X: N,
    kFast: false,
    setup: (v, x, uk) => [
      `let ${v}w = ${x} % ${NP}u;`,
      `let ${v}ok2 = ${v}w < ${P}u;`,
      `let ${v}jy = (${v}w / ${Jx}u) % ${Jy}u;`,
      `let ${v}jx = ${v}w % ${Jx}u;`,
      `let ${v}img = (${v}w / ${Jy * Jx}u) * ${g.O * OHW}u;`,
      ...(hoist ? [...tapB(v, uk), `let ${v}o0 = ${uk} / ${KP}u;`] : []),
    ],
    load: (v, k, k0) => {
      const o = hoist ? `(${k0} / ${KP}u + ${v}o0)` : `(${k} / ${KP}u)`;
      return {
        pre: hoist ? [] : tapB(v, k),
        value: `b_g[${v}sp + ${o} * ${OHW}u]`,
        cond: `${v}hit`,
      };
    },
  };
  const bindings = [decl(0, "a_g"), decl(1, "b_g"), decl(2, "c_g", true)];
  // Virtual pixels outside the image (padding rows, tile padding) are not stored.
  const store = (m: string, n: string, value: string) =>
    `{ let ph = ${n} / ${NP}u; let w = ${n} % ${NP}u; ` +
    `let iy = ${s}u * ((w / ${Jx}u) % ${Jy}u) + ph / ${s}u${sub(pt)}; ` +
    `let ix = ${s}u * (w % ${Jx}u) + ph % ${s}u${sub(pl)}; ` +
    `if (w < ${P}u && iy < ${g.H}u && ix < ${g.W}u) { ` +
    `c_g[(((w / ${Jy * Jx}u) * ${M}u + ${m}) * ${g.H}u + iy) * ${g.W}u + ix] = ${value}; } }`;
  return { M, N, K, a, b, bindings, store };
}

/** dw[o, c, ky, kx] = sum over n, oy, ox of dy[n, o, oy, ox] x[n, c, oy*s + ky - pt, ...]. */
function weightGemm(g: ConvGeometry) {
  const [OH, OW] = convOutputSize(g);
  const KK = g.kh * g.kw, OHW = OH * OW, HW = g.H * g.W;
  const [pt, , pl] = g.pad;
  const s = g.stride;
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
      `let ${v}ky = (${x} / ${g.kw}u) % ${g.kh}u${sub(pt)};`,
      `let ${v}kx = ${x} % ${g.kw}u${sub(pl)};`,
      `let ${v}c = (${x} / ${KK}u) * ${HW}u;`,
    ],
    load: (v, k) => ({
      pre: [
        `let ${v}pix = ${k} % ${OHW}u;`,
        `let ${v}iy = (${v}pix / ${OW}u) * ${s}u + ${v}ky;`,
        `let ${v}ix = (${v}pix % ${OW}u) * ${s}u + ${v}kx;`,
      ],
      value: `b_g[(${k} / ${OHW}u) * ${g.C * HW}u + ${v}c + ${v}iy * ${g.W}u + ${v}ix]`,
      cond: `${v}iy < ${g.H}u && ${v}ix < ${g.W}u`,
    }),
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
  opts: { bias?: boolean; splitK?: number | "auto"; tile?: MatmulTile; dynamicN?: boolean } = {},
): ConvPlan {
  checkGeometry(g);
  const dyn = !!opts.dynamicN;
  if (dyn && kind !== "forward") throw new Error("conv2d: only the forward takes a generic batch");
  const KK = g.kh * g.kw;
  const phases = kind === "input" && g.stride > 1;
  const taps = phases ? Math.ceil(g.kh / g.stride) * Math.ceil(g.kw / g.stride) : KK;
  const TK = kind === "weight" ? 16 : sliceDepth(taps);
  const gemmOf = (TN: number) =>
    kind === "forward"
      ? forwardGemm(g, !!opts.bias, TK, dyn)
      : phases
      ? inputPhaseGemm(g, TK, TN)
      : kind === "input"
      ? inputGemm(g, TK)
      : weightGemm(g);
  const mmOf = (M: number, N: number, K: number): MatmulSpec => ({
    batch: 1,
    M,
    N,
    K,
    transA: false,
    transB: false,
    aBatchStride: 0,
    bBatchStride: 0,
  });
  // The phase GEMM's N depends on the tile (padding); size the tile on the unpadded sizes.
  // A generic batch sizes the tile for DYNAMIC_BATCH images, whatever this call's batch.
  const rough = phases
    ? mmOf(g.C, g.N * g.H * g.W, g.O * taps)
    : dyn
    ? (({ M, N, K }) => mmOf(M, (N / g.N) * DYNAMIC_BATCH, K))(gemmOf(0))
    : (({ M, N, K }) => mmOf(M, N, K))(gemmOf(0));
  // The slice depth is the convolution's own choice, also for a forced tile.
  let tile = { ...(opts.tile ?? chooseConvTile(rough, limits, TK)), TK };
  const gemm = gemmOf(tile.TN);
  const { M, N, K } = gemm;
  const mm = mmOf(M, N, K);
  let parts = 1;
  if (kind === "weight" && opts.splitK !== undefined) {
    if (opts.splitK === "auto") {
      const choice = chooseSplit(mm, limits);
      if (choice) {
        tile = { ...(opts.tile ?? choice.tile), TK };
        parts = choice.parts;
      }
    } else parts = Math.max(1, Math.floor(opts.splitK));
  }
  // Ranges of whole slices; recompute parts so none is empty.
  const chunk = Math.ceil(Math.ceil(K / tile.TK) / parts) * tile.TK;
  parts = Math.ceil(K / chunk);
  const label = (dyn ? convLabel({ ...g, N: 0 }, kind).replace(" 0x", " *x") : convLabel(g, kind)) +
    (parts > 1 ? ` split${parts}` : "");
  const total = Math.ceil(M / tile.TM) * Math.ceil(N / tile.TN) * parts;
  const workgroups = grid(total, limits.maxComputeWorkgroupsPerDimension);
  const spec: GemmSpec = {
    M,
    N,
    K,
    parts,
    chunk,
    bindings: gemm.bindings,
    store: gemm.store,
    label,
    dynamicN: dyn,
  };
  const code = generateImplicitGemm(spec, gemm.a, gemm.b, tile, workgroups);
  const outElems = kind === "input" ? g.N * g.C * g.H * g.W : M * N * parts;
  return { code, workgroups, label, tile, M, N, K, parts, outElems };
}
