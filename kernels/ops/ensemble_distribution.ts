/**
 * The Q-head ensemble's distribution in one dispatch (inference, no gradient): from the
 * members' logits l_e [..., A, atoms] (e < E),
 *
 *   logProbs = log mean_e softmax(l_e) = logsumexp_e(logSoftmax(l_e)) - log E
 *   probs    = exp(logProbs),   values = sum_atoms probs * support
 *
 * the values of models/world_action/heads.ts `qDistribution` (its 3 E + 5 dispatches for
 * E > 1: logSoftmax per member, concat copies, logsumexp, the shift, exp, mul, sum). One
 * thread per (row, action): E * atoms values each, summed in a fixed order.
 *
 * @module
 */
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { constTensor, Tensor } from "../core/tensor.ts";
import { f32 } from "../codegen/wgsl.ts";

const WG = 64;
const MAX_X = 32768;

/** logProbs, probs [..., A, atoms] and values [..., A] of the ensemble `logits`. */
export function ensembleDistribution(
  logits: readonly Tensor[],
  support: Tensor,
): { logProbs: Tensor; probs: Tensor; values: Tensor } {
  const op = "ensembleDistribution";
  const E = logits.length;
  if (E === 0) throw new Error(`${op}: no members`);
  const shape = logits[0].shape;
  const atoms = shape[shape.length - 1];
  for (const l of logits) {
    if (l.shape.join() !== shape.join() || l.dtype !== "f32" || l.rank < 2) {
      throw new Error(`${op}: member logits ${l} must all be f32 [..., A, atoms] as ${logits[0]}`);
    }
  }
  if (support.shape.join() !== `${atoms}` || support.dtype !== "f32") {
    throw new Error(`${op}: support ${support} must be f32 [${atoms}]`);
  }
  const rows = logits[0].size / atoms;
  const logProbs = Tensor.empty(shape, "f32");
  const probs = Tensor.empty(shape, "f32");
  const values = Tensor.empty(shape.slice(0, -1), "f32");
  if (rows === 0) return { logProbs, probs, values };
  const groups = Math.ceil(rows / WG);
  const gx = Math.min(groups, MAX_X);
  const grid = [gx, Math.ceil(groups / gx), 1] as const;
  const kernel = planCache(`ensd|${E}|${atoms}|${grid}`, () => {
    const decl = Array.from(
      { length: E },
      (_, e) => `@group(0) @binding(${e}) var<storage, read> l${e}: array<f32>;`,
    );
    // Per member: max, then log-sum-exp (logSoftmax's formula); lp_e = l - max - log(sum).
    const stats = Array.from({ length: E }, (_, e) => `
  var mx${e} = l${e}[base];
  for (var k = 1u; k < ${atoms}u; k++) { mx${e} = max(mx${e}, l${e}[base + k]); }
  var s${e} = 0.0;
  for (var k = 0u; k < ${atoms}u; k++) { s${e} += exp(l${e}[base + k] - mx${e}); }
  let ls${e} = log(s${e});`).join("");
    const lp = (e: number) => `(l${e}[base + k] - mx${e} - ls${e})`;
    const combine = E === 1 ? `let v = ${lp(0)};` : `
    ${Array.from({ length: E }, (_, e) => `let p${e} = ${lp(e)};`).join(" ")}
    let m = ${Array.from({ length: E }, (_, e) => `p${e}`).reduce((a, b) => `max(${a}, ${b})`)};
    let v = m + log(${Array.from({ length: E }, (_, e) => `exp(p${e} - m)`).join(" + ")}) + ${
      f32(Math.fround(-Math.log(E)))
    };`;
    const code = `struct Params { rows: u32, p1: u32, p2: u32, p3: u32 }
${decl.join("\n")}
@group(0) @binding(${E}) var<storage, read> sup: array<f32>;
@group(0) @binding(${E + 1}) var<storage, read_write> lp_o: array<f32>;
@group(0) @binding(${E + 2}) var<storage, read_write> pr_o: array<f32>;
@group(0) @binding(${E + 3}) var<storage, read_write> val_o: array<f32>;
@group(0) @binding(${E + 4}) var<uniform> prm: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let r = (wid.x + wid.y * nwg.x) * ${WG}u + lid;
  if (r >= prm.rows) { return; }
  let base = r * ${atoms}u;${stats}
  var q = 0.0;
  for (var k = 0u; k < ${atoms}u; k++) {
    ${combine}
    let p = exp(v);
    lp_o[base + k] = v;
    pr_o[base + k] = p;
    q += p * sup[k];
  }
  val_o[r] = q;
}
`;
    return { code, label: `ensembleDistribution(${E})`, workgroups: grid };
  });
  const prm = constTensor(new Uint32Array([rows, 0, 0, 0]), [4], "u32");
  runtime().dispatch(kernel, [
    ...logits.map((l) => l.buffer),
    support.buffer,
    logProbs.buffer,
    probs.buffer,
    values.buffer,
    prm.buffer,
  ]);
  prm.dispose();
  return { logProbs, probs, values };
}
