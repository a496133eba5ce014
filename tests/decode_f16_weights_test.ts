/**
 * The decode kernels on the weights' f16 copies (`--precision f16`: the copies the f16
 * products read, kernels/ops/matmul_f16.ts `registerF16Shadow`): the skinny products (plain
 * with bias + GELU + residual, the layer-norm (+ Mish) prologue, the KV-cache epilogue),
 * `cachedAttentionProj`'s projection, the compact layer's `qkvAttentionProj` and
 * `sumPartsMlpUp`.
 *
 * Each against float64 on the f16-rounded weights, with the activations rounded to f16 where
 * the kernel rounds them (the f16 product's rule). The bound per output: the f32 accumulation,
 * 2 K 2^-24 sum_k |a_k b_k| (as tests/matmul_f16_test.ts), plus, for an activation the kernel
 * computes in f32 (a layer norm, an attention output) and float64 computes slightly
 * differently, one f16 step times |b_k| wherever that activation lies within `delta` of an
 * f16 rounding boundary (it may round to the other neighbour there). Each also against the
 * same kernel on the f32 weights: the values move (the copies were read) by less than 5e-3.
 * Then a tiny model's decode steps under precision f16 (5-dispatch and compact layers)
 * against f32 within the README's 5e-3. Measured tolerances are printed.
 */
import assert from "node:assert/strict";
import { initRuntime, type Kernel } from "../kernels/core/runtime.ts";
import { noGrad } from "../kernels/core/autograd.ts";
import { setPrecision } from "../kernels/core/precision.ts";
import { readAll, Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { matmul } from "../kernels/ops/mod.ts";
import { registerF16Shadow, unregisterF16Shadow } from "../kernels/ops/matmul_f16.ts";
import { cachedAttentionProj } from "../kernels/ops/cached_attention.ts";
import { qkvAttentionProj } from "../kernels/ops/qkv_attention_proj.ts";
import { sumPartsMlpUp } from "../kernels/ops/sum_parts_mlp_up.ts";
import { f16Candidates, F16Shadows } from "../kernels/nn/f16_shadow.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { KvCache, type StepOptions } from "../models/world_action/kv_cache.ts";
import { WorldActionModel, type WorldActionOutputs } from "../models/world_action/model.ts";
import { randArray } from "./helpers/reference.ts";
import { geluErf64 } from "./helpers/cpu_ops.ts";

const rt = await initRuntime();
const HAS_F16 = rt.ctx.hasF16;
const GPU_TEST = { ignore: !HAS_F16, sanitizeOps: false, sanitizeResources: false };
const EPS32 = 2 ** -24;
const h16 = Math.f16round;

/** Labels of the kernels `f` dispatches. */
function spy<T>(f: () => T): { out: T; labels: string[] } {
  const labels: string[] = [];
  const orig = rt.dispatch;
  rt.dispatch = (k: Kernel, b) => {
    labels.push(k.label ?? "");
    orig.call(rt, k, b);
  };
  try {
    return { out: f(), labels };
  } finally {
    rt.dispatch = orig;
  }
}

/** A weight [rows, cols] (f32 master, values in +-0.3) and its registered f16 copy. */
class Weight {
  readonly w32: Float64Array;
  readonly w16: Float64Array;
  readonly master: Tensor;
  readonly copy: Tensor;
  constructor(readonly shape: [number, number], seed: number, lo = -0.3, hi = 0.3) {
    this.w32 = randArray(shape[0] * shape[1], seed, lo, hi);
    this.w16 = this.w32.map(h16);
    this.master = tensor(Float32Array.from(this.w32), shape);
    this.copy = tensor(Float32Array.from(this.w16), shape, "f16");
  }
  on(): void {
    registerF16Shadow(this.master, this.copy);
  }
  off(): void {
    unregisterF16Shadow(this.master);
  }
}

/**
 * f16 rounding of float64 activations, and per value the most the kernel's rounding may
 * differ from it (its f32 value lies within `delta` of this one).
 */
function round16(a: ArrayLike<number>, delta: number) {
  const v = Float64Array.from(a, h16);
  const flip = Float64Array.from(
    a,
    (x, i) => Math.max(Math.abs(h16(x - delta) - v[i]), Math.abs(h16(x + delta) - v[i])),
  );
  return { v, flip };
}

/** Rounded rows A [M, K] times W [N, K]^T (f16 values): products and their bounds. */
function prod16(A: ReturnType<typeof round16>, W: Float64Array, K: number) {
  const M = A.v.length / K, N = W.length / K;
  const y = new Float64Array(M * N), bound = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0, mag = 0, fl = 0;
      for (let k = 0; k < K; k++) {
        const a = A.v[m * K + k], b = W[n * K + k];
        s += a * b;
        mag += Math.abs(a * b);
        fl += A.flip[m * K + k] * Math.abs(b);
      }
      y[m * N + n] = s;
      bound[m * N + n] = 2 * K * EPS32 * mag + fl;
    }
  }
  return { y, bound };
}

