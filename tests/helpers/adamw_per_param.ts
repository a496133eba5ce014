/**
 * The former optimizer kernels, one clip kernel and one AdamW kernel per parameter (the code
 * of kernels/nn/optim.ts before the multi-tensor kernels), kept as the oracle that the
 * multi-tensor AdamW is bit-identical to (tests/engine_optim_multi_test.ts).
 */
import { runtime } from "../../kernels/core/runtime.ts";
import { keep, type Tensor } from "../../kernels/core/tensor.ts";
import { zeros } from "../../kernels/ops/elementwise.ts";
import { binding, f32, grid, linearWorkgroup } from "../../kernels/codegen/wgsl.ts";

const PARTIALS = 64;
const WG = 256;

/** Per-parameter AdamW with global-norm clipping (the former implementation). */
export class PerParamAdamW {
  readonly state: { m: Tensor; v: Tensor }[];
  readonly clipStats = keep(zeros([2]));
  readonly #partials: Tensor;
  step = 0;

  constructor(
    readonly params: readonly Tensor[],
    readonly opts: {
      lr: number;
      beta1: number;
      beta2: number;
      eps: number;
      weightDecay: number;
      maxGradNorm?: number;
      decay: boolean[];
    },
  ) {
    this.state = params.map((p) => ({ m: keep(zeros(p.shape)), v: keep(zeros(p.shape)) }));
    this.#partials = keep(zeros([Math.max(1, params.length) * PARTIALS]));
  }

  /** One step over the parameters that have a gradient. */
  update(): void {
    this.step++;
    const { lr, beta1, beta2, eps, weightDecay, maxGradNorm } = this.opts;
    const rt = runtime();
    if (maxGradNorm !== undefined) this.#clip(maxGradNorm);
    else {
      rt.dispatch({
        code: `${binding(0, "s", "f32", true)}
@compute @workgroup_size(1) fn main() { s[0] = 0.0; s[1] = 1.0; }`,
        label: "old.noclip",
        workgroups: [1, 1, 1],
      }, [this.clipStats.buffer]);
    }
    const bc1 = 1 - beta1 ** this.step;
    const bc2 = 1 - beta2 ** this.step;
    const hyper = rt.upload(
      new Float32Array([lr, beta1, beta2, eps, bc1, bc2, 1 - lr * weightDecay, 0]),
    );
    this.params.forEach((p, i) => {
      if (!p.grad) return;
      const decay = this.opts.decay[i] && weightDecay !== 0;
      const n = p.size;
      const groups = Math.ceil(n / WG);
      const code = `${binding(0, "p", "f32", true)}
${binding(1, "g", "f32")}
${binding(2, "m", "f32", true)}
${binding(3, "v", "f32", true)}
${binding(4, "h", "f32")}
${binding(5, "clip", "f32")}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (i >= ${n}u) { return; }
  let lr = h[0]; let b1 = h[1]; let b2 = h[2]; let eps = h[3];
  let grad = g[i] * clip[1];
  let mi = b1 * m[i] + (1.0 - b1) * grad;
  let vi = b2 * v[i] + (1.0 - b2) * grad * grad;
  m[i] = mi;
  v[i] = vi;
  let update = (mi / h[4]) / (sqrt(vi / h[5]) + eps);
  p[i] = p[i]${decay ? " * h[6]" : ""} - lr * update;
}
`;
      rt.dispatch({ code, label: "old.adamw", workgroups: grid(groups) }, [
        p.buffer,
        p.grad.buffer,
        this.state[i].m.buffer,
        this.state[i].v.buffer,
        hyper,
        this.clipStats.buffer,
      ]);
    });
    rt.pool.release(hyper);
  }

  #clip(maxNorm: number): void {
    const rt = runtime();
    this.params.forEach((p, slot) => {
      if (!p.grad) return;
      const n = p.size;
      const groups = Math.min(PARTIALS, Math.max(1, Math.ceil(n / (WG * 8))));
      const code = `${binding(0, "g", "f32")}
${binding(1, "partials", "f32", true)}
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = wid.x * ${WG}u + lid; i < ${n}u; i += ${groups * WG}u) { let x = g[i]; s += x * x; }
  red[lid] = s;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k = k >> 1u) {
    if (lid < k) { red[lid] += red[lid + k]; }
    workgroupBarrier();
  }
  if (lid == 0u) { partials[${slot * PARTIALS}u + wid.x] = red[0]; }
  if (lid == 0u && wid.x == 0u) {
    for (var j = ${groups}u; j < ${PARTIALS}u; j++) { partials[${slot * PARTIALS}u + j] = 0.0; }
  }
}
`;
      rt.dispatch({ code, label: "old.sumsq", workgroups: [groups, 1, 1] }, [
        p.grad.buffer,
        this.#partials.buffer,
      ]);
    });
    const total = this.params.length * PARTIALS;
    const has = this.params.map((p) => (p.grad ? "1u" : "0u"));
    const code = `${binding(0, "partials", "f32")}
${binding(1, "stats", "f32", true)}
const HAS: array<u32, ${has.length}> = array<u32, ${has.length}>(${has.join(", ")});
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var i = lid; i < ${total}u; i += ${WG}u) {
    if (HAS[i / ${PARTIALS}u] == 1u) { s += partials[i]; }
  }
  red[lid] = s;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k = k >> 1u) {
    if (lid < k) { red[lid] += red[lid + k]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let norm = sqrt(red[0]);
    stats[0] = norm;
    stats[1] = min(1.0, ${f32(maxNorm)} / (norm + 1e-6));
  }
}
`;
    rt.dispatch({ code, label: "old.clip.scale", workgroups: [1, 1, 1] }, [
      this.#partials.buffer,
      this.clipStats.buffer,
    ]);
  }

  /** Free the state. */
  dispose(): void {
    for (const s of this.state) {
      s.m.dispose();
      s.v.dispose();
    }
    this.clipStats.dispose();
    this.#partials.dispose();
  }
}
