/**
 * Element types a torch checkpoint may hold, their sizes, the typed arrays that carry them and
 * conversions to float32.
 *
 * @module
 */

import { bf16ArrayToF32, f16ArrayToF32, i64ToF32 } from "../safetensors/dtype_convert.ts";

// The scalar conversions live with the safetensors codecs; re-exported for torch callers.
export { f16BitsToF32, i64ToF32 } from "../safetensors/dtype_convert.ts";

/** Element type of a checkpoint tensor (safetensors-style names). */
export type TorchDtype = "F32" | "F16" | "BF16" | "I64" | "I32";

/** Bytes per element. */
export const DTYPE_BYTES: Readonly<Record<TorchDtype, number>> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
};

/** The storage class `torch.save` names in the pickle, e.g. `torch.FloatStorage`, per dtype. */
export const STORAGE_CLASS_DTYPES: Readonly<Record<string, TorchDtype>> = {
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  LongStorage: "I64",
  IntStorage: "I32",
};

/**
 * Native typed array of a dtype: Float32Array (F32), Uint16Array of raw bit patterns (F16,
 * BF16), BigInt64Array (I64), Int32Array (I32).
 */
export type TorchTypedArray = Float32Array | Uint16Array | BigInt64Array | Int32Array;

/** True on little-endian hosts, where typed arrays can view little-endian bytes directly. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reverse the byte order of every `width`-byte element, in place. */
export function byteswap(bytes: Uint8Array, width: number): void {
  if (width === 1) return;
  for (let i = 0; i + width <= bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

/**
 * View host-order bytes as the dtype's typed array (no copy; `bytes` must start at an offset
 * aligned to the element size, which a fresh allocation is).
 */
export function asTypedArray(bytes: Uint8Array, dtype: TorchDtype): TorchTypedArray {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  switch (dtype) {
    case "F32":
      return new Float32Array(bytes.buffer, bytes.byteOffset, n);
    case "F16":
    case "BF16":
      return new Uint16Array(bytes.buffer, bytes.byteOffset, n);
    case "I64":
      return new BigInt64Array(bytes.buffer, bytes.byteOffset, n);
    case "I32":
      return new Int32Array(bytes.buffer, bytes.byteOffset, n);
  }
}

/** Convert a dtype's typed array to float32 (a copy, also for F32). */
export function toFloat32(data: TorchTypedArray, dtype: TorchDtype): Float32Array {
  const out = new Float32Array(data.length);
  switch (dtype) {
    case "F32":
      out.set(data as Float32Array);
      break;
    case "F16":
      return f16ArrayToF32(data as Uint16Array);
    case "BF16":
      return bf16ArrayToF32(data as Uint16Array);
    case "I64": {
      const src = data as BigInt64Array;
      for (let i = 0; i < src.length; i++) out[i] = i64ToF32(src[i]);
      break;
    }
    case "I32":
      out.set(data as Int32Array);
      break;
  }
  return out;
}
