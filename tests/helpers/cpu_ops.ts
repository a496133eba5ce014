/**
 * Float64 CPU references of the elementwise, reduction and layout ops, written the plain way
 * (coordinates in, coordinates out) so they share no index math with the WGSL generators.
 */
import { numel } from "./reference.ts";

/** Row-major strides of a shape. */
export function strides(shape: readonly number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

/** Coordinates of flat index `i` in `shape`. */
export function coords(i: number, shape: readonly number[]): number[] {
  const c = new Array(shape.length).fill(0);
  for (let k = shape.length - 1; k >= 0; k--) {
    c[k] = i % shape[k];
    i = Math.floor(i / shape[k]);
  }
  return c;
}

/** Flat index of coordinates `c` in `shape`. */
export function flat(c: readonly number[], shape: readonly number[]): number {
  let i = 0;
  for (let k = 0; k < shape.length; k++) i = i * shape[k] + c[k];
  return i;
}

/** Numpy broadcast of several shapes (throws when they do not broadcast). */
export function broadcastShape(...shapes: (readonly number[])[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array(rank).fill(1);
  for (const s of shapes) {
    for (let k = 0; k < s.length; k++) {
      const o = rank - s.length + k;
      if (s[k] === 1) continue;
      if (out[o] !== 1 && out[o] !== s[k]) throw new Error(`no broadcast: ${shapes}`);
      out[o] = s[k];
    }
  }
  return out;
}

/** Elementwise `fn` over inputs broadcast to `outShape` (default: their broadcast). */
export function broadcastMap(
  inputs: readonly { data: ArrayLike<number>; shape: readonly number[] }[],
  fn: (...v: number[]) => number,
  outShape: readonly number[] = broadcastShape(...inputs.map((x) => x.shape)),
): Float64Array {
  const out = new Float64Array(numel(outShape));
  const vals = new Array(inputs.length);
  for (let i = 0; i < out.length; i++) {
    const c = coords(i, outShape);
    inputs.forEach((x, j) => {
      const off = outShape.length - x.shape.length;
      const ci = x.shape.map((d, k) => (d === 1 ? 0 : c[k + off]));
      vals[j] = x.data[flat(ci, x.shape)];
    });
    out[i] = fn(...vals);
  }
  return out;
}

const GELU_C = Math.sqrt(2 / Math.PI);
const softplus = (x: number) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));

/**
 * erf in float64, written independently of the kernel's Chebyshev fit: the Maclaurin series
 * for |x| < 2.5, the continued fraction of erfc beyond (both accurate to ~1e-14).
 */
export function erf64(x: number): number {
  return 1 - erfc64(x);
}

/** erfc in float64 (see {@link erf64}); keeps its relative accuracy in the tails. */
export function erfc64(x: number): number {
  const a = Math.abs(x);
  if (a < 2.5) {
    let term = a;
    let s = a;
    for (let n = 1; n < 80; n++) {
      term *= -a * a / n;
      s += term / (2 * n + 1);
    }
    const e = (2 / Math.sqrt(Math.PI)) * s;
    return x >= 0 ? 1 - e : 1 + e;
  }
  // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + ...)))), evaluated backward.
  let f = a;
  for (let k = 120; k >= 1; k--) f = a + (k / 2) / f;
  const r = Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  return x >= 0 ? r : 2 - r;
}

/** The exact GELU x * Phi(x) in float64. */
export const geluErf64 = (x: number): number => 0.5 * x * erfc64(-x / Math.SQRT2);

/** The unary ops in float64. */
export const UNARY_REF: Record<string, (x: number) => number> = {
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  tanh: Math.tanh,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  relu: (x) => Math.max(x, 0),
  abs: Math.abs,
  gelu: (x) => 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x ** 3))),
  gelu_erf: (x) => geluErf64(x),
  silu: (x) => x / (1 + Math.exp(-x)),
  mish: (x) => x * Math.tanh(softplus(x)),
};

/** The binary ops in float64. */
export const BINARY_REF: Record<string, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
};

