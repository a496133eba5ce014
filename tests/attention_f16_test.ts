/**
 * Attention on q, k, v stored f16 (`--precision f16`, kernels/ops/attention.ts
 * `fusedAttention` on an f16 `qkv`; the kernels convert each vec4 to f32 as they load it):
 *
 * - on f16-representable values the f16 kernels equal the f32 kernels bit for bit (forward in
 *   the training and the shape-generic inference plan, dQ/dK/dV), and both are within an
 *   accumulation-length bound of the float64 reference (with dropout, causal and full);
 * - the f16-output qkv projection on the tape (models/world_action/transformer.ts
 *   `SelfAttention.packedQkv` with f16 weight copies): the stored q, k, v are the f32-accumulated
 *   product rounded once; the gradients of x, W and b equal the float64 chain rule with the
 *   rounding passed straight through (the incoming gradient rounded to f16 where it enters a
 *   product, as the f16 matmul does), and are within f16 rounding of central finite
 *   differences of the unrounded float64 function;
 *
 * That the model's training forward takes this path (every attention kernel of an f16 step
 * reads f16 q, k, v) is checked in precision_f16_train_test.ts.
 */
import assert from "node:assert/strict";
import { initRuntime, runtime } from "../kernels/core/runtime.ts";
import { Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import {
  attentionParams,
  type AttentionSpec,
  type AttentionTiles,
  planAttentionBackward,
  planAttentionForward,
} from "../kernels/codegen/attention/plan.ts";
import { backward, noGrad } from "../kernels/core/autograd.ts";
import { fusedAttention } from "../kernels/ops/attention.ts";
import { matmulF16 } from "../kernels/ops/matmul_f16.ts";
import { mul, sumAll } from "../kernels/ops/mod.ts";
import { f16Candidates, F16Shadows } from "../kernels/nn/f16_shadow.ts";
import { InitRng } from "../kernels/nn/layers.ts";
import { SelfAttention } from "../models/world_action/transformer.ts";
import { mulberry32 } from "../util/rng.ts";
import { assignValues } from "../kernels/nn/module.ts";
import { attentionBackwardRef, attentionForwardRef } from "./helpers/attention_reference.ts";

await initRuntime();
const GPU_TEST = { sanitizeOps: false, sanitizeResources: false };
const HAS_F16 = runtime().ctx.hasF16;
const U = 2 ** -24; // unit roundoff of f32

function randoms(n: number, seed: number, amp = 1): number[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, () => (r() * 2 - 1) * amp);
}

/** [B, T, 3, H, D] -> three [B*H, T, D] (q, k, v), float64. */
function unpack(x: ArrayLike<number>, B: number, T: number, H: number, D: number) {
  const outs = [0, 1, 2].map(() => new Float64Array(B * H * T * D));
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let s = 0; s < 3; s++) {
        for (let h = 0; h < H; h++) {
          for (let d = 0; d < D; d++) {
            outs[s][((b * H + h) * T + t) * D + d] = x[(((b * T + t) * 3 + s) * H + h) * D + d];
          }
        }
      }
    }
  }
  return outs;
}

/** [B*H, T, D] -> [B, T, H, D] (o, dO) or, with `slot`, into slot s of [B, T, 3, H, D]. */
function toBthd(
  x: ArrayLike<number>,
  B: number,
  T: number,
  H: number,
  D: number,
  slot?: { s: number; out: Float64Array },
): Float64Array {
  const out = slot?.out ?? new Float64Array(B * T * H * D);
  const parts = slot ? 3 : 1;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        for (let d = 0; d < D; d++) {
          const dst = (((b * T + t) * parts + (slot?.s ?? 0)) * H + h) * D + d;
          out[dst] = x[((b * H + h) * T + t) * D + d];
        }
      }
    }
  }
  return out;
}

/** max |got - want| <= bound (absolute); returns the error. */
function within(what: string, got: ArrayLike<number>, want: ArrayLike<number>, bound: number) {
  assert.equal(got.length, want.length, `${what}: length`);
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  assert.ok(err <= bound, `${what}: max error ${err.toExponential(2)} > ${bound.toExponential(2)}`);
  return err;
}

const maxAbs = (x: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
};

interface Case {
  B: number;
  T: number;
  H: number;
  D: number;
  causal: boolean;
  p: number;
  /** Run the plans directly (layout "bthd", separate q, k, v bindings) with these tiles. */
  tiles?: AttentionTiles;
}

