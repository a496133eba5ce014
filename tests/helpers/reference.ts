/**
 * Test support: a seeded PRNG, float64 arrays, and closeness assertions that report the
 * worst element.
 */
import { AssertionError } from "node:assert/strict";
import { mulberry32 } from "../../util/rng.ts";

/** Seeded uniform [0, 1) generator (mulberry32, util/rng.ts). */
export const rng: (seed: number) => () => number = mulberry32;

/** `n` uniform values in [lo, hi) as float64, rounded to float32 so GPU and CPU see the same inputs. */
export function randArray(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround(lo + (hi - lo) * r());
  return out;
}

/** Product of a shape. */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Assert |actual - expected| <= atol + rtol * |expected| elementwise; the message names the
 * worst index and both values.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  opts: { atol?: number; rtol?: number; what?: string } = {},
): void {
  const { atol = 1e-5, rtol = 1e-4, what = "values" } = opts;
  if (actual.length !== expected.length) {
    throw new AssertionError({
      message: `${what}: length ${actual.length} != expected ${expected.length}`,
    });
  }
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
      if (Number.isNaN(excess)) break;
    }
  }
  if (worst >= 0) {
    throw new AssertionError({
      message: `${what}: element ${worst} is ${actual[worst]}, expected ${
        expected[worst]
      } (atol ${atol}, rtol ${rtol}, n=${actual.length})`,
    });
  }
}
