/**
 * The entry point shared by the per-pixel image kernels (conv_pool.ts: max pooling;
 * upsample.ts: nearest upsampling), one thread per pixel of NCHW images.
 *
 * @module
 */
import { linearWorkgroup } from "../codegen/wgsl.ts";

/** Threads per workgroup of the per-pixel kernels. */
export const PIXEL_WG = 256;

/**
 * WGSL: the entry point of a kernel over `groups` workgroups with one thread per pixel of
 * `size` pixels of `h` x `w` planes, through `i` (the pixel), `plane` (its image and channel)
 * and its row and column, named `row` and `col`.
 */
export function pixelMain(
  groups: number,
  size: number,
  h: number,
  w: number,
  row: string,
  col: string,
): string {
  return `@compute @workgroup_size(${PIXEL_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = ${linearWorkgroup(groups)} * ${PIXEL_WG}u + lid;
  if (i >= ${size}u) { return; }
  let plane = i / ${h * w}u;
  let ${row} = (i / ${w}u) % ${h}u;
  let ${col} = i % ${w}u;`;
}
