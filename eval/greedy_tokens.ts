/**
 * Greedy imagined tokens for the planner in one dispatch: argmax over each row of
 * next-observation logits [M, V] (the first maximum on ties, as the `argmax` op) gives the
 * next input tokens i32 [M], and the same kernel stores them as column j of the imagined
 * observation [M, O], and (optionally) looks up their input embeddings for the next step.
 * This replaces argmax, the next step's embedding, and the concat of 36 token columns (one
 * copy dispatch per column) of eval/wam_planning_model.ts `imagine`.
 *
 * Shape-generic in M, j and the position (a uniform); V, O and d are in the WGSL.
 *
 * @module
 */
import { runtime } from "../kernels/core/runtime.ts";
import { planCache } from "../kernels/core/plan_cache.ts";
import { constTensor, Tensor } from "../kernels/core/tensor.ts";

// One workgroup per row: 256 threads keep each thread's serial share of the V logits short;
// the tree is the argmax op's, wider.
const WG = 256;
const MAX_X = 32768;

/** The next input's embedding tables (models/world_action/model.ts `embed`, observation kind). */
export interface NextEmbedding {
  /** Observation token table f32 [V', d]. */
  obs: Tensor;
  /** Task table of observation positions f32 [tasks, d]. */
  taskObs: Tensor;
  /** Position table f32 [context, d]. */
  position: Tensor;
  /** i32 [M] task of each row. */
  tasks: Tensor;
  /** Absolute position of the new tokens. */
  at: number;
}

/**
 * Tokens i32 [M] = argmax of `logits` f32 [M, V] along V, also written into column `j` of
 * `obs` i32 [M, O] (in place). With `next`, the same dispatch also returns the tokens' input
 * embeddings x [M, 1, d] = (obs[tok] + taskObs[task]) + position[at] (the additions in the
 * order of kernels/ops/embed_interleaved.ts: the same bits), for the model's next step.
 */
export function greedyTokensInto(
  logits: Tensor,
  obs: Tensor,
  j: number,
  next?: NextEmbedding,
): { tok: Tensor; x: Tensor | null } {
  const op = "greedyTokensInto";
  if (logits.rank !== 2 || logits.dtype !== "f32" || logits.shape[1] === 0) {
    throw new Error(`${op}: logits ${logits} must be f32 [M, V]`);
  }
  const [M, V] = logits.shape;
  if (obs.rank !== 2 || obs.shape[0] !== M || obs.dtype !== "i32") {
    throw new Error(`${op}: obs ${obs} must be i32 [${M}, O]`);
  }
  const O = obs.shape[1];
  if (!Number.isInteger(j) || j < 0 || j >= O) {
    throw new Error(`${op}: column ${j} not in [0, ${O})`);
  }
  const d = next ? next.position.shape[1] : 0;
  if (next) {
    for (const [name, t] of [["obs", next.obs], ["taskObs", next.taskObs]] as const) {
      if (t.rank !== 2 || t.shape[1] !== d || t.dtype !== "f32" || t.shape[0] === 0) {
        throw new Error(`${op}: table ${name} [${t.shape}] must be f32 [rows, ${d}]`);
      }
    }
    if (next.tasks.shape.join() !== `${M}` || next.tasks.dtype !== "i32") {
      throw new Error(`${op}: tasks ${next.tasks} must be i32 [${M}]`);
    }
    if (!Number.isInteger(next.at) || next.at < 0 || next.at >= next.position.shape[0]) {
      throw new Error(`${op}: position ${next.at} outside the table of ${next.position.shape[0]}`);
    }
  }
  const tok = Tensor.empty([M], "i32");
  const x = next ? Tensor.empty([M, 1, d], "f32") : null;
  if (M === 0) return { tok, x };
  const gx = Math.min(M, MAX_X);
  const grid = [gx, Math.ceil(M / gx), 1] as const;
  const W = d % 4 === 0 ? d / 4 : d;
  const T = d % 4 === 0 ? "vec4<f32>" : "f32";
  const embed = !next ? "" : `
  let task = u32(clamp(task_g[o], 0, i32(prm.n_task) - 1));
  let row = u32(clamp(i32(si[0]), 0, i32(prm.n_obs) - 1));
  for (var c = lid; c < ${W}u; c += ${WG}u) {
    x_g[o * ${W}u + c] = (obs_g[row * ${W}u + c] + tobs_g[task * ${W}u + c]) +
      pos_g[prm.at * ${W}u + c];
  }`;
  const bindings = !next ? "" : `
@group(0) @binding(4) var<storage, read> task_g: array<i32>;
@group(0) @binding(5) var<storage, read> obs_g: array<${T}>;
@group(0) @binding(6) var<storage, read> tobs_g: array<${T}>;
@group(0) @binding(7) var<storage, read> pos_g: array<${T}>;
@group(0) @binding(8) var<storage, read_write> x_g: array<${T}>;`;
  const logit = `fn logit(o: u32, r: u32) -> f32 { return x[o * ${V}u + r]; }`;
  const kernel = planCache(`greedy|${V}|${O}|${d}|${grid}`, () => ({
    code:
      `struct Params { j: u32, rows: u32, at: u32, n_obs: u32, n_task: u32, p5: u32, p6: u32, p7: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> tok: array<i32>;
@group(0) @binding(2) var<storage, read_write> obs: array<i32>;
@group(0) @binding(3) var<uniform> prm: Params;${bindings}
${logit}
var<workgroup> sv: array<f32, ${WG}>;
var<workgroup> si: array<u32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let o = wid.x + wid.y * nwg.x;
  if (o >= prm.rows) { return; }
  // The argmax op's row reduction: start from element 0, strict >, ties to the lower index.
  var acc = logit(o, 0u);
  var idx = 0u;
  for (var r = lid; r < ${V}u; r += ${WG}u) {
    let v = logit(o, r);
    if (v > acc) { acc = v; idx = r; }
  }
  sv[lid] = acc;
  si[lid] = idx;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      let v2 = sv[lid + s];
      let i2 = si[lid + s];
      if (v2 > sv[lid] || (v2 == sv[lid] && i2 < si[lid])) { sv[lid] = v2; si[lid] = i2; }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    tok[o] = i32(si[0]);
    obs[o * ${O}u + prm.j] = i32(si[0]);
  }${embed}
}
`,
    label: "greedyTokensInto",
    workgroups: grid,
  }));
  const prm = constTensor(
    new Uint32Array([
      j,
      M,
      next?.at ?? 0,
      next?.obs.shape[0] ?? 0,
      next?.taskObs.shape[0] ?? 0,
      0,
      0,
      0,
    ]),
    [8],
    "u32",
  );
  const bufs = [logits.buffer, tok.buffer, obs.buffer, prm.buffer];
  if (next) {
    bufs.push(next.tasks.buffer, next.obs.buffer, next.taskObs.buffer, next.position.buffer);
    bufs.push(x!.buffer);
  }
  runtime().dispatch(kernel, bufs);
  prm.dispose();
  tok.intRange = [0, V - 1];
  return { tok, x };
}
