/**
 * Input embeddings of interleaved observation/action token rows in one dispatch (inference,
 * no gradient): for token i of sequence n at absolute position p = start + i,
 *
 *   x[n, i] = (table[tok] + taskTable[task[n]]) + position[p]
 *
 * where `table`/`taskTable` are the action tables at action positions (p % period ==
 * period - 1) and the observation tables elsewhere: the same values, bit for bit, as the
 * indexSelect + add composition of models/world_action/model.ts `embed` (same order of
 * additions), which takes 5 dispatches per decoding step and about 40 for a prefill.
 *
 * Shape-generic: rows, t, start, period and the tables' lengths come from a uniform; only the width d (and the
 * dtypes) are in the WGSL, so every step of every length runs one pipeline. Token and task
 * ids are clamped into their tables (GPU-computed ids cannot be checked on the host).
 *
 * @module
 */
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { constTensor, Tensor } from "../core/tensor.ts";
import { checkIndices } from "./gather.ts";

const WG = 64;
const MAX_X = 32768;

/** The embedding tables of an interleaved token stream (all f32 [rows, d]). */
export interface InterleavedTables {
  obs: Tensor;
  action: Tensor;
  taskObs: Tensor;
  taskAction: Tensor;
  position: Tensor;
  /** Tokens per timestep; the last of each timestep is the action. */
  period: number;
}

/**
 * Embeddings [N, t, d] of `tokens` (i32 [N, t], raw ids) of tasks `tasks` (i32 [N]) at
 * positions start.. (see the module doc). Throws on bad shapes or positions past the table.
 */
export function embedInterleaved(
  tokens: Tensor,
  tasks: Tensor,
  tables: InterleavedTables,
  start: number,
): Tensor {
  const op = "embedInterleaved";
  if (tokens.rank !== 2 || tokens.dtype !== "i32") {
    throw new Error(`${op}: tokens ${tokens} must be i32 [N, t]`);
  }
  const [N, t] = tokens.shape;
  if (tasks.rank !== 1 || tasks.shape[0] !== N || tasks.dtype !== "i32") {
    throw new Error(`${op}: tasks ${tasks} must be i32 [${N}]`);
  }
  const d = tables.position.shape[1];
  for (const [name, tab] of Object.entries(tables)) {
    if (name === "period") continue;
    const tt = tab as Tensor;
    if (tt.rank !== 2 || tt.shape[1] !== d || tt.dtype !== "f32" || tt.shape[0] === 0) {
      throw new Error(`${op}: table ${name} [${tt.shape}] must be f32 [rows, ${d}]`);
    }
  }
  checkIndices(op, tasks, Math.min(tables.taskObs.shape[0], tables.taskAction.shape[0]));
  if (!Number.isInteger(start) || start < 0 || start + t > tables.position.shape[0]) {
    throw new Error(
      `${op}: positions [${start}, ${start + t}) exceed ${tables.position.shape[0]}`,
    );
  }
  if (!Number.isInteger(tables.period) || tables.period < 1) {
    throw new Error(`${op}: period ${tables.period} must be a positive integer`);
  }
  const out = Tensor.empty([N, t, d], "f32");
  const rows = N * t;
  if (out.size === 0) return out;
  const x = Math.min(rows, MAX_X);
  const grid = [x, Math.ceil(rows / x), 1] as const;
  // One WGSL per width; one Kernel object per grid (the runtime finds it by identity).
  const kernel = planCache(`embi|${d}|${grid}`, () => ({ ...source(d), workgroups: grid }));
  const lens = [tables.obs, tables.action, tables.taskObs, tables.taskAction].map((x) =>
    x.shape[0]
  );
  const prm = constTensor(new Uint32Array([start, t, rows, tables.period, ...lens]), [8], "u32");
  runtime().dispatch(kernel, [
    tokens.buffer,
    tasks.buffer,
    tables.obs.buffer,
    tables.action.buffer,
    tables.taskObs.buffer,
    tables.taskAction.buffer,
    tables.position.buffer,
    out.buffer,
    prm.buffer,
  ]);
  prm.dispose();
  return out;
}

function source(d: number): { code: string; label: string } {
  const vec = d % 4 === 0;
  const W = vec ? d / 4 : d;
  const T = vec ? "vec4<f32>" : "f32";
  return planCache(`embi|${d}`, () => {
    const code = `struct Params { start: u32, t: u32, rows: u32, period: u32, lens: vec4<u32> }
@group(0) @binding(0) var<storage, read> tok_g: array<i32>;
@group(0) @binding(1) var<storage, read> task_g: array<i32>;
@group(0) @binding(2) var<storage, read> obs_g: array<${T}>;
@group(0) @binding(3) var<storage, read> act_g: array<${T}>;
@group(0) @binding(4) var<storage, read> tobs_g: array<${T}>;
@group(0) @binding(5) var<storage, read> tact_g: array<${T}>;
@group(0) @binding(6) var<storage, read> pos_g: array<${T}>;
@group(0) @binding(7) var<storage, read_write> out_g: array<${T}>;
@group(0) @binding(8) var<uniform> prm: Params;
fn row_of(id: i32, len: u32) -> u32 {
  return u32(clamp(id, 0, i32(len) - 1));
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= prm.rows) { return; }
  let n = r / prm.t;
  let p = prm.start + r % prm.t;
  let tok = tok_g[r];
  let task = task_g[n];
  let is_act = p % prm.period == prm.period - 1u;
  for (var c = lid; c < ${W}u; c += ${WG}u) {
    var v: ${T};
    if (is_act) {
      v = act_g[row_of(tok, prm.lens.y) * ${W}u + c] + tact_g[row_of(task, prm.lens.w) * ${W}u + c];
    } else {
      v = obs_g[row_of(tok, prm.lens.x) * ${W}u + c] + tobs_g[row_of(task, prm.lens.z) * ${W}u + c];
    }
    out_g[r * ${W}u + c] = v + pos_g[p * ${W}u + c];
  }
}
`;
    return { code, label: "embedInterleaved" };
  });
}
