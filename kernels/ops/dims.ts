/**
 * Run-time sizes for shape-generic kernels: dims that vary between calls of an evaluation
 * (rows = environments x beams, window and KV lengths) are read by the WGSL from a small
 * uniform `dims` (up to 4 u32) instead of being baked into the source, so one pipeline serves
 * every value and the plan cache key leaves them out. The grid still follows the shape (grid
 * sizes are per dispatch); kernels rebuild their linear workgroup id from `num_workgroups`.
 *
 * The uniform buffers are shared constants, one per distinct tuple, uploaded once and kept
 * as resident buffers (not tensors: they do not count as tensor memory): a warm step uploads
 * none, and a capture (kernels/core/capture.ts) binds them like any other long-lived buffer.
 *
 * @module
 */
import type { PooledBuffer } from "../core/buffer_pool.ts";
import { planCache } from "../core/plan_cache.ts";
import { type Kernel, runtime } from "../core/runtime.ts";
import { grid } from "../codegen/wgsl.ts";

const cache = new Map<string, PooledBuffer>();

/** The resident buffer of `words` (kernels/core/buffer_pool.ts `resident`), made once. */
function shared(key: string, words: () => Uint32Array<ArrayBuffer>): PooledBuffer {
  let b = cache.get(key);
  if (!b) {
    b = runtime().pool.resident(words());
    cache.set(key, b);
  }
  return b;
}

/**
 * The uniform buffer holding `values` as `vec4<u32>` (missing lanes 0). Kept for the life of
 * the process: a captured step may bind it on every replay. Values must be u32.
 */
export function dimsBuffer(a: number, b = 0, c = 0, d = 0): PooledBuffer {
  return shared(`${a},${b},${c},${d}`, () => {
    for (const v of [a, b, c, d]) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
        throw new Error(`dims: ${v} is not a u32 size`);
      }
    }
    return Uint32Array.of(a, b, c, d);
  });
}

/**
 * A longer table of u32 run-time values (shapes and strides) as a uniform
 * `array<vec4<u32>, ceil(n / 4)>`, shared and kept like {@link dimsBuffer}'s.
 */
export function dimsTable(values: readonly number[]): PooledBuffer {
  return shared(`t${values.join(",")}`, () => {
    const padded = new Uint32Array(Math.ceil(values.length / 4) * 4);
    values.forEach((v, i) => {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
        throw new Error(`dims: ${v} is not a u32 size`);
      }
      padded[i] = v;
    });
    return padded;
  });
}

/** WGSL declaration of the dims uniform at `binding`. */
export function dimsDecl(binding: number): string {
  return `@group(0) @binding(${binding}) var<uniform> dims: vec4<u32>;`;
}

/** The entry point's builtins for a generic kernel (`wid`, `lid`, `nwg`). */
export const GENERIC_BUILTINS = "@builtin(workgroup_id) wid: vec3<u32>, " +
  "@builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>";

/** The linear workgroup id of a grid from `grid(count)` (any count: read from `nwg`). */
export const GENERIC_LINEAR = "(wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y)";

/**
 * A shape-generic kernel for `groups` workgroups: the WGSL is built once per `key` (which must
 * leave out the run-time dims) and shared by the kernel objects of every grid, so a new grid
 * compiles nothing (the runtime finds the pipeline by the same source). `fold` spreads the
 * workgroups over the grid's dimensions (default {@link grid}); the kernel's linear id is
 * {@link GENERIC_LINEAR} either way.
 */
export function genericKernel(
  key: string,
  groups: number,
  build: () => { code: string; label: string },
  fold: (groups: number) => readonly [number, number, number] = grid,
): Kernel {
  return planCache(`${key}|g${groups}`, () => ({
    ...planCache(key, build),
    workgroups: fold(groups),
  }));
}
