/**
 * Layout ops: reshape, permute/transpose, slice, concat. Every copy kernel bakes the strides
 * into its source, but not the element counts nor a concat part's offset: those come from a
 * dims uniform (kernels/ops/dims.ts), so the leading (batch) extent and the position of a
 * part do not make new pipelines. Their backwards are the inverse copies.
 */
import { record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { Tensor } from "../core/tensor.ts";
import type { DType } from "../core/dtype.ts";
import { binding, enables, stridesOf } from "../codegen/wgsl.ts";
import { dimsBuffer, dimsDecl, GENERIC_BUILTINS, GENERIC_LINEAR, genericKernel } from "./dims.ts";

const WG = 256;

/** `axis` made non-negative, or an error naming the op (before anything is dispatched). */
function normAxis(op: string, axis: number, shape: readonly number[]): number {
  const ax = axis < 0 ? axis + shape.length : axis;
  if (!Number.isInteger(ax) || ax < 0 || ax >= shape.length) {
    throw new Error(`${op}: axis ${axis} out of range for [${shape}]`);
  }
  return ax;
}

/** Same data in a new shape (one dimension may be -1). Shares storage. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const free = shape.filter((d) => d === -1).length;
  if (free > 1) throw new Error(`reshape: at most one -1 in [${shape}]`);
  if (shape.some((d) => d !== -1 && !(Number.isInteger(d) && d >= 0))) {
    throw new Error(`reshape: invalid shape [${shape}]`);
  }
  const resolved = shape.map((d) => (d === -1 ? x.size / known : d));
  // Checked here (not only by view) so the message names reshape, and before any refcount.
  if (resolved.reduce((a, b) => a * b, 1) !== x.size || !resolved.every(Number.isInteger)) {
    throw new Error(`reshape: cannot reshape [${x.shape}] into [${shape}]`);
  }
  const out = x.view(resolved);
  return record(out, "reshape", [x], (g) => [g.view(x.shape)]);
}

/**
 * Copy kernel: out has `outShape`; element at out coordinates c reads the input at
 * sum_k c_k * srcStride[k] + srcOffset, or writes 0 where `inside` (per coordinate ranges)
 * fails. Covers permute, slice and pad.
 */
function gatherCopy(
  label: string,
  x: Tensor,
  outShape: readonly number[],
  srcStride: readonly number[],
  srcOffset: number,
  ranges?: readonly [number, number][],
): Tensor {
  void x.buffer; // a disposed input throws before the output is allocated
  const out = Tensor.empty(outShape, x.dtype);
  if (out.size === 0) return out;
  const groups = Math.ceil(out.size / WG);
  const outStrides = stridesOf(outShape); // never reads the leading extent
  const conds: string[] = [];
  outShape.forEach((d, k) => {
    const r = ranges?.[k];
    if (r && (r[0] > 0 || r[1] < d)) conds.push(`c${k} >= ${r[0]} && c${k} < ${r[1]}`);
  });
  // Run-time dims: element counts, the source offset and the source's leading stride (a
  // slice's position and a row length that follows the window), so slices of every window
  // and every number of rows share one pipeline per inner shape.
  const stride0 = srcStride.length > 0 ? srcStride[0] : 0;
  const name = label.split("(")[0];
  const kernel = genericKernel(
    `gc|${name}|${x.dtype}|${outShape.slice(1)}|${srcStride.slice(1)}|${stride0 === 0}|${conds}`,
    groups,
    () => {
      const lines: string[] = [];
      let idx = "i32(dims.z)";
      outShape.forEach((d, k) => {
        const c = k === 0 ? `i / ${outStrides[k]}u` : `(i / ${outStrides[k]}u) % ${d}u`;
        lines.push(`  let c${k} = i32(${c});`);
        if (k === 0 && stride0 !== 0) idx += ` + c0 * i32(dims.w)`;
        else if (k > 0 && srcStride[k] !== 0) idx += ` + c${k} * ${srcStride[k]}`;
      });
      // Padding reads a clamped (valid) address and discards it where the coordinate is outside.
      const value = conds.length
        ? `select(${x.dtype}(0), x[u32(clamp(${idx}, 0, i32(dims.y) - 1))], ${conds.join(" && ")})`
        : `x[u32(${idx})]`;
      const code = `${enables(x.dtype)}${binding(0, "x", x.dtype)}
${binding(1, "out", x.dtype, true)}
${dimsDecl(2)}
@compute @workgroup_size(${WG})
fn main(${GENERIC_BUILTINS}) {
  let i = ${GENERIC_LINEAR} * ${WG}u + lid;
  if (i >= dims.x) { return; }
${lines.join("\n")}
  out[i] = ${value};
}
`;
      return { code, label: name };
    },
  );
  // The offset is negative only for pad (its reads are clamped): stored as its u32 bits.
  const dims = dimsBuffer(out.size, x.size, srcOffset >>> 0, stride0);
  runtime().dispatch(kernel, [x.buffer, out.buffer, dims]);
  return out;
}

/** Reorder axes: out.shape[k] = x.shape[perm[k]]. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const sorted = [...perm].sort((a, b) => a - b);
  if (perm.length !== x.rank || sorted.some((v, i) => v !== i)) {
    throw new Error(`permute: [${perm}] is not a permutation of ${x.rank} axes`);
  }
  const inStrides = stridesOf(x.shape);
  const outShape = perm.map((p) => x.shape[p]);
  const out = gatherCopy(`permute(${perm})`, x, outShape, perm.map((p) => inStrides[p]), 0);
  const inverse = perm.map((_, i) => perm.indexOf(i));
  return record(out, "permute", [x], (g) => [permute(g, inverse)]);
}

/** Swap two axes. */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const r = x.rank;
  const perm = [...Array(r).keys()];
  const i = normAxis("transpose", a, x.shape);
  const j = normAxis("transpose", b, x.shape);
  [perm[i], perm[j]] = [perm[j], perm[i]];
  return permute(x, perm);
}

