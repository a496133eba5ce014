/**
 * Reductions along one axis, viewed as [outer, R, inner]: a workgroup tree per output when
 * the axis is innermost (inner = 1), one thread per output looping over R otherwise (threads
 * then read adjacent `inner` elements, which coalesces).
 */
import { isGradEnabled, record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { Tensor } from "../core/tensor.ts";
import { binding } from "../codegen/wgsl.ts";
import { dimsBuffer, dimsDecl, GENERIC_BUILTINS, GENERIC_LINEAR, genericKernel } from "./dims.ts";
import { mapKernel } from "./map.ts";

/** Which reduction. argmax gives i32 indices (first maximum on ties). */
export type ReduceKind = "sum" | "mean" | "max" | "min" | "argmax";

const WG = 256;

function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) {
    throw new Error(`${op}: axis ${axis} out of range for rank ${rank}`);
  }
  return a;
}

function combine(kind: ReduceKind): { init: string; step: (acc: string, v: string) => string } {
  switch (kind) {
    case "sum":
    case "mean":
      return { init: "0.0", step: (acc, v) => `${acc} + ${v}` };
    // max/min start from the row's first element, not from -/+FLT_MAX: a row of infinities
    // must reduce to infinity (WGSL has no infinity literal), and for argmax a first element
    // equal to the maximum keeps index 0 (first on ties).
    case "max":
    case "argmax":
      return { init: "f32(x[base])", step: (acc, v) => `max(${acc}, ${v})` };
    case "min":
      return { init: "f32(x[base])", step: (acc, v) => `min(${acc}, ${v})` };
  }
}

/** Raw reduction kernel (no gradient). Output shape drops (or keeps as 1) the axis. */
export function reduceKernel(x: Tensor, axis: number, kind: ReduceKind, keepDims = false): Tensor {
  const ax = normAxis(kind, axis, x.rank);
  const R = x.shape[ax];
  const outer = x.shape.slice(0, ax).reduce((a, b) => a * b, 1);
  const inner = x.shape.slice(ax + 1).reduce((a, b) => a * b, 1);
  const outShape = keepDims
    ? x.shape.map((d, i) => (i === ax ? 1 : d))
    : x.shape.filter((_, i) => i !== ax);
  const outDtype = kind === "argmax" ? "i32" : "f32";
  // Checked before allocating, so a failed call leaks no buffer.
  if (R === 0 && outer * inner > 0) throw new Error(`${kind}: cannot reduce an empty axis`);
  void x.buffer; // a disposed input throws before the output is allocated
  const out = Tensor.empty(outShape, outDtype);
  if (out.size === 0) return out;
  // The outer extent (rows before the axis) is a run-time dim: one pipeline for every number of
  // rows. The reduced extent and the inner one stay baked.
  const rowPath = inner === 1 && R > 32;
  const groups = rowPath ? outer : Math.ceil(out.size / WG);
  // Inference reducing the leading axis (a mean over a batch of rows): R is a run-time dim too.
  // Training keeps the baked loop bound.
  const dynR = ax === 0 && !isGradEnabled();
  const key = `red|${kind}|${x.dtype}|${dynR ? "*" : R}|${inner}|${ax}|${rowPath}`;
  const kernel = genericKernel(key, groups, () => {
    const { init, step } = combine(kind);
    const finish = kind === "mean" ? (dynR ? " / f32(dims.z)" : ` / ${R}.0`) : "";
    const RE = dynR ? "dims.z" : `${R}u`;
    const load = `f32(x[base + r * ${inner}u])`;
    let body: string;
    if (rowPath) {
      // One workgroup per output row: strided partials, then a tree in workgroup memory.
      const isArg = kind === "argmax";
      body = `
var<workgroup> sv: array<f32, ${WG}>;
var<workgroup> si: array<u32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(${GENERIC_BUILTINS}) {
  let o = ${GENERIC_LINEAR};
  if (o >= dims.x) { return; }
  let base = o * ${RE};
  var acc = ${init};
  var idx = 0u;
  for (var r = lid; r < ${RE}; r += ${WG}u) {
    let v = ${load};
    ${isArg ? "if (v > acc) { acc = v; idx = r; }" : `acc = ${step("acc", "v")};`}
  }
  sv[lid] = acc;
  si[lid] = idx;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      ${
        isArg
          ? `let v2 = sv[lid + s]; let i2 = si[lid + s];
      if (v2 > sv[lid] || (v2 == sv[lid] && i2 < si[lid])) { sv[lid] = v2; si[lid] = i2; }`
          : `sv[lid] = ${step("sv[lid]", "sv[lid + s]")};`
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { out[o] = ${isArg ? "i32(si[0])" : `sv[0]${finish}`}; }
}`;
    } else {
      const isArg = kind === "argmax";
      body = `
@compute @workgroup_size(${WG})
fn main(${GENERIC_BUILTINS}) {
  let o = ${GENERIC_LINEAR} * ${WG}u + lid;
  if (o >= dims.y) { return; }
  let base = (o / ${inner}u) * ${RE} * ${inner}u + o % ${inner}u;
  var acc = ${init};
  var idx = 0;
  for (var r = 0u; r < ${RE}; r++) {
    let v = ${load};
    ${isArg ? "if (v > acc || r == 0u) { acc = v; idx = i32(r); }" : `acc = ${step("acc", "v")};`}
  }
  out[o] = ${isArg ? "idx" : `acc${finish}`};
}`;
    }
    const code = `${x.dtype === "f16" ? "enable f16;\n" : ""}${binding(0, "x", x.dtype)}
${binding(1, "out", outDtype, true)}
${dimsDecl(2)}
${body}
`;
    return { code, label: `${kind}(axis ${ax})` };
  });
  runtime().dispatch(kernel, [x.buffer, out.buffer, dimsBuffer(outer, out.size, R)]);
  return out;
}