/** Reduction kinds of the engine. */
export type RefReduce = "sum" | "mean" | "max" | "min" | "argmax";

/** Reduce `x` of `shape` along `axis` (argmax: first maximum). Output drops the axis. */
export function reduceRef(
  x: ArrayLike<number>,
  shape: readonly number[],
  axis: number,
  kind: RefReduce,
): Float64Array {
  const ax = axis < 0 ? axis + shape.length : axis;
  const outShape = shape.filter((_, k) => k !== ax);
  const out = new Float64Array(numel(outShape));
  const R = shape[ax];
  for (let o = 0; o < out.length; o++) {
    const c = coords(o, outShape);
    let acc = kind === "max" || kind === "argmax" ? -Infinity : kind === "min" ? Infinity : 0;
    let idx = 0;
    for (let r = 0; r < R; r++) {
      const v = x[flat([...c.slice(0, ax), r, ...c.slice(ax)], shape)];
      if (kind === "sum" || kind === "mean") acc += v;
      else if (kind === "max") acc = Math.max(acc, v);
      else if (kind === "min") acc = Math.min(acc, v);
      else if (v > acc) [acc, idx] = [v, r];
    }
    out[o] = kind === "mean" ? acc / R : kind === "argmax" ? idx : acc;
  }
  return out;
}

/** Output shape of a reduction. */
export function reducedShape(shape: readonly number[], axis: number, keepDims: boolean): number[] {
  const ax = axis < 0 ? axis + shape.length : axis;
  return keepDims ? shape.map((d, k) => (k === ax ? 1 : d)) : shape.filter((_, k) => k !== ax);
}

/** out[c] = x[c permuted back]: out.shape[k] = shape[perm[k]]. */
export function permuteRef(
  x: ArrayLike<number>,
  shape: readonly number[],
  perm: readonly number[],
): Float64Array {
  const outShape = perm.map((p) => shape[p]);
  const out = new Float64Array(numel(shape));
  for (let i = 0; i < out.length; i++) {
    const c = coords(i, outShape);
    const src = new Array(shape.length);
    perm.forEach((p, k) => (src[p] = c[k]));
    out[i] = x[flat(src, shape)];
  }
  return out;
}

/** Elements [start, end) along `axis`. */
export function sliceRef(
  x: ArrayLike<number>,
  shape: readonly number[],
  axis: number,
  start: number,
  end: number,
): Float64Array {
  const outShape = shape.map((d, k) => (k === axis ? end - start : d));
  const out = new Float64Array(numel(outShape));
  for (let i = 0; i < out.length; i++) {
    const c = coords(i, outShape);
    c[axis] += start;
    out[i] = x[flat(c, shape)];
  }
  return out;
}

/** Zero-pad `before`/`after` along `axis`. */
export function padRef(
  x: ArrayLike<number>,
  shape: readonly number[],
  axis: number,
  before: number,
  after: number,
): Float64Array {
  const outShape = shape.map((d, k) => (k === axis ? d + before + after : d));
  const out = new Float64Array(numel(outShape));
  for (let i = 0; i < out.length; i++) {
    const c = coords(i, outShape);
    c[axis] -= before;
    out[i] = c[axis] >= 0 && c[axis] < shape[axis] ? x[flat(c, shape)] : 0;
  }
  return out;
}

/** Join along `axis`. */
export function concatRef(
  xs: readonly ArrayLike<number>[],
  shapes: readonly (readonly number[])[],
  axis: number,
): Float64Array {
  const total = shapes.reduce((a, s) => a + s[axis], 0);
  const outShape = shapes[0].map((d, k) => (k === axis ? total : d));
  const out = new Float64Array(numel(outShape));
  for (let i = 0; i < out.length; i++) {
    const c = coords(i, outShape);
    let j = 0;
    while (c[axis] >= shapes[j][axis]) c[axis] -= shapes[j++][axis];
    out[i] = xs[j][flat(c, shapes[j])];
  }
  return out;
}
