/**
 * Top-k along the last axis (k <= 32), one thread per row with an insertion list: rows in
 * JOWA are short (18 actions, 2048 tokens) and k is small. The insertion list itself is a WGSL
 * emitter, {@linkcode topkListWgsl}, shared with the beam-search kernels (eval/beam_kernels.ts).
 * @module
 */
import { runtime } from "../core/runtime.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, grid, linearWorkgroup } from "../codegen/wgsl.ts";

const WG = 64;

/** Largest k of the per-thread insertion list (its arrays live in registers). */
export const MAX_TOPK = 32;

/** WGSL of a per-thread top-k list (see {@linkcode topkListWgsl}). */
export interface TopkListWgsl {
  /** Declares and empties `bv` (array<f32, k>, descending) and `bi` (array<i32, k>, -1 = empty). */
  declare: string;
  /**
   * Offers the f32 `value` (a variable's name: it is read several times) with the i32 expression
   * `index`: kept when the list has room or it beats the k-th value; strictly greater wins, so
   * the earlier offer stays first on ties.
   */
  insert(value: string, index: string): string;
}

/** The insertion-list top-k of `k` (1..MAX_TOPK) values, as WGSL snippets for one thread. */
export function topkListWgsl(k: number): TopkListWgsl {
  if (!Number.isInteger(k) || k < 1 || k > MAX_TOPK) {
    throw new RangeError(`topk list: k must be an integer in 1..${MAX_TOPK}, got ${k}`);
  }
  return {
    declare: `var bv: array<f32, ${k}>;
  var bi: array<i32, ${k}>;
  for (var j = 0u; j < ${k}u; j++) { bv[j] = -3.4028234663852886e38; bi[j] = -1; }`,
    insert: (value, index) =>
      `if (bi[${k - 1}] < 0 || !(${value} <= bv[${k - 1}])) {
      var j = ${k - 1};
      loop {
        if (j == 0 || !(${value} > bv[j - 1] || bi[j - 1] < 0)) { break; }
        bv[j] = bv[j - 1]; bi[j] = bi[j - 1];
        j--;
      }
      bv[j] = ${value}; bi[j] = ${index};
    }`,
  };
}

/**
 * The k largest values of each row, in descending order, and their indices (i32; the lower
 * index first on ties). No gradient (used for planning and sampling).
 */
export function topk(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
  if (x.rank === 0) throw new Error("topk: needs at least one axis");
  // The kernel binds array<f32>: another dtype's bits would be read as garbage.
  if (x.dtype !== "f32") throw new Error(`topk: f32 input only, got ${x.dtype}`);
  const C = x.shape[x.rank - 1];
  if (!Number.isInteger(k) || k < 1 || k > MAX_TOPK || k > C) {
    throw new Error(`topk: k must be an integer in [1, min(${MAX_TOPK}, ${C})], got ${k}`);
  }
  const rows = x.size / C;
  const shape = [...x.shape.slice(0, -1), k];
  const values = Tensor.empty(shape, "f32");
  const indices = Tensor.empty(shape, "i32");
  indices.intRange = [0, C - 1];
  const groups = Math.ceil(rows / WG);
  const list = topkListWgsl(k);
  const code = `${binding(0, "x", "f32")}
${binding(1, "vals", "f32", true)}
${binding(2, "inds", "i32", true)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (r >= ${rows}u) { return; }
  ${list.declare}
  for (var c = 0u; c < ${C}u; c++) {
    let v = x[r * ${C}u + c];
    ${list.insert("v", "i32(c)")}
  }
  for (var j = 0u; j < ${k}u; j++) { vals[r * ${k}u + j] = bv[j]; inds[r * ${k}u + j] = bi[j]; }
}
`;
  runtime().dispatch({ code, label: `topk(${k})`, workgroups: grid(groups) }, [
    x.buffer,
    values.buffer,
    indices.buffer,
  ]);
  return { values, indices };
}
