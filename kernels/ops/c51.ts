/**
 * Distributional (C51) pieces: the categorical projection of r + gamma * z onto the fixed
 * support, the expected value of atom distributions, and masked greedy action selection.
 *
 * The projection is written as m_i = sum_j p_j * max(0, 1 - |b_j - i|) with
 * b_j = (clip(r + gamma (1 - done) z_j) - vMin) / dz: the same split between the two
 * neighbouring atoms as the usual floor/ceil scatter, but each output atom is one thread's
 * sum, so there are no atomics and no special case when b_j lands exactly on an atom.
 *
 * {@linkcode JOWA_SUPPORT} is the one definition of JOWA's support: the world-action configs
 * (models/world_action/configs.ts) take their `atoms`, `vMin` and `vMax` from it.
 * @module
 */
import { record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, f32, grid, linearWorkgroup } from "../codegen/wgsl.ts";
import { mapKernel } from "./map.ts";
import { argmax } from "./reduce.ts";

/** The support of the value distribution: `atoms` values evenly spaced on [vMin, vMax]. */
export interface Support {
  /** Number of atoms (>= 2). */
  atoms: number;
  /** Smallest return the distribution can express (the first atom). */
  vMin: number;
  /** Largest return the distribution can express (the last atom). */
  vMax: number;
}

/** JOWA's support: 51 atoms on [-10, 30] (jowa.md, "Distributional Q (C51)"). */
export const JOWA_SUPPORT: Support = Object.freeze({ atoms: 51, vMin: -10, vMax: 30 });

/** Atom values z_i = vMin + i (vMax - vMin) / (atoms - 1) of a support (float64). */
export function supportValues(s: Support): Float64Array {
  const dz = (s.vMax - s.vMin) / (s.atoms - 1);
  return Float64Array.from({ length: s.atoms }, (_, i) => s.vMin + i * dz);
}

const WG = 256;

/**
 * Project target distributions `probs` [N, atoms] through r + gamma * (1 - done) * z onto the
 * support. `rewards` and `terminals` (0/1) are f32 [N]. No gradient (a target).
 */
export function c51Project(
  probs: Tensor,
  rewards: Tensor,
  terminals: Tensor,
  gamma: number,
  support: Support = JOWA_SUPPORT,
): Tensor {
  const A = support.atoms;
  if (probs.rank !== 2 || probs.shape[1] !== A) {
    throw new Error(`c51Project: probs [${probs.shape}] must be [N, ${A}]`);
  }
  const N = probs.shape[0];
  for (const [name, t] of [["rewards", rewards], ["terminals", terminals]] as const) {
    if (t.size !== N || t.dtype !== "f32") {
      throw new Error(`c51Project: ${name} ${t} must be f32 with ${N} elements`);
    }
  }
  const out = Tensor.empty([N, A]);
  const total = N * A;
  const groups = Math.ceil(total / WG);
  const dz = (support.vMax - support.vMin) / (A - 1);
  const code = `${binding(0, "p", "f32")}
${binding(1, "r", "f32")}
${binding(2, "done", "f32")}
${binding(3, "m", "f32", true)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (k >= ${total}u) { return; }
  let n = k / ${A}u;
  let i = f32(k % ${A}u);
  let discount = ${f32(gamma)} * (1.0 - done[n]);
  var acc = 0.0;
  for (var j = 0u; j < ${A}u; j++) {
    let z = ${f32(support.vMin)} + f32(j) * ${f32(dz)};
    let tz = clamp(r[n] + discount * z, ${f32(support.vMin)}, ${f32(support.vMax)});
    let b = (tz - ${f32(support.vMin)}) / ${f32(dz)};
    acc += p[n * ${A}u + j] * max(0.0, 1.0 - abs(b - i));
  }
  m[k] = acc;
}
`;
  runtime().dispatch({ code, label: "c51Project", workgroups: grid(groups) }, [
    probs.buffer,
    rewards.buffer,
    terminals.buffer,
    out.buffer,
  ]);
  return out;
}

