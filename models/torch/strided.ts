/**
 * Strided views: which storage elements a tensor touches, whether it is already row-major, and
 * copying a non-contiguous view (e.g. a transposed matrix) into contiguous order.
 *
 * @module
 */

/** Number of elements of a shape (1 for a scalar, 0 if any size is 0). */
export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** True when the strides are row-major for the shape (size-1 dimensions may have any stride). */
export function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  if (numelOf(shape) === 0) return true;
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}

/**
 * Storage elements `[start, end)` a view reads; `end === start` for an empty tensor. Strides
 * are non-negative in torch, so the extremes are the first and the last index.
 */
export function viewSpan(
  offset: number,
  shape: readonly number[],
  stride: readonly number[],
): { start: number; end: number } {
  if (numelOf(shape) === 0) return { start: offset, end: offset };
  let last = offset;
  for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * stride[i];
  return { start: offset, end: last + 1 };
}

/**
 * Copy a strided view into a fresh row-major buffer.
 * @param src bytes of the storage span; element 0 of `src` is storage element `base`.
 * @param base storage element index of `src[0]`.
 * @param offset storage element index of the view's first element.
 * @param shape view sizes.
 * @param stride view strides in elements.
 * @param width bytes per element.
 */
export function gatherStrided(
  src: Uint8Array,
  base: number,
  offset: number,
  shape: readonly number[],
  stride: readonly number[],
  width: number,
): Uint8Array {
  const n = numelOf(shape);
  const out = new Uint8Array(n * width);
  if (n === 0) return out;
  const rank = shape.length;
  if (rank === 0) {
    out.set(src.subarray((offset - base) * width, (offset - base + 1) * width));
    return out;
  }
  // Odometer over all but the innermost dimension; the innermost is a run copied in one go
  // when its stride is 1, element by element otherwise.
  const inner = shape[rank - 1];
  const innerStride = stride[rank - 1];
  const index = new Array<number>(rank - 1).fill(0);
  let rowStart = offset - base;
  let o = 0;
  for (;;) {
    if (innerStride === 1) {
      out.set(src.subarray(rowStart * width, (rowStart + inner) * width), o);
      o += inner * width;
    } else {
      for (let j = 0, e = rowStart; j < inner; j++, e += innerStride) {
        const from = e * width;
        for (let b = 0; b < width; b++) out[o++] = src[from + b];
      }
    }
    let d = rank - 2;
    for (; d >= 0; d--) {
      index[d]++;
      rowStart += stride[d];
      if (index[d] < shape[d]) break;
      rowStart -= stride[d] * shape[d];
      index[d] = 0;
    }
    if (d < 0) return out;
  }
}
