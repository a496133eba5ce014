/**
 * Layout ops: reshape, permute/transpose, slice, concat. Every copy kernel bakes the shapes
 * and strides into its source; their backwards are the inverse copies.
 */
import { record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, enables, grid, linearWorkgroup, stridesOf } from "../codegen/wgsl.ts";

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
  const kernel = planCache(
    `gc|${label}|${x.dtype}|${x.size}|${outShape}|${srcStride}|${srcOffset}|${ranges}`,
    () => {
      const outStrides = stridesOf(outShape);
      const lines: string[] = [];
      const conds: string[] = [];
      let idx = `${srcOffset}`;
      outShape.forEach((d, k) => {
        const c = k === 0 ? `i / ${outStrides[k]}u` : `(i / ${outStrides[k]}u) % ${d}u`;
        lines.push(`  let c${k} = i32(${c});`);
        if (srcStride[k] !== 0) idx += ` + c${k} * ${srcStride[k]}`;
        const r = ranges?.[k];
        if (r && (r[0] > 0 || r[1] < d)) conds.push(`c${k} >= ${r[0]} && c${k} < ${r[1]}`);
      });
      const groups = Math.ceil(out.size / WG);
      // Padding reads a clamped (valid) address and discards it where the coordinate is outside.
      const value = conds.length
        ? `select(${x.dtype}(0), x[u32(clamp(${idx}, 0, ${x.size - 1}))], ${conds.join(" && ")})`
        : `x[u32(${idx})]`;
      const code = `${enables(x.dtype)}${binding(0, "x", x.dtype)}
${binding(1, "out", x.dtype, true)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (i >= ${out.size}u) { return; }
${lines.join("\n")}
  out[i] = ${value};
}
`;
      return { code, label: label, workgroups: grid(groups) };
    },
  );
  runtime().dispatch(kernel, [x.buffer, out.buffer]);
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
  const strides = stridesOf(x.shape);
  const outShape = x.shape.map((d, k) => (k === ax ? end - start : d));
  const out = gatherCopy(`slice(${ax},${start}:${end})`, x, outShape, strides, start * strides[ax]);
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
  const outStrides = stridesOf(outShape);
  let offset = 0;
  for (const t of xs) {
    if (t.size > 0) copyInto(t, out, outStrides, offset * outStrides[ax]);
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

/** Write all of `src` into `dst` at element offset `base` with `dst`'s strides. */
function copyInto(src: Tensor, dst: Tensor, dstStrides: readonly number[], base: number): void {
  const kernel = planCache(`cc|${src.dtype}|${src.shape}|${dstStrides}|${base}`, () => {
    const srcStrides = stridesOf(src.shape);
    const lines: string[] = [];
    let idx = `${base}u`;
    src.shape.forEach((d, k) => {
      const c = k === 0 ? `i / ${srcStrides[k]}u` : `(i / ${srcStrides[k]}u) % ${d}u`;
      idx += ` + (${c}) * ${dstStrides[k]}u`;
    });
    const groups = Math.ceil(src.size / WG);
    const code = `${enables(src.dtype)}${binding(0, "x", src.dtype)}
${binding(1, "out", src.dtype, true)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (i >= ${src.size}u) { return; }
${lines.join("\n")}
  out[${idx}] = x[i];
}
`;
    return { code, label: "concat.copy", workgroups: grid(groups) };
  });
  runtime().dispatch(kernel, [
    src.buffer,
    dst.buffer,
  ]);
}