/** O [B, T, H, D], the gradient packed as [B, T, 3, H, D], the inference plan's O (p = 0). */
interface Run {
  o: ArrayLike<number>;
  grad: ArrayLike<number>;
  inf: ArrayLike<number>;
}

/** `fusedAttention` on one packed qkv in `dtype`: training plan, backward, inference plan. */
async function runOp(c: Case, values: number[], dO: number[], dtype: "f32" | "f16"): Promise<Run> {
  const shape = [c.B, c.T, 3 * c.H * c.D];
  const opts = { heads: c.H, causal: c.causal, dropout: c.p, seed: 5 };
  const data = dtype === "f16" ? Float16Array.from(values) : Float32Array.from(values);
  const qkv = tensor(data, shape, dtype);
  qkv.requiresGrad = true;
  const o = fusedAttention(qkv, opts);
  backward(o, tensor(dO, o.shape));
  const result: Run = { o: await o.read(), grad: await qkv.grad!.read(), inf: [] };
  assert.equal(qkv.grad!.dtype, "f32", "the gradient of f16 q, k, v is f32");
  if (c.p === 0) {
    const fresh = tensor(data, shape, dtype);
    const oi = noGrad(() => fusedAttention(fresh, opts));
    result.inf = await oi.read();
    for (const t of [oi, fresh]) t.dispose();
  }
  for (const t of [o, qkv.grad!, qkv]) t.dispose();
  return result;
}

/** The plans themselves, "bthd" layout (q, k, v in three bindings), `c.tiles`. */
async function runPlans(c: Case, values: number[], dO: number[], dtype: "f32" | "f16") {
  const { B, T, H, D } = c;
  const rt = runtime();
  const spec: AttentionSpec = {
    batchHeads: B * H,
    heads: H,
    Tq: T,
    S: T,
    D,
    causal: c.causal,
    dropout: c.p > 0 ? c.p : undefined,
    layout: "bthd",
    tiles: c.tiles,
    qkvDtype: dtype,
  };
  const n = B * T * H * D;
  const up = (x: ArrayLike<number>, t: "f32" | "f16") =>
    tensor(t === "f16" ? Float16Array.from(x) : Float32Array.from(x), [x.length], t);
  const [q, k, v] = unpack(values, B, T, H, D).map((x) => up(toBthd(x, B, T, H, D), dtype));
  const bufs: Record<string, Tensor> = {
    q,
    k,
    v,
    dO: up(dO, "f32"),
    o: Tensor.empty([n]),
    lse: Tensor.empty([B * H * T]),
    delta: Tensor.empty([B * H * T]),
    dQ: Tensor.empty([n]),
    dK: Tensor.empty([n]),
    dV: Tensor.empty([n]),
  };
  const params = rt.uploadStatic(new Uint8Array(attentionParams(5, c.p)));
  const plans = [
    planAttentionForward(spec, rt.ctx.limits),
    ...planAttentionBackward(spec, rt.ctx.limits),
  ];
  for (const plan of plans) {
    for (const [name, bytes] of Object.entries(plan.bindingBytes)) {
      const size = name === "params"
        ? params.size
        : bufs[name].size * (bufs[name].dtype === "f16" ? 2 : 4);
      assert.ok(size >= bytes, `${plan.label}: ${name} holds ${size} bytes, needs ${bytes}`);
    }
    rt.dispatch(plan, plan.bindings.map((b) => b === "params" ? params : bufs[b].buffer));
  }
  const grad = new Float64Array(3 * n);
  for (const [s, name] of ["dQ", "dK", "dV"].entries()) {
    const g = await bufs[name].read();
    for (let bt = 0; bt < B * T; bt++) {
      for (let e = 0; e < H * D; e++) grad[(bt * 3 + s) * H * D + e] = g[bt * H * D + e];
    }
  }
  const result: Run = { o: await bufs.o.read(), grad, inf: [] };
  rt.pool.release(params);
  for (const t of Object.values(bufs)) t.dispose();
  return result;
}

/** The reference dq, dk, dv packed as [B, T, 3, H, D]. */
function gradOf(g: { dq: Float64Array; dk: Float64Array; dv: Float64Array }, c: Case) {
  const want = new Float64Array(3 * c.B * c.T * c.H * c.D);
  [g.dq, g.dk, g.dv].forEach((x, s) => toBthd(x, c.B, c.T, c.H, c.D, { s, out: want }));
  return want;
}

