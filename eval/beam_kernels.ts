/**
 * The two selection kernels of batched beam search (eval/beam_search.ts). Beam bookkeeping
 * stays on the GPU as small tensors: per node a score (discounted imagined return so far), the
 * first action of its path, and the row of its sequence in the model's state.
 *
 * - `beamExpand`: one thread per beam picks its top-K valid actions by Q (ties: lower action
 *   first) and writes K children (action, parent row, first action, score so far).
 * - `beamPrune`: one thread per environment adds the children's discounted imagined rewards,
 *   scores each leaf by score + gamma^(depth+1) * max over valid actions of Q, keeps the K
 *   best (ties: lower child first) and reports the best leaf's first action.
 *
 * Children of a beam whose game has fewer than K valid actions are "dead" (score -1e30) and
 * never win; they repeat the best action so every index stays valid.
 *
 * @module
 */
import { runtime } from "../kernels/core/runtime.ts";
import { Tensor } from "../kernels/core/tensor.ts";
import { binding, f32 } from "../kernels/codegen/wgsl.ts";
import {
  dimsBuffer,
  dimsDecl,
  GENERIC_BUILTINS,
  GENERIC_LINEAR,
  genericKernel,
} from "../kernels/ops/dims.ts";
import { MAX_TOPK, topkListWgsl } from "../kernels/ops/topk.ts";

const WG = 64;

/** Largest beam width: each thread keeps its K best in the top-k list of kernels/ops/topk.ts. */
export const MAX_BEAM_WIDTH = MAX_TOPK;

/**
 * The one check of a beam width K (an integer in 1..MAX_BEAM_WIDTH); returns it.
 * @throws RangeError naming the bad value.
 */
export function checkBeamWidth(k: number): number {
  if (!Number.isInteger(k) || k < 1 || k > MAX_BEAM_WIDTH) {
    throw new RangeError(`beam width must be an integer in 1..${MAX_BEAM_WIDTH}, got ${k}`);
  }
  return k;
}
/** Score of a child that does not exist (fewer valid actions than the beam width). */
export const DEAD_SCORE = -1e30;
const NEG = "-3.4028234663852886e38";

/** Children of one expansion, all [M * K]. */
export interface Expansion {
  /** Action of each child, i32 (full action id). */
  actions: Tensor;
  /** Row of the child's parent in the model state, i32. */
  parents: Tensor;
  /** First action of the child's path, i32. */
  first: Tensor;
  /** Discounted imagined return up to the parent, f32 (DEAD_SCORE for dead children). */
  base: Tensor;
}

/** The previous depth's survivors, read through `sel` (beam -> row of the child arrays). */
export interface BeamRows {
  /** i32 [M]: row of each beam in `q`, `score`, `first` and the model state. */
  sel: Tensor;
  /** f32 [R] scores of the rows. */
  score: Tensor;
  /** i32 [R] first actions of the rows. */
  first: Tensor;
}

function checkValid(op: string, valid: Tensor, A: number): number {
  if (valid.rank !== 2 || valid.shape[1] !== A || valid.dtype !== "f32") {
    throw new Error(`${op}: valid ${valid} must be f32 [N, ${A}]`);
  }
  return valid.shape[0];
}

/**
 * Expand beams: `q` f32 [R, A] holds each row's Q values; without `prev` the beams are the
 * rows themselves (the root, R = N, one beam per environment). With `prev`, beam m reads row
 * `prev.sel[m]` and there are `beamsPerEnv` beams per environment. Returns K children per beam.
 */
export function beamExpand(
  q: Tensor,
  valid: Tensor,
  k: number,
  prev: BeamRows | null,
  beamsPerEnv: number,
): Expansion {
  if (q.rank !== 2 || q.dtype !== "f32") throw new Error(`beamExpand: q ${q} must be f32 [R, A]`);
  const [R, A] = q.shape;
  const N = checkValid("beamExpand", valid, A);
  const M = prev ? prev.sel.size : R;
  if (M !== N * beamsPerEnv) {
    throw new Error(`beamExpand: ${M} beams is not ${N} environments x ${beamsPerEnv}`);
  }
  const out: Expansion = {
    actions: Tensor.empty([M * k], "i32"),
    parents: Tensor.empty([M * k], "i32"),
    first: Tensor.empty([M * k], "i32"),
    base: Tensor.empty([M * k], "f32"),
  };
  out.actions.intRange = [0, A - 1];
  out.first.intRange = [0, A - 1];
  out.parents.intRange = [0, R - 1];
  const groups = Math.ceil(M / WG);
  // One pipeline for every number of environments: beams M and rows R are run-time dims
  // (dims.x, dims.y); a warm step generates no WGSL (kernels/core/plan_cache.ts).
  const key = `beamExpand|${k}|${A}|${beamsPerEnv}|${!!prev}`;
  const kernel = genericKernel(key, groups, () => {
    const row = prev ? `u32(clamp(sel[m], 0, i32(dims.y) - 1))` : "m";
    const list = topkListWgsl(k); // validates k (beamSearch checked it with checkBeamWidth)
    const code = `${binding(0, "q", "f32")}
${binding(1, "valid", "f32")}
${binding(2, "acts", "i32", true)}
${binding(3, "parents", "i32", true)}
${binding(4, "firsts", "i32", true)}
${binding(5, "base", "f32", true)}
${
      prev
        ? `${binding(6, "sel", "i32")}\n${binding(7, "score", "f32")}\n${
          binding(8, "first", "i32")
        }`
        : ""
    }
${dimsDecl(prev ? 9 : 6)}
@compute @workgroup_size(${WG})
fn main(${GENERIC_BUILTINS}) {
  let m = ${GENERIC_LINEAR} * ${WG}u + lid;
  if (m >= dims.x) { return; }
  let n = m / ${beamsPerEnv}u;
  let row = ${row};
  ${list.declare}
  for (var a = 0u; a < ${A}u; a++) {
    if (valid[n * ${A}u + a] == 0.0) { continue; }
    let v = q[row * ${A}u + a];
    ${list.insert("v", "i32(a)")} // ties: the lower action first
  }
  let b0 = ${prev ? "score[row]" : "0.0"};
  for (var j = 0u; j < ${k}u; j++) {
    let o = m * ${k}u + j;
    var act = bi[j];
    var b = b0;
    if (act < 0) { act = max(bi[0], 0); b = ${f32(DEAD_SCORE)}; }
    acts[o] = act;
    parents[o] = i32(row);
    firsts[o] = ${prev ? "first[row]" : "act"};
    base[o] = b;
  }
}
`;
    return { code, label: `beamExpand(${k})` };
  });
  const bufs = [q, valid, out.actions, out.parents, out.first, out.base].map((t) => t.buffer);
  if (prev) bufs.push(prev.sel.buffer, prev.score.buffer, prev.first.buffer);
  bufs.push(dimsBuffer(M, R));
  runtime().dispatch(kernel, bufs);
  return out;
}

