/**
 * Bit-exact conversions between float32 and the 16-bit float formats used in checkpoints.
 *
 * Half-precision values travel as raw bit patterns (`Uint16Array` / numbers in 0..0xffff) so
 * that nothing depends on `Float16Array` support. Narrowing conversions round to nearest, ties
 * to even, overflow to infinity and keep NaNs NaN (quiet, sign kept).
 *
 * @module
 */

// Scratch views for reinterpreting a single float32 as its bit pattern.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0];
}

function bitsF32(bits: number): number {
  scratchU32[0] = bits;
  return scratchF32[0];
}

/** float32 bit pattern -> IEEE half bit pattern, round to nearest even. */
function f32BitsToF16Bits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  const mant = f & 0x7fffff;
  if (exp === 0xff) {
    // Inf stays Inf; NaN becomes a quiet NaN keeping the top payload bits.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15; // rebiased exponent
  if (e >= 0x1f) return sign | 0x7c00; // too large even before rounding
  if (e <= 0) {
    // Result is subnormal (or zero): shift the full significand into place.
    if (e < -10) return sign; // below half of the smallest subnormal -> +-0
    const sig = mant | 0x800000;
    const shift = 14 - e; // 14..24
    const half = 1 << (shift - 1);
    const rem = sig & ((1 << shift) - 1);
    let out = sig >>> shift;
    if (rem > half || (rem === half && (out & 1) === 1)) out += 1; // may carry into normal range
    return sign | out;
  }
  // Normal: round the 13 dropped bits; a carry may bump the exponent (up to Inf), which is right.
  let out = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (out & 1) === 1)) out += 1;
  return sign | out;
}

/** IEEE half bit pattern -> float32 bit pattern (exact). */
function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal half: normalise into a float32 normal.
  let m = mant;
  let e = 113;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e -= 1;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

/** float32 bit pattern -> bfloat16 bit pattern, round to nearest even. */
function f32BitsToBf16Bits(f: number): number {
  if ((f & 0x7fffffff) > 0x7f800000) return ((f >>> 16) | 0x40) & 0xffff; // quiet NaN
  // Adding 0x7fff plus the lsb of the kept part implements ties-to-even; overflow carries to Inf.
  return ((f + 0x7fff + ((f >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * Convert an IEEE half-precision bit pattern to a number (exact).
 * @param bits 16-bit pattern, 0..0xffff.
 */
export function f16BitsToF32(bits: number): number {
  return bitsF32(f16BitsToF32Bits(bits & 0xffff));
}

/**
 * Convert a number to the nearest IEEE half-precision bit pattern. The value is first rounded
 * to float32 (as a `Float32Array` store does), then to half with round-to-nearest-even.
 */
export function f32ToF16Bits(x: number): number {
  return f32BitsToF16Bits(f32Bits(x));
}

/** Convert a bfloat16 bit pattern to a number (exact). */
export function bf16BitsToF32(bits: number): number {
  return bitsF32(((bits & 0xffff) << 16) >>> 0);
}

/**
 * Convert a number to the nearest bfloat16 bit pattern (float32 first, then
 * round-to-nearest-even on the dropped 16 bits).
 */
export function f32ToBf16Bits(x: number): number {
  return f32BitsToBf16Bits(f32Bits(x));
}

/** Widen an array of IEEE half bit patterns to float32 (exact, NaN payloads kept). */
export function f16ArrayToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = f16BitsToF32Bits(src[i]);
  return out;
}

/** Narrow float32 values to IEEE half bit patterns (round to nearest even). */
export function f32ArrayToF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToF16Bits(bits[i]);
  return out;
}

/** Widen an array of bfloat16 bit patterns to float32 (exact). */
export function bf16ArrayToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}

/** Narrow float32 values to bfloat16 bit patterns (round to nearest even). */
export function f32ArrayToBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToBf16Bits(bits[i]);
  return out;
}

/**
 * int64 -> nearest float32 with a single rounding. `Number(v)` alone rounds twice (to float64,
 * then float32) and can pick the wrong neighbour for values above 2^53, e.g. 2^60 + 2^36 + 1.
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