/**
 * First-order bounds (x 2) on the f32 kernels' error against float64, from the data's
 * magnitudes and the accumulation lengths (D for a dot product over the head dim, T for a sum
 * over keys or queries; u = 2^-24):
 * - a score's absolute error eS <= (D + 2) u scale max_ij sum_x |q_ix k_jx| (the dot product
 *   and the base-2 scaling); a probability's relative error eP <= 2 eS + 8u (its score, the
 *   normaliser, exp2);
 * - O: m max|v| (eP + (T + 2) u), m = 1/(1-p) the dropout multiplier;
 * - with gp = max_ij sum_x |dO_ix v_jx| (a bound on dP and delta): dS_ij has error
 *   <= P_ij m gp 2 (eP + (D + T) u); dQ sums it against k over keys (sum_j P_ij = 1), dK
 *   against q over queries (at most cP = max_j sum_i P_ij), dV sums P m dO (m max|dO| cP
 *   (eP + T u)); plus T u of the result for those sums.
 */
function errorBounds(
  c: Case,
  x: { q: Float64Array; k: Float64Array; v: Float64Array; dO: Float64Array; p: Float64Array },
  gradMax: number,
) {
  const { D, T } = c;
  const { q, k, v, dO } = x;
  const scale = 1 / Math.sqrt(D);
  let sqk = 0, gp = 0, cP = 0;
  for (let bh = 0; bh < c.B * c.H; bh++) {
    for (let i = 0; i < T; i++) {
      for (let j = 0; j < T; j++) {
        let a = 0, b = 0;
        for (let e = 0; e < D; e++) {
          a += Math.abs(q[(bh * T + i) * D + e] * k[(bh * T + j) * D + e]);
          b += Math.abs(dO[(bh * T + i) * D + e] * v[(bh * T + j) * D + e]);
        }
        sqk = Math.max(sqk, a);
        gp = Math.max(gp, b);
      }
    }
    for (let j = 0; j < T; j++) {
      let col = 0;
      for (let i = 0; i < T; i++) col += x.p[(bh * T + i) * T + j];
      cP = Math.max(cP, col);
    }
  }
  const m = 1 / (1 - c.p);
  const eS = (D + 2) * U * scale * sqk;
  const eP = 2 * eS + 8 * U;
  const oBound = 2 * m * maxAbs(v) * (eP + (T + 2) * U);
  const dS = m * gp * 2 * (eP + (D + T) * U);
  const dqk = scale * Math.max(maxAbs(k), cP * maxAbs(q)) * dS;
  const dv = m * maxAbs(dO) * cP * (eP + T * U);
  const gradBound = 2 * (Math.max(dqk, dv) + T * U * gradMax);
  return { oBound, gradBound };
}

async function checkCase(c: Case, seed: number) {
  const { B, T, H, D } = c;
  // f16-representable q, k, v (|x| < 2), so f32 and f16 storage hold the same values.
  const values = randoms(B * T * 3 * H * D, seed, 2).map(Math.f16round);
  const dO = randoms(B * T * H * D, seed + 1);
  const run = c.tiles ? runPlans : runOp;
  const half = await run(c, values, dO, "f16");
  const full = await run(c, values, dO, "f32");
  const what = `B${B} T${T} H${H} D${D} ${c.causal ? "causal" : "full"} p=${c.p}` +
    (c.tiles ? ` bthd tiles ${JSON.stringify(c.tiles)}` : "");
  assert.deepEqual(half.o, full.o, `${what}: forward (training plan) equals f32's`);
  assert.deepEqual(half.inf, full.inf, `${what}: forward (inference plan) equals f32's`);
  assert.deepEqual(half.grad, full.grad, `${what}: dq, dk, dv equal f32's`);
  // float64 reference on the same values.
  const [q, k, v] = unpack(values, B, T, H, D);
  const dOb = new Float64Array(B * H * T * D);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        for (let d = 0; d < D; d++) {
          dOb[((b * H + h) * T + t) * D + d] = dO[((b * T + t) * H + h) * D + d];
        }
      }
    }
  }
  const rs = {
    BH: B * H,
    Tq: T,
    S: T,
    D,
    causal: c.causal,
    dropout: c.p > 0 ? { seed: 5, p: c.p } : undefined,
  };
  const ref = attentionForwardRef(rs, q, k, v);
  const g = attentionBackwardRef(rs, q, k, v, dOb);
  const want = gradOf(g, c);
  const { oBound, gradBound } = errorBounds(c, { q, k, v, dO: dOb, p: ref.p }, maxAbs(want));
  const oErr = within(`${what}: O vs float64`, half.o, toBthd(ref.o, B, T, H, D), oBound);
  const gErr = within(`${what}: dqkv vs float64`, half.grad, want, gradBound);
  assert.ok(maxAbs(want) > 1e-2, `${what}: the reference gradient is not ~0`);
  console.log(
    `${what}: O ${oErr.toExponential(1)} (bound ${oBound.toExponential(1)}), dqkv ${
      gErr.toExponential(1)
    } (bound ${gradBound.toExponential(1)})`,
  );
}