/** Elements [start, end) along `axis`. */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = normAxis("slice", axis, x.shape);
  if (
    !(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end &&
      end <= x.shape[ax])
  ) {
    throw new Error(`slice: [${start}, ${end}) out of range for axis ${ax} of [${x.shape}]`);
  }
  const outShape = x.shape.map((d, k) => (k === ax ? end - start : d));
  void x.buffer; // a disposed input throws before the output is allocated
  const out = Tensor.empty(outShape, x.dtype);
  // A 2-D copy (see copyRows): rows = dims before the axis, a row = the slice's extent times
  // the dims after it, read at `start` of each input row.
  const inner = x.shape.slice(ax + 1).reduce((a, b) => a * b, 1);
  const row = (end - start) * inner;
  if (out.size > 0) {
    copyRows(x, out, out.size, row, start * inner, x.shape[ax] * inner, false);
  }
  return record(out, "slice", [x], (g) => [pad(g, ax, start, x.shape[ax] - end)]);
}

/** Zero-pad `before` and `after` elements along `axis`. */
export function pad(x: Tensor, axis: number, before: number, after: number): Tensor {
  const ax = normAxis("pad", axis, x.shape);
  if (!(Number.isInteger(before) && Number.isInteger(after) && before >= 0 && after >= 0)) {
    throw new Error(`pad: before ${before} and after ${after} must be integers >= 0`);
  }
  const strides = stridesOf(x.shape);
  const outShape = x.shape.map((d, k) => (k === ax ? d + before + after : d));
  const ranges = outShape.map((d, k): [number, number] =>
    k === ax ? [before, before + x.shape[ax]] : [0, d]
  );
  const out = gatherCopy(
    `pad(${ax},${before},${after})`,
    x,
    outShape,
    strides,
    -before * strides[ax],
    ranges,
  );
  return record(out, "pad", [x], (g) => [slice(g, ax, before, before + x.shape[ax])]);
}