function ln64(x: ArrayLike<number>, g: Float64Array, b: Float64Array): Float64Array {
  const d = g.length, out = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let mean = 0, vr = 0;
    for (let j = 0; j < d; j++) mean += x[r * d + j] / d;
    for (let j = 0; j < d; j++) vr += (x[r * d + j] - mean) ** 2 / d;
    for (let j = 0; j < d; j++) {
      out[r * d + j] = (x[r * d + j] - mean) / Math.sqrt(vr + 1e-5) * g[j] + b[j];
    }
  }
  return out;
}

const mish64 = (x: number) => x * Math.tanh(Math.log1p(Math.exp(x)));

/**
 * |got - want| <= bound + 8 eps32 |want| (the epilogue's f32 operations) at every output;
 * returns the largest |got - want| / bound.
 */
function within(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  bound: ArrayLike<number>,
  what: string,
): number {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    const b = bound[i] + 8 * EPS32 * Math.abs(want[i]) + 1e-9;
    assert.ok(d <= b, `${what}: element ${i} is ${got[i]}, float64 ${want[i]}, bound ${b}`);
    worst = Math.max(worst, d / b);
  }
  return worst;
}

/** max |a - b| / max |b|. */
function relMax(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0, m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

/**
 * Runs `f` on the f16 copies of `weights` and on the f32 weights: the f16 results (read
 * back). Asserts that a dispatch of the f16 run is labelled `tag` (all of them with `only`),
 * and that the first result moved from the f32 one by a relative (0, 5e-3].
 */
async function both(
  weights: Weight[],
  tag: string,
  f: () => Tensor[],
  what: string,
  only = true,
): Promise<Float32Array[]> {
  weights.forEach((w) => w.on());
  let half: Float32Array[];
  try {
    const { out, labels } = spy(() => noGrad(() => tidy(f)));
    half = await readAll(out) as Float32Array[];
    out.forEach((t) => t.dispose());
    const tagged = labels.filter((l) => l.includes(tag)).length;
    assert.ok(tagged > 0 && (!only || tagged === labels.length), `${what}: ${labels}`);
  } finally {
    weights.forEach((w) => w.off());
  }
  const out = noGrad(() => tidy(f));
  const full = await readAll(out) as Float32Array[];
  out.forEach((t) => t.dispose());
  const r = relMax(half[0], full[0]);
  assert.ok(r > 0 && r <= 5e-3, `${what}: f16 weights vs f32 ${r}`);
  return half;
}

const f32 = (a: ArrayLike<number>, shape: number[]) => tensor(Float32Array.from(a), shape);
const report: string[] = [];

Deno.test({
  name: "skinny decode products on f16 weight copies = float64 on f16-rounded weights and " +
    "activations (plain, layer norm + Mish, KV epilogue)",
  ...GPU_TEST,
  fn: async () => {
    // Plain: bias + exact GELU + residual; K = 261 takes the scalar loads and a tail chunk.
    for (const [M, N, K] of [[3, 40, 300], [1, 33, 261]]) {
      const W = new Weight([N, K], 1 + K);
      const x = randArray(M * K, 2 + K, -2, 2), bias = randArray(N, 3), res = randArray(M * N, 4);
      const [got] = await both([W], "w f16", () => [
        matmul(f32(x, [M, K]), W.master, {
          transB: true,
          bias: f32(bias, [N]),
          activation: "gelu_erf",
          residual: f32(res, [M, N]),
        }),
      ], `plain ${M}x${N}x${K}`);
      const p = prod16(round16(x, 0), W.w16, K);
      const want = p.y.map((v, i) => geluErf64(v + bias[i % N]) + res[i]);
      // |GELU'| <= 1.13.
      const r = within(got, want, p.bound.map((b) => 1.13 * b), `plain ${M}x${N}x${K}`);
      report.push(`plain ${M}x${N}x${K} ${r.toExponential(1)}`);
    }
    {
      // The Q head's hidden layer: layer norm + Mish prologue.
      const [M, N, K] = [3, 40, 300];
      const W = new Weight([N, K], 11);
      const x = randArray(M * K, 12, -2, 2), g = randArray(K, 13, 0.5, 1.5);
      const b = randArray(K, 14), bias = randArray(N, 15);
      const [got] = await both([W], "w f16", () => [
        matmul(f32(x, [M, K]), W.master, {
          transB: true,
          bias: f32(bias, [N]),
          layerNorm: { weight: f32(g, [K]), bias: f32(b, [K]), activation: "mish" },
        }),
      ], "ln + mish");
      const p = prod16(round16(ln64(x, g, b).map(mish64), 1e-5), W.w16, K);
      const r = within(got, p.y.map((v, i) => v + bias[i % N]), p.bound, "ln + mish");
      report.push(`ln+mish ${r.toExponential(1)}`);
    }
    {
      // ln1 + qkv + KV write (f16 cache).
      const [N, H, D, cap, start] = [3, 4, 72, 5, 2];
      const d = H * D;
      const W = new Weight([3 * d, d], 21, -0.1, 0.1);
      const x = randArray(N * d, 22, -2, 2), g = randArray(d, 23, 0.5, 1.5);
      const b = randArray(d, 24), bias = randArray(3 * d, 25);
      const what = "ln + kv f16";
      const [got, kv] = await both([W], "w f16", () => {
        const cache = Tensor.empty([2, N, H, cap, D], "f16");
        return [
          matmul(f32(x, [N, 1, d]), W.master, {
            transB: true,
            bias: f32(bias, [3 * d]),
            layerNorm: { weight: f32(g, [d]), bias: f32(b, [d]) },
            kvCache: { cache, start },
          }),
          cache,
        ];
      }, what);
      const p = prod16(round16(ln64(x, g, b), 1e-5), W.w16, d);
      const want = p.y.map((v, i) => v + bias[i % (3 * d)]);
      const r = within(got, want, p.bound, what);
      // The cache holds the key and value columns at position `start`, rounded to f16.
      const kvGot: number[] = [], kvWant: number[] = [], kvBound: number[] = [];
      for (let n = 0; n < N; n++) {
        for (let c = 0; c < 2 * d; c++) {
          const half = Math.floor(c / d), hh = Math.floor((c % d) / D);
          const at = (((half * N + n) * H + hh) * cap + start) * D + (c % D);
          const o = n * 3 * d + d + c;
          kvGot.push(kv[at]);
          kvWant.push(want[o]);
          kvBound.push(p.bound[o] + 2 ** -11 * Math.abs(want[o]));
        }
      }
      within(kvGot, kvWant, kvBound, `${what}: cache`);
      report.push(`${what} ${r.toExponential(1)}`);
    }
  },
});

/** float64 attention of query rows over a cache [2, N, H, cap, D]: y [N, H * D]. */
function attention64(
  q: (n: number, h: number, c: number) => number,
  cache: ArrayLike<number>,
  N: number,
  H: number,
  D: number,
  cap: number,
  keys: number,
): Float64Array {
  const y = new Float64Array(N * H * D);
  const at = (half: number, n: number, h: number, p: number) =>
    (((half * N + n) * H + h) * cap + p) * D;
  for (let n = 0; n < N; n++) {
    for (let h = 0; h < H; h++) {
      const s = Array.from({ length: keys }, (_, j) => {
        let v = 0;
        for (let c = 0; c < D; c++) v += q(n, h, c) * cache[at(0, n, h, j) + c];
        return v / Math.sqrt(D);
      });
      const m = Math.max(...s);
      const e = s.map((v) => Math.exp(v - m));
      const z = e.reduce((a, v) => a + v, 0);
      for (let c = 0; c < D; c++) {
        let o = 0;
        for (let j = 0; j < keys; j++) o += (e[j] / z) * cache[at(1, n, h, j) + c];
        y[(n * H + h) * D + c] = o;
      }
    }
  }
  return y;
}

/** Per-head partials [H, N, d] of rounded y [N, H D] times proj W [d, d] (f16 values). */
function projParts(y: ReturnType<typeof round16>, W: Float64Array, N: number, H: number) {
  const d = W.length ** 0.5, D = d / H;
  const out = new Float64Array(H * N * d), bound = new Float64Array(H * N * d);
  for (let h = 0; h < H; h++) {
    for (let n = 0; n < N; n++) {
      for (let col = 0; col < d; col++) {
        let s = 0, mag = 0, fl = 0;
        for (let c = 0; c < D; c++) {
          const i = n * d + h * D + c, w = W[col * d + h * D + c];
          s += y.v[i] * w;
          mag += Math.abs(y.v[i] * w);
          fl += y.flip[i] * Math.abs(w);
        }
        out[(h * N + n) * d + col] = s;
        bound[(h * N + n) * d + col] = 2 * D * EPS32 * mag + fl;
      }
    }
  }
  return { out, bound };
}

Deno.test({
  name: "attention + proj kernels on f16 weight copies = float64 (cachedAttentionProj, " +
    "qkvAttentionProj); f16 cache: the compact kernel = the 5-dispatch kernels",
  ...GPU_TEST,
  fn: async () => {
    const [N, H, D, cap, start] = [3, 2, 16, 9, 5];
    const d = H * D, keys = start + 1;
    const Wp = new Weight([d, d], 31);
    const Wq = new Weight([3 * d, d], 32);
    const init = randArray(2 * N * H * cap * D, 33, -1.5, 1.5);
    for (const half of [false, true]) {
      const cache0 = half ? init.map(h16) : init;
      const mk = () => tensor(Float32Array.from(cache0), [2, N, H, cap, D], half ? "f16" : "f32");
      // cachedAttentionProj on given queries.
      const qkv = randArray(N * 3 * d, 34);
      const [got] = await both([Wp], "w16", () => [
        cachedAttentionProj(f32(qkv, [N, 1, 3 * d]), mk(), start, Wp.master),
      ], `cachedAttentionProj${half ? " f16 cache" : ""}`);
      // f32 attention is ~1e-7 from float64: delta 1e-5 covers it.
      const y = attention64((n, h, c) => qkv[n * 3 * d + h * D + c], cache0, N, H, D, cap, keys);
      const p = projParts(round16(y, 1e-5), Wp.w16, N, H);
      const r = within(got, p.out, p.bound, "cachedAttentionProj");
      report.push(`cachedAttentionProj${half ? " f16 cache" : ""} ${r.toExponential(1)}`);
      // qkvAttentionProj: ln1 + qkv + KV write + attention + proj in one kernel.
      const x = randArray(N * d, 35, -2, 2), g = randArray(d, 36, 0.5, 1.5), b = randArray(d, 37);
      const bq = randArray(3 * d, 38);
      const ln = () => ({ weight: f32(g, [d]), bias: f32(b, [d]) });
      const [cp, kv, ref] = await both(
        [Wp, Wq],
        "qkvAttentionProj w16",
        () => {
          const c1 = mk(), c2 = mk(), xs = f32(x, [N, 1, d]);
          const out = qkvAttentionProj(xs, c1, start, {
            lnWeight: ln().weight,
            lnBias: ln().bias,
            lnEps: 1e-5,
            qkvWeight: Wq.master,
            qkvBias: f32(bq, [3 * d]),
            projWeight: Wp.master,
          });
          // The 5-dispatch layer's kernels: ln1 + qkv + KV write, then attention + proj.
          const q2 = matmul(xs, Wq.master, {
            transB: true,
            bias: f32(bq, [3 * d]),
            layerNorm: ln(),
            kvCache: { cache: c2, start },
          });
          return [out, c1, cachedAttentionProj(q2, c2, start, Wp.master)];
        },
        `qkvAttentionProj${half ? " f16 cache" : ""}`,
        false,
      );
      if (half) {
        // Keys and values may round apart by an f16 step between the two paths.
        const rr = relMax(cp, ref);
        assert.ok(rr <= 4e-3, `qkvAttentionProj f16 cache vs 5-dispatch: ${rr}`);
        report.push(`qkvAttentionProj f16 cache vs 5-dispatch ${rr.toExponential(1)}`);
        continue;
      }
      const pq = prod16(round16(ln64(x, g, b), 1e-5), Wq.w16, d);
      const qkv64 = pq.y.map((v, i) => v + bq[i % (3 * d)]);
      // The cache: keys and values at `start` (f32).
      const cache64 = Float64Array.from(cache0);
      const kvGot: number[] = [], kvBound: number[] = [];
      for (let n = 0; n < N; n++) {
        for (let c = 0; c < 2 * d; c++) {
          const hf = Math.floor(c / d), hh = Math.floor((c % d) / D);
          const at = (((hf * N + n) * H + hh) * cap + start) * D + (c % D);
          cache64[at] = qkv64[n * 3 * d + d + c];
          kvGot.push(kv[at]);
          kvBound.push(pq.bound[n * 3 * d + d + c]);
        }
      }
      const kvWant = kvGot.map((_, i) => {
        const n = Math.floor(i / (2 * d)), c = i % (2 * d);
        return qkv64[n * 3 * d + d + c];
      });
      within(kvGot, kvWant, kvBound, "qkvAttentionProj: cache");
      // q, k, v carry the f32 product's error (<= its bound, ~1e-6 here) into y: delta 1e-4.
      const y2 = attention64(
        (n, h, c) => qkv64[n * 3 * d + h * D + c],
        cache64,
        N,
        H,
        D,
        cap,
        keys,
      );
      const p2 = projParts(round16(y2, 1e-4), Wp.w16, N, H);
      const r2 = within(cp, p2.out, p2.bound, "qkvAttentionProj");
      report.push(`qkvAttentionProj ${r2.toExponential(1)}`);
    }
  },
});

Deno.test({
  name: "sumPartsMlpUp on f16 weight copies = float64",
  ...GPU_TEST,
  fn: async () => {
    const [M, d, F, P] = [3, 32, 128, 2];
    const W1 = new Weight([F, d], 41);
    const parts = randArray(P * M * d, 43), res = randArray(M * d, 44, -2, 2);
    const pb = randArray(d, 45), g = randArray(d, 46, 0.5, 1.5), b = randArray(d, 47);
    const b1 = randArray(F, 48);
    const h64 = res.map((v, i) => v + pb[i % d] + parts[i] + parts[M * d + i]);
    const p1 = prod16(round16(ln64(h64, g, b), 1e-5), W1.w16, d);
    const u64 = p1.y.map((v, i) => geluErf64(v + b1[i % F]));
    const uBound = p1.bound.map((v) => 1.13 * v);
    const ins = () => ({
      parts: f32(parts, [P, M, d]),
      res: f32(res, [M, d]),
      pb: f32(pb, [d]),
      ln: { weight: f32(g, [d]), bias: f32(b, [d]) },
      b1: f32(b1, [F]),
    });
    const [u, h] = await both([W1], "w16", () => {
      const t = ins();
      const o = sumPartsMlpUp(t.parts, t.res, t.pb, t.ln, {
        w1: W1.master,
        b1: t.b1,
        activation: "gelu_erf",
      });
      return [o.u, o.h];
    }, "sumPartsMlpUp");
    const mag = res.map((v, i) =>
      Math.abs(v) + Math.abs(pb[i % d]) + Math.abs(parts[i]) + Math.abs(parts[M * d + i])
    );
    within(h, h64, mag.map((v) => 4 * EPS32 * v), "sumPartsMlpUp: h");
    const r = within(u, u64, uBound, "sumPartsMlpUp");
    report.push(`sumPartsMlpUp ${r.toExponential(1)}`);
  },
});

/** A tiny model (width 288 > 256, so the skinny kernels apply) with perturbed weights. */
async function tinyModel(): Promise<WorldActionModel> {
  const cfg = worldActionConfig("tiny", { d: 288, heads: 4, layers: 1, timesteps: 2, seed: 5 });
  const model = new WorldActionModel(cfg);
  const state = await model.stateDict();
  const r = randArray(1 << 14, 6);
  let k = 0;
  for (const v of state.values()) {
    for (let i = 0; i < v.data.length; i++) v.data[i] += 0.05 * r[k++ % r.length];
  }
  model.loadStateDict(state);
  model.eval();
  return model;
}

Deno.test({
  name: "decode steps under precision f16 (f16 weights in every decode kernel, f16 cache) " +
    "within 5e-3 of f32: the 5-dispatch and the compact layer",
  ...GPU_TEST,
  fn: async () => {
    const model = await tinyModel();
    const cfg = model.cfg;
    const E = 2, pre = 36;
    const prefill = Int32Array.from({ length: E * pre }, (_, i) => (i * 7) % cfg.obsVocab);
    // An action, then two observation tokens.
    const steps = [[1, 2].map((a) => a % cfg.actions), [5, 9], [11, 3]].map((t) =>
      Int32Array.from(t)
    );
    const run = async (dtype: "f32" | "f16", opts: StepOptions) => {
      const cache = KvCache.create(cfg, tensor([3, 11], [E], "i32"), 48, dtype);
      model.step(cache, tensor(prefill, [E, pre], "i32"));
      const outs: WorldActionOutputs[] = [];
      const labels: string[] = [];
      for (const t of steps) {
        const s = spy(() => model.step(cache, tensor(t, [E, 1], "i32"), opts));
        outs.push(s.out);
        labels.push(...s.labels);
      }
      const heads: Tensor[] = [];
      for (const o of outs) {
        for (const t of [o.obsLogits, o.rewardLogits, o.q?.values]) if (t) heads.push(t);
      }
      const vals = (await readAll(heads)).flatMap((v) => Array.from(v));
      cache.dispose();
      return { vals, labels };
    };
    const layers: [string, StepOptions][] = [
      ["5-dispatch", { compactLayer: false }],
      ["compact", { compactLayer: true }],
    ];
    const ref: { vals: number[]; labels: string[] }[] = [];
    for (const [, opts] of layers) ref.push(await noGrad(() => run("f32", opts)));
    const shadows = new F16Shadows(f16Candidates(model.parameters()));
    setPrecision("f16", HAS_F16);
    try {
      for (const [i, [name, opts]] of layers.entries()) {
        const got = await noGrad(() => run("f16", opts));
        // Every f32-path product of a decode step reads an f16 copy ("w f16"); the f16 path's
        // own products ("matmul.f16") read them anyway.
        const f32Reads = got.labels.filter((l) => l.startsWith("matmul ") && !l.includes("w f16"));
        assert.deepEqual(f32Reads, [], `${name}: products on f32 weights`);
        const want = name === "compact"
          ? ["qkvAttentionProj w16", "sumPartsMlpUp"]
          : ["cachedAttentionProj f16 w16", "ln kv f16 w f16"];
        for (const w of want) {
          assert.ok(got.labels.some((l) => l.includes(w)), `${name}: ${w} in ${got.labels}`);
        }
        const r = relMax(got.vals, ref[i].vals);
        assert.ok(r > 0 && r <= 5e-3, `${name}: f16 vs f32 ${r}`);
        report.push(`model ${name} ${r.toExponential(1)}`);
      }
    } finally {
      setPrecision("f32", HAS_F16);
      shadows.dispose();
    }
    console.log(`measured (|err| / bound, or relative): ${report.join(", ")}`);
  },
});