Deno.test({
  name: "attention on f16 q, k, v: equals the f32 kernels bit for bit, float64 within bound",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    // Through fusedAttention (packed qkv, the model's path), training and inference plans.
    // Sequences of at most 8 keep the kernels' tiles (and lavapipe's compile time) small.
    await checkCase({ B: 2, T: 6, H: 2, D: 8, causal: false, p: 0 }, 11);
    // The plans with 4 x 4 tiles, causal with dropout: several query and key blocks (the
    // loops, the causal skipping, the prefetch of the next tile), q, k, v in separate f16
    // bindings.
    const tiles = { forward: [4, 4], dkdv: [4, 4], dq: [4, 4] } as AttentionTiles;
    await checkCase({ B: 1, T: 13, H: 2, D: 8, causal: true, p: 0.25, tiles }, 17);
  },
});

Deno.test(
  "f16 q, k, v: i32 qkv and a taped f16 output with an epilogue are refused",
  GPU_TEST,
  () => {
    const x = tensor(new Int32Array(2 * 3 * 12), [2, 3, 12], "i32");
    assert.throws(
      () => fusedAttention(x, { heads: 1, causal: true }),
      /attention: qkv must be f32 or f16, got i32/,
    );
    x.dispose();
    // An f16-output product on the tape takes a bias only (no epilogue to differentiate).
    const [a, w] = [tensor(new Float32Array(8), [2, 4]), tensor(new Float32Array(12), [3, 4])];
    w.requiresGrad = true;
    assert.throws(
      () => matmulF16(a, w, { transB: true, activation: "gelu", outDtype: "f16" }),
      /an f16 output on the tape takes a bias only/,
    );
    for (const t of [a, w]) t.dispose();
  },
);

/** float64 x [R, d] · W^T [d, N] + b over f16-rounded x and W. */
function linearRef(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number>, d: number) {
  const R = x.length / d, N = b.length;
  const out = new Float64Array(R * N);
  for (let r = 0; r < R; r++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += Math.f16round(x[r * d + k]) * Math.f16round(w[n * d + k]);
      out[r * N + n] = s + b[n];
    }
  }
  return out;
}

