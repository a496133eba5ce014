/**
 * AdamW as one fused kernel per parameter, and global-norm gradient clipping that never
 * reads back: the clip scale is computed on the GPU into a buffer the AdamW kernels read.
 *
 * @module
 */
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { keep, type Tensor, tidy } from "../core/tensor.ts";
import { zeros } from "../ops/elementwise.ts";
import { binding, f32, grid, linearWorkgroup } from "../codegen/wgsl.ts";

/** AdamW hyper-parameters (PyTorch's defaults except the learning rate). */
export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this value (no clipping when absent). */
  maxGradNorm?: number;
  /** Parameter names (or a predicate) exempt from weight decay, e.g. biases and norms. */
  noDecay?: (name: string) => boolean;
}

const PARTIALS = 64;
const WG = 256;

/** Decoupled-weight-decay Adam over a fixed list of named parameters. */
export class AdamW {
  readonly params: Tensor[];
  readonly state: { m: Tensor; v: Tensor }[];
  step = 0;
  lr: number;
  readonly #opts: Required<Omit<AdamWOptions, "maxGradNorm" | "noDecay">> & AdamWOptions;
  /** [norm, scale]: the last step's global gradient norm and the clip factor applied. */
  readonly clipStats: Tensor;
  readonly #partials: Tensor;

  /** Full names of the parameters (for `noDecay` and messages). */
  readonly names: readonly string[];

  /**
   * `params` as `module.namedParameters()` (names decide `noDecay`), or plain tensors (their
   * `.name` is used).
   */
  constructor(
    params: readonly Tensor[] | readonly (readonly [string, Tensor])[],
    opts: AdamWOptions,
  ) {
    const named = params.map((p) => (p instanceof Array ? p : [p.name, p] as const));
    this.params = named.map(([, p]) => p);
    this.names = named.map(([n]) => n);
    this.#opts = {
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      ...opts,
    };
    this.lr = opts.lr;
    this.state = this.params.map((p) => ({ m: keep(zeros(p.shape)), v: keep(zeros(p.shape)) }));
    this.clipStats = keep(zeros([2]));
    this.#partials = keep(zeros([Math.max(1, this.params.length) * PARTIALS]));
  }

  /** Record one update of every parameter that has a gradient. No readback. */
  update(): void {
    this.step++;
    const { beta1, beta2, eps, weightDecay, maxGradNorm, noDecay } = this.#opts;
    const rt = runtime();
    if (maxGradNorm !== undefined) this.#recordClip(maxGradNorm);
    else {
      // scale = 1: write through a tiny kernel so no upload races recorded commands.
      rt.dispatch({
        code: `${binding(0, "s", "f32", true)}
@compute @workgroup_size(1) fn main() { s[0] = 0.0; s[1] = 1.0; }`,
        label: "adamw.noclip",
        workgroups: [1, 1, 1],
      }, [this.clipStats.buffer]);
    }
    const bc1 = 1 - beta1 ** this.step;
    const bc2 = 1 - beta2 ** this.step;
    const hyper = rt.upload(
      new Float32Array([this.lr, beta1, beta2, eps, bc1, bc2, 1 - this.lr * weightDecay, 0]),
    );
    this.params.forEach((p, i) => {
      if (!p.grad) return;
      const decay = noDecay?.(this.names[i]) ? false : weightDecay !== 0;
      const n = p.size;
      const groups = Math.ceil(n / WG);
      const kernel = planCache(`adamw|${n}|${decay}|${this.names[i] || i}`, () => {
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
        return { code, label: `adamw(${this.names[i] || i})`, workgroups: grid(groups) };
      });
      rt.dispatch(kernel, [
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

  #recordClip(maxNorm: number): void {
    const rt = runtime();
    this.params.forEach((p, slot) => {
      if (!p.grad) return;
      const n = p.size;
      const groups = Math.min(PARTIALS, Math.max(1, Math.ceil(n / (WG * 8))));
      const kernel = planCache(`clip.sumsq|${n}|${slot}`, () => {
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
        return { code, label: "clip.sumsq", workgroups: [groups, 1, 1] };
      });
      rt.dispatch(kernel, [
        p.grad.buffer,
        this.#partials.buffer,
      ]);
    });
    const total = this.params.length * PARTIALS;
    const hasGrad = this.params.map((p) => (p.grad ? 1 : 0));
    const code = `${binding(0, "partials", "f32")}
${binding(1, "stats", "f32", true)}
const HAS: array<u32, ${hasGrad.length}> = array<u32, ${hasGrad.length}>(${
      hasGrad.map((h) => `${h}u`).join(", ")
    });
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
    rt.dispatch({ code, label: "clip.scale", workgroups: [1, 1, 1] }, [
      this.#partials.buffer,
      this.clipStats.buffer,
    ]);
  }

  /** Drop every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** Moments and step, for checkpoints (names follow the parameter order). */
  stateTensors(): { step: number; m: Tensor[]; v: Tensor[] } {
    return { step: this.step, m: this.state.map((s) => s.m), v: this.state.map((s) => s.v) };
  }

  /** Free the optimizer's GPU state. */
  dispose(): void {
    tidy(() => {
      for (const s of this.state) {
        s.m.dispose();
        s.v.dispose();
      }
      this.clipStats.dispose();
      this.#partials.dispose();
    });
  }
}
