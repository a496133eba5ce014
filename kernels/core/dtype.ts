/** Element types a tensor can hold, and how each maps to WGSL and to JavaScript arrays. */

/** A tensor's element type. f16 needs the device's `shader-f16` feature. */
export type DType = "f32" | "f16" | "i32" | "u32";

/** The typed array a tensor of each dtype reads back into. */
export type TypedArrayFor<D extends DType> = D extends "f32" ? Float32Array
  : D extends "f16" ? Float16Array
  : D extends "i32" ? Int32Array
  : Uint32Array;

/** Bytes per element. */
export function byteSize(dtype: DType): number {
  return dtype === "f16" ? 2 : 4;
}

/** The WGSL scalar type name. */
export function wgslType(dtype: DType): string {
  return dtype;
}

/** Allocate a typed array of `dtype` and length `n`. */
export function allocTyped(
  dtype: DType,
  n: number,
): Float32Array | Float16Array | Int32Array | Uint32Array {
  switch (dtype) {
    case "f32":
      return new Float32Array(n);
    case "f16":
      return new Float16Array(n);
    case "i32":
      return new Int32Array(n);
    case "u32":
      return new Uint32Array(n);
  }
}

/** View raw bytes as a typed array of `dtype`. */
export function viewTyped(
  dtype: DType,
  buffer: ArrayBuffer,
  n: number,
): Float32Array | Float16Array | Int32Array | Uint32Array {
  switch (dtype) {
    case "f32":
      return new Float32Array(buffer, 0, n);
    case "f16":
      return new Float16Array(buffer, 0, n);
    case "i32":
      return new Int32Array(buffer, 0, n);
    case "u32":
      return new Uint32Array(buffer, 0, n);
  }
}
