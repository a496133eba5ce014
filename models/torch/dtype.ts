/**
 * Element types a torch checkpoint may hold, their sizes, the typed arrays that carry them and
 * conversions to float32.
 *
 * @module
 */

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

/** IEEE half-precision bit pattern -> float32 value (exact). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero / subnormal
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * int64 -> nearest float32 with a single rounding. `Number(v)` alone rounds twice (to float64,
 * then float32) and can pick the wrong neighbour for values above 2^53.
 */
export function i64ToF32(v: bigint): number {
  const neg = v < 0n;
  let a = neg ? -v : v;
  const bits = a.toString(2).length;
  let scale = 1;
  if (bits > 53) {
    // Keep 53 bits and fold the dropped ones into the lowest kept bit ("round to odd"), which
    // keeps what the float32 rounding needs (53 >= 24 + 2).
    const shift = BigInt(bits - 53);
    const sticky = (a & ((1n << shift) - 1n)) !== 0n ? 1n : 0n;
    a = (a >> shift) | sticky;
    scale = 2 ** (bits - 53);
  }
  const x = Math.fround(Number(a) * scale);
  return neg ? -x : x;
}

/** Convert a dtype's typed array to float32 (a copy, also for F32). */
export function toFloat32(data: TorchTypedArray, dtype: TorchDtype): Float32Array {
  const out = new Float32Array(data.length);
  switch (dtype) {
    case "F32":
      out.set(data as Float32Array);
      break;
    case "F16": {
      const src = data as Uint16Array;
      for (let i = 0; i < src.length; i++) out[i] = f16BitsToF32(src[i]);
      break;
    }
    case "BF16": {
      // bfloat16 is the top half of a float32: shift the bits into place.
      const bits = new Uint32Array(out.buffer);
      const src = data as Uint16Array;
      for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
      break;
    }
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