/** Expected values sum_i z_i p_i of distributions [..., atoms] -> [...]. No gradient. */
export function expectedValue(probs: Tensor, support: Support = JOWA_SUPPORT): Tensor {
  const A = support.atoms;
  if (probs.shape[probs.rank - 1] !== A) {
    throw new Error(`expectedValue: last axis of [${probs.shape}] must be ${A}`);
  }
  const rows = probs.size / A;
  const out = Tensor.empty(probs.shape.slice(0, -1));
  const groups = Math.ceil(rows / WG);
  const dz = (support.vMax - support.vMin) / (A - 1);
  const code = `${binding(0, "p", "f32")}
${binding(1, "q", "f32", true)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (r >= ${rows}u) { return; }
  var s = 0.0;
  for (var i = 0u; i < ${A}u; i++) {
    s += p[r * ${A}u + i] * (${f32(support.vMin)} + f32(i) * ${f32(dz)});
  }
  q[r] = s;
}
`;
  runtime().dispatch({ code, label: "expectedValue", workgroups: grid(groups) }, [
    probs.buffer,
    out.buffer,
  ]);
  return out;
}

/**
 * argmax over the last axis of `q` [..., 18] among actions where `valid` [..., 18] (or
 * broadcastable, e.g. [1, 18] per game) is nonzero. Returns i32 [...].
 */
export function maskedArgmax(q: Tensor, valid: Tensor): Tensor {
  const masked = mapKernel(
    "maskedArgmax.mask",
    [q, valid],
    "select(-3.0e38, a, b != 0.0)",
    "f32",
    q.shape,
  );
  const out = argmax(masked, -1);
  masked.dispose();
  return out;
}

/**
 * Row `actions[n]` of each `x[n]` [N, A, K] -> [N, K] (the chosen action's distribution).
 * The gradient scatters back into that row.
 */
export function selectAction(x: Tensor, actions: Tensor): Tensor {
  if (x.rank !== 3 || actions.size !== x.shape[0]) {
    throw new Error(
      `selectAction: x [${x.shape}] must be [N, A, K] with ${actions.size} = N actions`,
    );
  }
  if (actions.dtype !== "i32") {
    throw new Error(`selectAction: actions must be i32, got ${actions.dtype}`);
  }
  const [N, A, K] = x.shape;
  const r = actions.intRange;
  if (r && N > 0 && (r[0] < 0 || r[1] >= A)) {
    throw new Error(`selectAction: action range [${r[0]}, ${r[1]}] outside [0, ${A - 1}]`);
  }
  const out = Tensor.empty([N, K]);
  const groups = Math.ceil((N * K) / WG);
  const code = `${binding(0, "x", "f32")}
${binding(1, "act", "i32")}
${binding(2, "out", "f32", true)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (k >= ${N * K}u) { return; }
  let n = k / ${K}u;
  let a = u32(clamp(act[n], 0, ${A - 1}));
  out[k] = x[(n * ${A}u + a) * ${K}u + k % ${K}u];
}
`;
  runtime().dispatch({ code, label: "selectAction", workgroups: grid(groups) }, [
    x.buffer,
    actions.buffer,
    out.buffer,
  ]);
  return record(out, "selectAction", [x], (g) => {
    const dx = Tensor.empty(x.shape);
    const total = N * A * K;
    const gg = Math.ceil(total / WG);
    const back = `${binding(0, "g", "f32")}
${binding(1, "act", "i32")}
${binding(2, "dx", "f32", true)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let k = ${linearWorkgroup(gg)} * ${WG}u + lid;
  if (k >= ${total}u) { return; }
  let n = k / ${A * K}u;
  let a = (k / ${K}u) % ${A}u;
  dx[k] = select(0.0, g[n * ${K}u + k % ${K}u], i32(a) == act[n]);
}
`;
    runtime().dispatch({ code: back, label: "selectAction.grad", workgroups: grid(gg) }, [
      g.buffer,
      actions.buffer,
      dx.buffer,
    ]);
    return [dx];
  });
}
