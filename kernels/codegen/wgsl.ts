/**
 * The WGSL kit: the small building blocks every kernel generator shares (kernels/ops/*, the
 * matmul, conv and attention generators under kernels/codegen/, the beam-search kernels) —
 * dispatch-grid folding, f32 literals, storage bindings, `enable f16` and strides. Each exists
 * once here; generators must not grow their own copies.
 * @module
 */
import type { DType } from "../core/dtype.ts";

/** Largest workgroup count per grid dimension we rely on (the spec's minimum). */
export const MAX_GRID = 65535;

/**
 * Spreads `total` workgroups over x, y (and z) so no dimension exceeds `max` (default the
 * spec's minimum, {@linkcode MAX_GRID}; pass the device's `maxComputeWorkgroupsPerDimension`
 * to use more). The grid is balanced, so at most a few ids past `total` are dispatched:
 * shaders rebuild the linear id as `wid.x + wid.y * x + wid.z * x * y` (see
 * {@linkcode linearWorkgroup}) and skip ids >= total. z stays 1 below max^2 workgroups;
 * kernels that ignore `wid.z` pass `dims` 2 and get an error beyond that.
 */
export function grid(
  total: number,
  max: number = MAX_GRID,
  dims: 2 | 3 = 3,
): [number, number, number] {
  if (total <= max) return [Math.max(total, 0), 1, 1];
  const z = Math.ceil(total / (max * max));
  if (z > (dims === 2 ? 1 : max)) {
    throw new Error(`${total} workgroups exceed the dispatch limit of ${max}^${dims}`);
  }
  const rest = Math.ceil(total / z);
  const y = Math.ceil(rest / max);
  return [Math.ceil(rest / y), y, z];
}

/** WGSL expression of the linear workgroup index for a 2-D grid from `grid(count)`. */
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

/**
 * A number as a WGSL float literal (the shortest decimal of the double, which the shader
 * compiler rounds to the nearest f32); infinities become the largest finite f32.
 */
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