/** Result of pruning one depth's children. */
export interface Pruned {
  /** f32 [N * C]: discounted imagined return of each child's path. */
  score: Tensor;
  /** i32 [N * K]: rows (global child indices) of the K best children of each environment. */
  sel: Tensor;
  /** i32 [N]: first action of each environment's best leaf. */
  best: Tensor;
  /** i32 [N]: row of each environment's best leaf. */
  bestRow: Tensor;
  /** f32 [N]: value of each environment's best leaf. */
  bestValue: Tensor;
}

/**
 * Score the C = children / N children of each environment at `depth` (0-based):
 * score = base + gamma^depth * reward, leaf = score + gamma^(depth+1) * max_valid q.
 */
export function beamPrune(
  base: Tensor,
  reward: Tensor,
  q: Tensor,
  first: Tensor,
  valid: Tensor,
  k: number,
  depth: number,
  gamma: number,
): Pruned {
  const A = q.shape[1];
  const N = checkValid("beamPrune", valid, A);
  const total = base.size;
  if (total % N !== 0 || reward.size !== total || q.shape[0] !== total || first.size !== total) {
    throw new Error(
      `beamPrune: base ${base}, reward ${reward}, q ${q}, first ${first} disagree (N = ${N})`,
    );
  }
  const C = total / N;
  if (k > C) throw new Error(`beamPrune: keep ${k} of ${C} children`);
  const out: Pruned = {
    score: Tensor.empty([total], "f32"),
    sel: Tensor.empty([N * k], "i32"),
    best: Tensor.empty([N], "i32"),
    bestRow: Tensor.empty([N], "i32"),
    bestValue: Tensor.empty([N], "f32"),
  };
  out.sel.intRange = [0, total - 1];
  out.bestRow.intRange = [0, total - 1];
  out.best.intRange = [0, A - 1];
  const groups = Math.ceil(N / WG);
  // Environments N are a run-time dim (dims.x): one pipeline for every number of them.
  const kernel = genericKernel(`beamPrune|${k}|${C}|${A}|${depth}|${gamma}`, groups, () => {
    const list = topkListWgsl(k);
    const code = `${binding(0, "base", "f32")}
${binding(1, "reward", "f32")}
${binding(2, "q", "f32")}
${binding(3, "first", "i32")}
${binding(4, "valid", "f32")}
${binding(5, "score", "f32", true)}
${binding(6, "sel", "i32", true)}
${binding(7, "best", "i32", true)}
${binding(8, "bestRow", "i32", true)}
${binding(9, "bestValue", "f32", true)}
${dimsDecl(10)}
@compute @workgroup_size(${WG})
fn main(${GENERIC_BUILTINS}) {
  let n = ${GENERIC_LINEAR} * ${WG}u + lid;
  if (n >= dims.x) { return; }
  ${list.declare}
  for (var c = 0u; c < ${C}u; c++) {
    let g = n * ${C}u + c;
    let s = base[g] + ${f32(gamma ** depth)} * reward[g];
    score[g] = s;
    var mq = ${NEG};
    var any = false;
    for (var a = 0u; a < ${A}u; a++) {
      if (valid[n * ${A}u + a] == 0.0) { continue; }
      mq = max(mq, q[g * ${A}u + a]);
      any = true;
    }
    var v = s;
    if (any) { v = s + ${f32(gamma ** (depth + 1))} * mq; }
    ${list.insert("v", "i32(c)")} // ties: the lower child first
  }
  for (var j = 0u; j < ${k}u; j++) { sel[n * ${k}u + j] = i32(n * ${C}u) + bi[j]; }
  let top = i32(n * ${C}u) + bi[0];
  best[n] = first[top];
  bestRow[n] = top;
  bestValue[n] = bv[0];
}
`;
    return { code, label: `beamPrune(${k}/${C})` };
  });
  const bufs = [base, reward, q, first, valid, out.score, out.sel, out.best, out.bestRow];
  bufs.push(out.bestValue);
  runtime().dispatch(kernel, [...bufs.map((t) => t.buffer), dimsBuffer(N)]);
  return out;
}