/** Join tensors along `axis` (all other dimensions equal). */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error("concat: no tensors");
  const rank = xs[0].rank;
  const ax = normAxis("concat", axis, xs[0].shape);
  for (const t of xs) {
    if (
      t.rank !== rank || t.shape.some((d, k) => k !== ax && d !== xs[0].shape[k]) ||
      t.dtype !== xs[0].dtype
    ) {
      throw new Error(
        `concat: shapes ${
          xs.map((t) => `${t.dtype}[${t.shape}]`).join(", ")
        } differ off axis ${ax}`,
      );
    }
  }
  // A disposed part must fail before the output is allocated and earlier parts are copied.
  for (const t of xs) void t.buffer;
  const total = xs.reduce((a, t) => a + t.shape[ax], 0);
  const outShape = xs[0].shape.map((d, k) => (k === ax ? total : d));
  const out = Tensor.empty(outShape, xs[0].dtype);
  let offset = 0;
  for (const t of xs) {
    if (t.size > 0) copyInto(t, out, ax, offset);
    offset += t.shape[ax];
  }
  const starts: number[] = [];
  offset = 0;
  for (const t of xs) {
    starts.push(offset);
    offset += t.shape[ax];
  }
  return record(
    out,
    "concat",
    xs,
    (g) =>
      xs.map((t, k) => t.requiresGrad ? slice(g, ax, starts[k], starts[k] + t.shape[ax]) : null),
  );
}

/**
 * Write all of `src` into `dst` along axis `ax` at position `at`. Both are row-major and
 * agree off the axis, so the copy is 2-D: rows = the dims before the axis, a row = the
 * part's extent along the axis times the dims after it.
 */
function copyInto(src: Tensor, dst: Tensor, ax: number, at: number): void {
  const inner = src.shape.slice(ax + 1).reduce((a, b) => a * b, 1);
  const row = src.shape[ax] * inner;
  copyRows(src, dst, src.size, row, at * inner, dst.shape[ax] * inner, true);
}

/**
 * The one 2-D copy kernel of slice and concat: element i of the contiguous side (row
 * r = i / len, column i % len) moves to or from `offset + r * stride + column` of the strided
 * side (`scatter`: into `to`; else out of `from`). Every size is a run-time dim, so one
 * pipeline per dtype and direction serves every shape, window and number of rows.
 */
function copyRows(
  from: Tensor,
  to: Tensor,
  n: number,
  len: number,
  offset: number,
  stride: number,
  scatter: boolean,
): void {
  // A copy moves bits: every 4-byte dtype binds as u32 (one pipeline for f32, i32 and u32).
  const dtype = from.dtype === "f16" ? "f16" : "u32";
  const bufs = [from.buffer, to.buffer];
  if (!warmedRows.has(dtype)) {
    // The first copy also compiles the other direction (one empty workgroup, n = 0): an
    // evaluation's first concat of past tokens (its second step) then compiles nothing.
    warmedRows.add(dtype);
    runtime().dispatch(rowsKernel(dtype, !scatter, 1), [...bufs, dimsBuffer(0)]);
  }
  const kernel = rowsKernel(dtype, scatter, Math.ceil(n / WG));
  runtime().dispatch(kernel, [...bufs, dimsBuffer(n, len, offset, stride)]);
}

/** Dtypes whose copyRows kernels (both directions) are compiled. */
const warmedRows = new Set<string>();

function rowsKernel(dtype: DType, scatter: boolean, groups: number) {
  return genericKernel(`rows|${dtype}|${scatter}`, groups, () => {
    const strided = "dims.z + (i / dims.y) * dims.w + i % dims.y";
    const code = `${enables(dtype)}${binding(0, "x", dtype)}
${binding(1, "out", dtype, true)}
${dimsDecl(2)}
@compute @workgroup_size(${WG})
fn main(${GENERIC_BUILTINS}) {
  let i = ${GENERIC_LINEAR} * ${WG}u + lid;
  if (i >= dims.x) { return; }
  ${scatter ? `out[${strided}] = x[i];` : `out[i] = x[${strided}];`}
}
`;
    return { code, label: scatter ? "concat.copy" : "slice" };
  });
}