Deno.test({
  name: "f16 qkv projection on the tape: rounded once, gradients straight through the store",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const B = 2, T = 6, d = 16, H = 2, D = d / H;
    const cfg = { d, heads: H, dropout: 0, causal: true };
    const attn = new SelfAttention(cfg, new InitRng(4), 0.02);
    attn.eval();
    // Weights large enough that q·k matters (the default init gives near-uniform softmax).
    const w0 = randoms(3 * d * d, 8, 0.5), b0 = randoms(3 * d, 9, 0.1);
    assignValues(attn.qkv.weight, Float32Array.from(w0));
    assignValues(attn.qkv.bias!, Float32Array.from(b0));
    const wv = Array.from(Float32Array.from(w0)), bv = Array.from(Float32Array.from(b0));
    const shadows = new F16Shadows(f16Candidates(attn.parameters()));
    const xv = randoms(B * T * d, 10);
    const dO = randoms(B * T * d, 12);
    const x = tensor(xv, [B, T, d]);
    x.requiresGrad = true;
    const qkv = attn.packedQkv(x);
    assert.equal(qkv.dtype, "f16", "the projection stores q, k, v as f16");
    const o = fusedAttention(qkv, { heads: H, causal: true });
    tidy(() => backward(sumAll(mul(o, tensor(dO, o.shape)))));
    const [got, oGot] = [await qkv.read(), await o.read()];
    const [gx, gw, gb] = [
      await x.grad!.read(),
      await attn.qkv.weight.grad!.read(),
      await attn.qkv.bias!.grad!.read(),
    ];
    shadows.dispose();
    // The store: the f32-accumulated product rounded once (half an f16 ulp, 2^-11 relative,
    // plus the f32 accumulation over d).
    const pre = linearRef(xv, wv, bv, d);
    let worst = 0;
    for (let i = 0; i < pre.length; i++) {
      const bound = Math.abs(pre[i]) * 2 ** -11 + 2 * d * U * 4;
      worst = Math.max(worst, Math.abs(got[i] - pre[i]) / bound);
    }
    assert.ok(worst <= 1, `q, k, v store: ${worst} of the bound`);
    assert.ok(got.some((v, i) => v !== Math.fround(pre[i])), "the store rounded to f16");
    // Chain rule on the stored (rounded) q, k, v, float64.
    const [q, k, v] = unpack(got, B, T, H, D);
    const rs = { BH: B * H, Tq: T, S: T, D, causal: true };
    const dOb = dO;
    const dOh = new Float64Array(B * H * T * D);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < H; h++) {
          for (let e = 0; e < D; e++) {
            dOh[((b * H + h) * T + t) * D + e] = dOb[((b * T + t) * H + h) * D + e];
          }
        }
      }
    }
    within("O", oGot, toBthd(attentionForwardRef(rs, q, k, v).o, B, T, H, D), 1e-5);
    const g = attentionBackwardRef(rs, q, k, v, dOh);
    const dqkv = new Float64Array(got.length);
    [g.dq, g.dk, g.dv].forEach((z, s) => toBthd(z, B, T, H, D, { s, out: dqkv }));
    // Through the product: G rounded to f16 where it enters (as the f16 matmul loads it).
    const R = B * T, N = 3 * d;
    const wantX = new Float64Array(R * d), wantW = new Float64Array(N * d);
    const wantB = new Float64Array(N);
    for (let r = 0; r < R; r++) {
      for (let n = 0; n < N; n++) {
        const gh = Math.f16round(dqkv[r * N + n]);
        wantB[n] += dqkv[r * N + n];
        for (let e = 0; e < d; e++) {
          wantX[r * d + e] += gh * Math.f16round(wv[n * d + e]);
          wantW[n * d + e] += gh * Math.f16round(xv[r * d + e]);
        }
      }
    }
    // The GPU's dqkv is f32 (its own error ~1e-6 relative) before that rounding: a value near
    // an f16 rounding boundary may round the other way, one f16 ulp (2^-10 relative) of one
    // term; bound by that ulp on the largest term times the few such coincidences allowed.
    const gmax = maxAbs(dqkv);
    within("dx", gx, wantX, 4 * gmax * 2 ** -10 * maxAbs(wv) + 1e-6);
    within("dW", gw, wantW, 4 * gmax * 2 ** -10 * maxAbs(xv) + 1e-6);
    within("db", gb, wantB, R * 1e-6 * gmax + 1e-6);
    // Finite differences of the unrounded float64 function sum(O * dO) in x: the straight-
    // through gradient is the true one up to the f16 roundings (about 2^-10 relative).
    const loss = (xs: ArrayLike<number>) => {
      const y = new Float64Array(R * N);
      for (let r = 0; r < R; r++) {
        for (let n = 0; n < N; n++) {
          let s = bv[n];
          for (let e = 0; e < d; e++) s += xs[r * d + e] * wv[n * d + e];
          y[r * N + n] = s;
        }
      }
      const [qq, kk, vv] = unpack(y, B, T, H, D);
      const oo = attentionForwardRef(rs, qq, kk, vv).o;
      let l = 0;
      for (let i = 0; i < oo.length; i++) l += oo[i] * dOh[i];
      return l;
    };
    const xs = Float64Array.from(xv), eps = 1e-5, fd = new Float64Array(xs.length);
    for (let i = 0; i < xs.length; i++) {
      const s = xs[i];
      xs[i] = s + eps;
      const up = loss(xs);
      xs[i] = s - eps;
      fd[i] = (up - loss(xs)) / (2 * eps);
      xs[i] = s;
    }
    const fdErr = within("dx vs finite differences", gx, fd, 2e-2 * maxAbs(fd));
    console.log(
      `f16 qkv: dx vs finite differences of the unrounded function ${
        (fdErr / maxAbs(fd)).toExponential(2)
      } (relative to max)`,
    );
    for (const t of [x.grad!, x, qkv, o]) t.dispose();
  },
});
