/**
 * Indexing: row gather (embedding lookup / index-select) with its scatter-add backward, and
 * picking one element per row along the last axis.
 *
 * Index tensors uploaded from the CPU carry their value range, so an out-of-range index is
 * an error before anything is dispatched; indices computed on the GPU are clamped.
 *
 * The scatter-add backward is deterministic (same bits on every run, eager or replayed): it
 * sorts positions by row on the GPU (kernels/ops/_row_sort.ts) and sums each row in position
 * order, instead of float atomics whose order of additions depends on thread timing.
 */
import { record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, grid, linearWorkgroup } from "../codegen/wgsl.ts";
import { dimsBuffer, dimsDecl, GENERIC_BUILTINS, GENERIC_LINEAR, genericKernel } from "./dims.ts";
import { zeros } from "./elementwise.ts";
import { scatterRowsDirect, scatterRowsSorted } from "./_scatter_rows.ts";

const WG = 256;
/** scatterAddRows skips the sort up to this many positions, and rows x positions. */
const DIRECT_MAX_POSITIONS = 2048;
const DIRECT_MAX_WORK = 1 << 16;

/**
 * Throw (naming `op`) unless `idx` is an integer tensor whose known value range lies in
 * [0, limit). Ops that dispatch other kernels before indexing call it first.
 */
export function checkIndices(op: string, idx: Tensor, limit: number): void {
  if (idx.dtype !== "i32" && idx.dtype !== "u32") {
    throw new Error(`${op}: indices must be i32 or u32, got ${idx.dtype}`);
  }
  const r = idx.intRange;
  if (r && idx.size > 0 && (r[0] < 0 || r[1] >= limit)) {
    throw new Error(`${op}: index range [${r[0]}, ${r[1]}] outside [0, ${limit - 1}]`);
  }
}

/** Rows of `table` [V, ...rest] selected by `idx` (any shape): out [...idx.shape, ...rest]. */
export function indexSelect(table: Tensor, idx: Tensor): Tensor {
  if (table.rank < 1) throw new Error("indexSelect: table needs at least one axis");
  checkIndices("indexSelect", idx, table.shape[0]);
  const V = table.shape[0];
  const D = table.size / Math.max(V, 1);
  const out = Tensor.empty([...idx.shape, ...table.shape.slice(1)], table.dtype);
  if (out.size > 0) {
    const groups = Math.ceil(out.size / WG);
    // Rows, row width and table length are run-time dims, and a row moves as bits (every
    // 4-byte dtype binds as u32): one pipeline per index dtype (and one for f16 tables).
    const dt = table.dtype === "f16" ? "f16" : "u32";
    const kernel = genericKernel(`is|${dt}|${idx.dtype}`, groups, () => {
      const code = `${dt === "f16" ? "enable f16;\n" : ""}${binding(0, "t", dt)}
${binding(1, "idx", idx.dtype)}
${binding(2, "out", dt, true)}
${dimsDecl(3)}
@compute @workgroup_size(${WG})
fn main(${GENERIC_BUILTINS}) {
  let i = ${GENERIC_LINEAR} * ${WG}u + lid;
  if (i >= dims.x) { return; }
  let row = u32(clamp(i32(idx[i / dims.z]), 0, i32(dims.y) - 1));
  out[i] = t[row * dims.z + i % dims.z];
}
`;
      return { code, label: "indexSelect" };
    });
    runtime().dispatch(kernel, [
      table.buffer,
      idx.buffer,
      out.buffer,
      dimsBuffer(out.size, V, D),
    ]);
  }
  return record(out, "indexSelect", [table], (g) => [scatterAddRows(g, idx, table.shape)]);
}

/** Embedding lookup: `indexSelect` of a [V, D] table. */
export const embedding = (table: Tensor, idx: Tensor): Tensor => indexSelect(table, idx);

/**
 * out[v] = sum of g[n] over the positions n with idx[n] == v, for rows of `shape` [V, ...]
 * (the gradient of `indexSelect`). Deterministic, no float atomics: each output element adds
 * its row's contributions in ascending position order from 0, bit-identical to a sequential
 * f32 sum on the CPU, on every run, eager or replayed (kernels/ops/_scatter_rows.ts). Small
 * problems (action and task embeddings) take one dispatch; others sort the positions by row
 * on the GPU first (kernels/ops/_row_sort.ts): 3 dispatches up to 2048 rows, 5 up to 4M.
 */
export function scatterAddRows(g: Tensor, idx: Tensor, shape: readonly number[]): Tensor {
  const N = idx.size;
  if (N === 0 || shape.includes(0)) return zeros(shape);
  return N <= DIRECT_MAX_POSITIONS && shape[0] * N <= DIRECT_MAX_WORK
    ? scatterRowsDirect(g, idx, shape)
    : scatterRowsSorted(g, idx, shape);
}

/** out[...] = x[..., idx[...]]: one element per row of the last axis. */
export function gatherLast(x: Tensor, idx: Tensor): Tensor {
  if (x.rank === 0) throw new Error("gatherLast: needs at least one axis");
  // The kernel binds array<f32>: another dtype's bits would be read as garbage.
  if (x.dtype !== "f32") throw new Error(`gatherLast: f32 input only, got ${x.dtype}`);
  const C = x.shape[x.rank - 1];
  const rowsShape = x.shape.slice(0, -1);
  if (idx.shape.join() !== rowsShape.join()) {
    throw new Error(`gatherLast: indices [${idx.shape}] must have shape [${rowsShape}]`);
  }
  checkIndices("gatherLast", idx, C);
  const out = Tensor.empty(rowsShape, "f32");
  if (out.size > 0) {
    const groups = Math.ceil(out.size / WG);
    const code = `${binding(0, "x", "f32")}
${binding(1, "idx", idx.dtype)}
${binding(2, "out", "f32", true)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (r >= ${out.size}u) { return; }
  out[r] = x[r * ${C}u + u32(clamp(i32(idx[r]), 0, ${C - 1}))];
}
`;
    runtime().dispatch({ code, label: "gatherLast", workgroups: grid(groups) }, [
      x.buffer,
      idx.buffer,
      out.buffer,
    ]);
  }
  return record(out, "gatherLast", [x], (g) => [oneHotScale(g, idx, x.shape)]);
}

/** [..., C] with g[r] at column idx[r] and zeros elsewhere. */
function oneHotScale(g: Tensor, idx: Tensor, shape: readonly number[]): Tensor {
  const C = shape[shape.length - 1];
  const out = Tensor.empty(shape, "f32");
  const groups = Math.ceil(out.size / WG);
  const code = `${binding(0, "g", "f32")}
${binding(1, "idx", idx.dtype)}
${binding(2, "out", "f32", true)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (i >= ${out.size}u) { return; }
  let r = i / ${C}u;
  out[i] = select(0.0, g[r], i32(i % ${C}u) == i32(idx[r]));
}
`;
  runtime().dispatch({ code, label: "gatherLast.grad", workgroups: grid(groups) }, [
    g.buffer,
    idx.buffer,
    out.buffer,
  ]);
  return out;
}
