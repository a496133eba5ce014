/** Small WGSL building blocks shared by the kernel generators. */
import type { DType } from "../core/dtype.ts";

/** Largest workgroup count per grid dimension we rely on (the spec's minimum). */
export const MAX_GRID = 65535;

/**
 * Spread `count` workgroups over x and y so neither exceeds 65535. Kernels recover the
 * linear workgroup index with `LINEAR_WG`.
 */
export function grid(count: number): [number, number, number] {
  if (count <= MAX_GRID) return [Math.max(count, 0), 1, 1];
  const y = Math.ceil(count / MAX_GRID);
  const x = Math.ceil(count / y);
  return [x, y, 1];
}

/** WGSL expression of the linear workgroup index for a grid from `grid(count)`. */
export function linearWorkgroup(count: number): string {
  const [x] = grid(count);
  return `(wid.y * ${x}u + wid.x)`;
}

/** `enable f16;` when any dtype needs it. */
export function enables(...dtypes: DType[]): string {
  return dtypes.includes("f16") ? "enable f16;\n" : "";
}

/** A storage binding declaration. */
export function binding(index: number, name: string, dtype: DType, write = false): string {
  const access = write ? "read_write" : "read";
  return `@group(0) @binding(${index}) var<storage, ${access}> ${name}: array<${dtype}>;`;
}

/** Format a number as a WGSL f32 literal (finite values only). */
export function f32(x: number): string {
  if (!Number.isFinite(x)) {
    if (Number.isNaN(x)) throw new Error("NaN literal");
    return x > 0 ? "3.4028234663852886e38" : "-3.4028234663852886e38";
  }
  const s = String(x);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}