/** Sum along `axis`. */
export function sum(x: Tensor, axis: number, keepDims = false): Tensor {
  const out = reduceKernel(x, axis, "sum", keepDims);
  return record(out, "sum", [x], (g) => [
    mapKernel("sum.grad", [g.view(keepShape(x.shape, axis))], "a", "f32", x.shape),
  ]);
}

/** Mean along `axis`. */
export function mean(x: Tensor, axis: number, keepDims = false): Tensor {
  const out = reduceKernel(x, axis, "mean", keepDims);
  const R = x.shape[normAxis("mean", axis, x.rank)];
  return record(out, "mean", [x], (g) => [
    mapKernel("mean.grad", [g.view(keepShape(x.shape, axis))], `a / ${R}.0`, "f32", x.shape),
  ]);
}

/** Max along `axis`; the gradient goes to every element equal to the max. */
export function max(x: Tensor, axis: number, keepDims = false): Tensor {
  const out = reduceKernel(x, axis, "max", keepDims);
  return record(out, "max", [x], (g) => {
    const ks = keepShape(x.shape, axis);
    return [mapKernel("max.grad", [g.view(ks), x, out.view(ks)], "select(0.0, a, b == c)")];
  });
}

/** Min along `axis` (no gradient). */
export function min(x: Tensor, axis: number, keepDims = false): Tensor {
  return reduceKernel(x, axis, "min", keepDims);
}

/** Index of the maximum along `axis` as i32 (first on ties). */
export function argmax(x: Tensor, axis: number, keepDims = false): Tensor {
  const out = reduceKernel(x, axis, "argmax", keepDims);
  out.intRange = [0, x.shape[normAxis("argmax", axis, x.rank)] - 1];
  return out;
}

/** Sum of every element, shape []. */
export function sumAll(x: Tensor): Tensor {
  return sum(reshapeFlat(x), 0);
}

/** Mean of every element, shape []. */
export function meanAll(x: Tensor): Tensor {
  return mean(reshapeFlat(x), 0);
}

function reshapeFlat(x: Tensor): Tensor {
  if (x.rank === 1) return x;
  const v = x.view([x.size]);
  return record(v, "flatten", [x], (g) => [g.view(x.shape)]);
}

function keepShape(shape: readonly number[], axis: number): number[] {
  const ax = normAxis("reduce", axis, shape.length);
  return shape.map((d, i) => (i === ax ? 1 : d));
}

/** Sum `g` down to `shape` over the axes that broadcasting expanded (no-op when equal). */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  let cur = g;
  const offset = g.rank - shape.length;
  for (let k = 0; k < g.rank; k++) {
    const target = k < offset ? 1 : shape[k - offset];
    if (target === 1 && g.shape[k] !== 1) cur = sum(cur, k, true);
  }
  return cur.view(shape);
}
