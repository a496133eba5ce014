/**
 * Shape-generic kernels of inference (kernels/ops/dims.ts): the dims that vary during an
 * evaluation (rows = environments x beams, window and sequence lengths) are read at run time,
 * so after one call of each kernel, calls with other sizes compile no pipeline, their plan
 * cache keys are complete (verified rebuilds), and their values still match float64 CPU
 * references.
 */
import assert from "node:assert/strict";
import { noGrad } from "../kernels/core/autograd.ts";
import { counterDelta, initRuntime } from "../kernels/core/runtime.ts";
import { setPlanVerification } from "../kernels/core/plan_cache.ts";
import { setPrecision } from "../kernels/core/precision.ts";
import { readAll, Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import {
  appendKv,
  cachedAttention,
  cachedAttentionProj,
  gatherCache,
} from "../kernels/ops/cached_attention.ts";
import {
  add,
  argmax,
  concat,
  fusedAttention,
  indexSelect,
  layerNorm,
  logSoftmax,
  matmul,
  mean,
  mul,
  slice,
  sum,
} from "../kernels/ops/mod.ts";
import { conv2d } from "../kernels/ops/conv.ts";
import { registerF16Shadow, unregisterF16Shadow } from "../kernels/ops/matmul_f16.ts";
import { qkvAttentionProj } from "../kernels/ops/qkv_attention_proj.ts";
import { sumPartsMlpUp } from "../kernels/ops/sum_parts_mlp_up.ts";
import { groupNorm } from "../kernels/ops/group_norm.ts";
import { attentionForwardRef } from "./helpers/attention_reference.ts";
import { conv2dRef, groupNormRef } from "./helpers/cpu_tokenizer_ops.ts";
import { randArray } from "./helpers/reference.ts";

const rt = await initRuntime();
const GPU_TEST = { sanitizeOps: false, sanitizeResources: false };

/**
 * Pipelines compiled by `fn` (which must finish its GPU work, e.g. by reading back). Plans are
 * verified meanwhile: a cache key that leaves out something the source depends on throws.
 */
async function compiles(fn: () => Promise<void>): Promise<number> {
  const before = rt.counters();
  const verify = setPlanVerification(true);
  try {
    await fn();
  } finally {
    setPlanVerification(verify);
  }
  return counterDelta(before, rt.counters()).pipelinesCompiled;
}

function f32(a: ArrayLike<number>): Float32Array {
  return Float32Array.from(a, Math.fround);
}

function close(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    assert.ok(err <= tol * (1 + Math.abs(want[i])), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

Deno.test(
  "matmul, inference: after a kind's first product no M compiles; f64 reference",
  GPU_TEST,
  async () => {
    // Weights as the model's Linear layers store them: [N, K], used transposed. N = 3 and 36
    // cover scalar and vec4 columns, K = 20 a partial k-slice.
    for (const [N, K, fused] of [[36, 20, false], [3, 20, true], [50, 37, true]] as const) {
      const w = f32(randArray(N * K, 1 + N));
      const bias = f32(randArray(N, 2 + N));
      // Three row buckets (<= 16, <= 1024 and more rows): the first product of a kind
      // compiles all of them.
      for (const [i, M] of [1, 5, 16, 3, 17, 40, 130, 1030, 23].entries()) {
        const a = f32(randArray(M * K, 3 + M));
        const res = f32(randArray(M * N, 4 + M));
        let out: Float32Array = new Float32Array();
        const n = await compiles(async () => {
          const y = noGrad(() =>
            tidy(() =>
              matmul(tensor(a, [M, K]), tensor(w, [N, K]), {
                transB: true,
                bias: tensor(bias),
                ...(fused ? { activation: "relu" as const, residual: tensor(res, [M, N]) } : {}),
              })
            )
          );
          out = await y.read() as Float32Array;
          y.dispose();
        });
        if (i > 0) assert.equal(n, 0, `matmul ${M}x${N}x${K}: compiled ${n} pipelines`);
        else assert.ok(n >= 1, "the first product compiles (the counter works)");
        const want = new Float64Array(M * N);
        for (let m = 0; m < M; m++) {
          for (let c = 0; c < N; c++) {
            let s = bias[c];
            for (let k = 0; k < K; k++) s += a[m * K + k] * w[c * K + k];
            want[m * N + c] = fused ? Math.max(s, 0) + res[m * N + c] : s;
          }
        }
        close(out, want, 1e-5, `matmul ${M}x${N}x${K}`);
      }
    }
  },
);

Deno.test({
  name: "matmul, inference under precision f16: after a kind's first product no M compiles",
  ignore: !rt.ctx.hasF16,
  ...GPU_TEST,
  fn: async () => {
    // The f16 path (ops/matmul_f16.ts) rounds both operands to f16 as it loads them and
    // accumulates in f32: the reference is float64 over the f16-rounded inputs.
    setPrecision("f16", rt.ctx.hasF16);
    let fromF32 = 0; // the largest difference from the unrounded product: the f16 path ran
    try {
      for (const [N, K, fused] of [[36, 20, false], [3, 20, true], [70, 37, true]] as const) {
        const w = f32(randArray(N * K, 11 + N));
        const bias = f32(randArray(N, 12 + N));
        // Both row tiles (16 rows up to 16 rows, 64 beyond) and every row bucket of the f32
        // path: the first product of a kind compiles them all.
        for (const [i, M] of [1, 5, 16, 3, 17, 40, 130, 1030, 23, 64, 65].entries()) {
          const a = f32(randArray(M * K, 13 + M));
          const res = f32(randArray(M * N, 14 + M));
          let out: Float32Array = new Float32Array();
          const n = await compiles(async () => {
            const y = noGrad(() =>
              tidy(() =>
                matmul(tensor(a, [M, K]), tensor(w, [N, K]), {
                  transB: true,
                  bias: tensor(bias),
                  ...(fused ? { activation: "relu" as const, residual: tensor(res, [M, N]) } : {}),
                })
              )
            );
            out = await y.read() as Float32Array;
            y.dispose();
          });
          const what = `f16 matmul ${M}x${N}x${K}`;
          if (i > 0) assert.equal(n, 0, `${what}: compiled ${n} pipelines`);
          else assert.ok(n >= 2, `the first product compiles both row tiles (${n})`);
          const want = new Float64Array(M * N);
          for (let m = 0; m < M; m++) {
            for (let c = 0; c < N; c++) {
              let s = bias[c], s32 = bias[c];
              for (let k = 0; k < K; k++) {
                s += Math.f16round(a[m * K + k]) * Math.f16round(w[c * K + k]);
                s32 += a[m * K + k] * w[c * K + k];
              }
              want[m * N + c] = fused ? Math.max(s, 0) + res[m * N + c] : s;
              const w32 = fused ? Math.max(s32, 0) + res[m * N + c] : s32;
              fromF32 = Math.max(fromF32, Math.abs(out[m * N + c] - w32));
            }
          }
          close(out, want, 1e-5, what);
        }
      }
      assert.ok(fromF32 > 1e-4, `the products were rounded to f16 (${fromF32})`);
    } finally {
      setPrecision("f32", rt.ctx.hasF16);
    }
  },
});

Deno.test({
  name: "f16 KV cache kernels, inference: after the first step no N, t or start compiles",
  ignore: !rt.ctx.hasF16,
  ...GPU_TEST,
  fn: async () => {
    // A layer of H = 2 heads of D = 16, capacity 24, hidden K = 272 (> 256: the skinny qkv
    // product with its KV epilogue). Per case: appendKv fills positions < start, the qkv
    // product writes t tokens at start, then attention (plain and with the projection) reads
    // the f16 cache and the gather branches it. The reference: float64 attention over the
    // keys and values the cache holds (f16) and the product's f32 queries.
    const [H, D, cap, K] = [2, 16, 24, 272];
    const W = 3 * H * D;
    const w = f32(randArray(W * K, 31, -0.2, 0.2));
    const proj = f32(randArray(H * D * H * D, 32));
    for (
      const [i, [N, t, start]] of [[2, 1, 3], [3, 1, 7], [1, 2, 4], [5, 1, 10], [4, 3, 0]].entries()
    ) {
      const past = f32(randArray(N * Math.max(start, 1) * W, 33 + i));
      const x = f32(randArray(N * t * K, 34 + i));
      const parents = Int32Array.from({ length: 2 * N }, (_, j) => (j * 3 + 1) % N);
      let got: (Float32Array | Float16Array)[] = [];
      const n = await compiles(async () => {
        const outs = noGrad(() =>
          tidy(() => {
            const cache = Tensor.empty([2, N, H, cap, D], "f16");
            if (start > 0) appendKv(tensor(past, [N, start, W]), cache, 0);
            const qkv = matmul(tensor(x, [N, t, K]), tensor(w, [W, K]), {
              transB: true,
              kvCache: { cache, start },
            });
            const pw = tensor(proj, [H * D, H * D]);
            return [
              qkv,
              cachedAttention(qkv, cache, start),
              cachedAttentionProj(qkv, cache, start, pw),
              gatherCache(cache, tensor(parents, [2 * N], "i32"), start + t),
              cache,
            ];
          })
        );
        got = await readAll(outs) as (Float32Array | Float16Array)[];
        outs.forEach((o) => o.dispose());
      });
      const what = `f16 cache N=${N} t=${t} start=${start}`;
      if (i > 0) assert.equal(n, 0, `${what}: compiled ${n} pipelines`);
      const [qkv, y, yp, child, kv] = got;
      const at = (half: number, s: number, h: number, p: number, c: number, seqs = N) =>
        (((half * seqs + s) * H + h) * cap + p) * D + c;
      for (let s = 0; s < N; s++) {
        for (let h = 0; h < H; h++) {
          for (let j = 0; j < t; j++) {
            const r = s * t + j;
            const q = Array.from({ length: D }, (_, c) => qkv[r * W + h * D + c]);
            const sc = Array.from({ length: start + j + 1 }, (_, p) => {
              let v = 0;
              for (let c = 0; c < D; c++) v += q[c] * kv[at(0, s, h, p, c)];
              return v / Math.sqrt(D);
            });
            const m = Math.max(...sc);
            const e = sc.map((v) => Math.exp(v - m));
            const z = e.reduce((a, b) => a + b, 0);
            const o = Array.from(
              { length: D },
              (_, c) => e.reduce((a, ep, p) => a + (ep / z) * kv[at(1, s, h, p, c)], 0),
            );
            close(y.subarray((r * H + h) * D, (r * H + h + 1) * D), o, 1e-4, `${what} attention`);
            const want = Array.from(
              { length: H * D },
              (_, col) => o.reduce((a, v, c) => a + v * proj[col * H * D + h * D + c], 0),
            );
            const base = (h * N * t + r) * H * D;
            close(yp.subarray(base, base + H * D), want, 1e-4, `${what} attention + proj`);
          }
        }
      }
      // The written keys and values are the product's columns rounded to f16.
      for (let s = 0; s < N; s++) {
        for (let j = 0; j < t; j++) {
          for (let c = 0; c < 2 * H * D; c++) {
            const v = qkv[(s * t + j) * W + H * D + c];
            const stored =
              kv[at(Math.floor(c / (H * D)), s, Math.floor(c / D) % H, start + j, c % D)];
            assert.ok(Math.abs(stored - v) <= 2 ** -10 * Math.abs(v) + 2 ** -24, `${what} kv`);
          }
        }
      }
      // The gather copies positions < start + t of each parent, bit for bit.
      parents.forEach((p, m) => {
        for (let half = 0; half < 2; half++) {
          for (let h = 0; h < H; h++) {
            const a = at(half, m, h, 0, 0, 2 * N), b = at(half, p, h, 0, 0);
            assert.deepEqual(
              child.subarray(a, a + (start + t) * D),
              kv.subarray(b, b + (start + t) * D),
              `${what} gather`,
            );
          }
        }
      });
    }
  },
});

Deno.test({
  name: "decode kernels on f16 weight copies, inference: after the first step no N, t or " +
    "start compiles",
  ignore: !rt.ctx.hasF16,
  ...GPU_TEST,
  fn: async () => {
    // A decode layer of H = 2 heads of D = 68 (d = 272 > 256: the skinny products) whose
    // weights have registered f16 copies (`--precision f16`), on an f16 cache: both layers'
    // kernels (ln1 + qkv + KV write, attention + proj; the compact qkvAttentionProj and
    // sumPartsMlpUp; fc1 and fc2 + residual) for several N, t and start. The compact kernel's
    // partials equal the 5-dispatch kernels' (f16 weights both; values:
    // tests/decode_f16_weights_test.ts).
    const [H, D, cap] = [2, 68, 16];
    const d = H * D, F = 4 * d;
    const mk = (n: number, k: number, seed: number) => {
      const data = f32(randArray(n * k, seed, -0.1, 0.1));
      const master = tensor(data, [n, k]);
      registerF16Shadow(master, tensor(data, [n, k], "f16"));
      return master;
    };
    const wq = mk(3 * d, d, 41), wp = mk(d, d, 42), w1 = mk(F, d, 43), w2 = mk(d, F, 44);
    const vec = (n: number, seed: number, lo = -1, hi = 1) =>
      tensor(f32(randArray(n, seed, lo, hi)), [n]);
    const [g, b, bq, bp, b1, b2] = [
      vec(d, 45, 0.5, 1.5),
      vec(d, 46),
      vec(3 * d, 47),
      vec(d, 48),
      vec(F, 49),
      vec(d, 50),
    ];
    try {
      for (const [i, [N, t, start]] of [[2, 1, 3], [3, 1, 7], [1, 2, 4], [5, 1, 10]].entries()) {
        const past = f32(randArray(N * start * 3 * d, 51 + i));
        const x = f32(randArray(N * t * d, 52 + i, -2, 2));
        let got: Float32Array[] = [];
        const n = await compiles(async () => {
          const outs = noGrad(() =>
            tidy(() => {
              const caches = [0, 1].map(() => {
                const c = Tensor.empty([2, N, H, cap, D], "f16");
                appendKv(tensor(past, [N, start, 3 * d]), c, 0);
                return c;
              });
              const xs = tensor(x, [N, t, d]);
              const ln = { weight: g, bias: b };
              const qkv = matmul(xs, wq, {
                transB: true,
                bias: bq,
                layerNorm: ln,
                kvCache: { cache: caches[0], start },
              });
              const parts = cachedAttentionProj(qkv, caches[0], start, wp);
              const compact = qkvAttentionProj(xs, caches[1], start, {
                lnWeight: g,
                lnBias: b,
                lnEps: 1e-5,
                qkvWeight: wq,
                qkvBias: bq,
                projWeight: wp,
              });
              const { h, u } = sumPartsMlpUp(compact.view([H, N, t, d]), xs, bp, ln, {
                w1,
                b1,
                activation: "gelu_erf",
              });
              const y = matmul(u, w2, { transB: true, bias: b2, residual: h });
              return [parts, compact, y];
            })
          );
          got = await readAll(outs) as Float32Array[];
          outs.forEach((o) => o.dispose());
        });
        const what = `f16 weights N=${N} t=${t} start=${start}`;
        if (i > 0) assert.equal(n, 0, `${what}: compiled ${n} pipelines`);
        const [parts, compact, y] = got;
        close(compact, parts, 4e-3, `${what}: compact vs 5-dispatch partials`);
        assert.ok(y.every(Number.isFinite), `${what}: finite`);
      }
    } finally {
      for (const w of [wq, wp, w1, w2]) unregisterF16Shadow(w);
    }
  },
});

/** Packed [B, T, 3, H, D] -> q, k, v as [B * H, T, D]. */
function unpack(qkv: Float32Array, B: number, T: number, H: number, D: number) {
  const part = (p: number) => {
    const out = new Float64Array(B * H * T * D);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < H; h++) {
          for (let d = 0; d < D; d++) {
            out[((b * H + h) * T + t) * D + d] = qkv[(((b * T + t) * 3 + p) * H + h) * D + d];
          }
        }
      }
    }
    return out;
  };
  return [part(0), part(1), part(2)];
}

Deno.test(
  "fused attention, inference: one pipeline for every T and batch; f64 reference",
  GPU_TEST,
  async () => {
    const H = 2, D = 16;
    for (const causal of [true, false]) {
      for (const [i, [B, T]] of [[1, 36], [2, 73], [3, 20], [1, 110], [2, 17]].entries()) {
        const qkv = f32(randArray(B * T * 3 * H * D, 10 * B + T));
        let out: Float32Array = new Float32Array();
        const n = await compiles(async () => {
          const y = noGrad(() =>
            fusedAttention(tensor(qkv, [B, T, 3 * H * D]), { heads: H, causal })
          );
          out = await y.read() as Float32Array;
          y.dispose();
        });
        if (i > 0) assert.equal(n, 0, `attention B${B} T${T}: compiled ${n} pipelines`);
        const [q, k, v] = unpack(qkv, B, T, H, D);
        const ref = attentionForwardRef({ BH: B * H, Tq: T, S: T, D, causal }, q, k, v);
        // Reference is [B, H, T, D]; the op returns [B, T, H, D].
        const want = new Float64Array(B * T * H * D);
        for (let b = 0; b < B; b++) {
          for (let h = 0; h < H; h++) {
            for (let t = 0; t < T; t++) {
              for (let d = 0; d < D; d++) {
                want[((b * T + t) * H + h) * D + d] = ref.o[(((b * H + h) * T + t) * D) + d];
              }
            }
          }
        }
        close(out, want, 2e-5, `attention causal=${causal} B${B} T${T}`);
      }
    }
  },
);

Deno.test(
  "layout, gather, reductions, norms: one pipeline for every row count and window",
  GPU_TEST,
  async () => {
    const C = 5;
    const gamma = f32(randArray(C, 7)), beta = f32(randArray(C, 8));
    // (rows R, window length L): concat [R, L] ++ [R, 3], slices, row gathers, row reductions.
    for (const [i, [R, L]] of [[2, 4], [3, 9], [7, 1], [1, 13]].entries()) {
      const x = f32(randArray(R * C, 20 + R));
      const past = Int32Array.from({ length: R * L }, (_, j) => (j * 7 + R) % 11);
      const cur = Int32Array.from({ length: R * 3 }, (_, j) => 100 + j);
      const idx = Int32Array.from({ length: R + 1 }, (_, j) => (j * 5 + 1) % R);
      let got: (Float32Array | Int32Array)[] = [];
      const n = await compiles(async () => {
        const outs = noGrad(() =>
          tidy(() => {
            const xt = tensor(x, [R, C]);
            const joined = concat([tensor(past, [R, L], "i32"), tensor(cur, [R, 3], "i32")], 1);
            return [
              joined,
              slice(joined, 1, L - 1, L + 2),
              indexSelect(xt, tensor(idx, [R + 1], "i32")),
              sum(xt, 1),
              argmax(xt, 1),
              mean(xt, 0),
              logSoftmax(xt),
              layerNorm(xt, tensor(gamma), tensor(beta)),
              add(xt, tensor(beta, [1, C])),
              // Rows in an inner axis (a Q ensemble's [members, rows, C]) times a [C] vector.
              mul(tensor(Float32Array.of(...x, ...x), [2, R, C]), tensor(gamma)),
            ] as Tensor[];
          })
        );
        got = await Promise.all(outs.map((t) => t.read())) as (Float32Array | Int32Array)[];
        outs.forEach((t) => t.dispose());
      });
      if (i > 0) assert.equal(n, 0, `R=${R} L=${L}: compiled ${n} pipelines`);
      const row = (r: number) => Array.from(x.subarray(r * C, (r + 1) * C));
      const rows = Array.from({ length: R }, (_, r) => row(r));
      const joined = rows.flatMap((_, r) => [
        ...past.subarray(r * L, (r + 1) * L),
        ...cur.subarray(r * 3, (r + 1) * 3),
      ]);
      assert.deepEqual(Array.from(got[0]), joined, "concat");
      const W = L + 3;
      assert.deepEqual(
        Array.from(got[1]),
        rows.flatMap((_, r) => joined.slice(r * W + L - 1, r * W + L + 2)),
        "slice",
      );
      assert.deepEqual(Array.from(got[2]), Array.from(idx).flatMap((j) => row(j)), "indexSelect");
      close(got[3], rows.map((v) => v.reduce((a, b) => a + b, 0)), 1e-6, "sum");
      assert.deepEqual(Array.from(got[4]), rows.map((v) => v.indexOf(Math.max(...v))), "argmax");
      close(
        got[5],
        Array.from({ length: C }, (_, c) => rows.reduce((a, v) => a + v[c], 0) / R),
        1e-6,
        "mean(axis 0)",
      );
      close(
        got[6],
        rows.flatMap((v) => {
          const m = Math.max(...v);
          const lse = m + Math.log(v.reduce((a, b) => a + Math.exp(b - m), 0));
          return v.map((e) => e - lse);
        }),
        1e-5,
        "logSoftmax",
      );
      close(
        got[7],
        rows.flatMap((v) => {
          const mu = v.reduce((a, b) => a + b, 0) / C;
          const va = v.reduce((a, b) => a + (b - mu) ** 2, 0) / C;
          return v.map((e, c) => (e - mu) / Math.sqrt(va + 1e-5) * gamma[c] + beta[c]);
        }),
        1e-5,
        "layerNorm",
      );
      close(got[8], rows.flatMap((v) => v.map((e, c) => e + beta[c])), 1e-6, "add");
      const scaled = rows.flatMap((v) => v.map((e, c) => e * gamma[c]));
      close(got[9], [...scaled, ...scaled], 1e-6, "mul [2, R, C] x [C]");
    }
  },
);

Deno.test(
  "tokenizer conv and group norm, inference: one pipeline for every batch; f64 reference",
  GPU_TEST,
  async () => {
    // Geometries of the tokenizer: 3x3 s1 p1, the 8x8 s7 downsample padded (0, 1, 0, 1), 1x1.
    const cases = [
      { C: 3, H: 9, O: 8, k: 3, stride: 1, pad: [1, 1, 1, 1] },
      { C: 4, H: 15, O: 6, k: 8, stride: 7, pad: [0, 1, 0, 1] },
      { C: 8, H: 6, O: 24, k: 1, stride: 1, pad: [0, 0, 0, 0] },
    ] as const;
    for (const g of cases) {
      const w = f32(randArray(g.O * g.C * g.k * g.k, g.O + g.k));
      const bias = f32(randArray(g.O, g.C));
      const gw = f32(randArray(g.O, 5)), gb = f32(randArray(g.O, 6));
      for (const [i, N] of [2, 1, 5, 3].entries()) {
        const x = f32(randArray(N * g.C * g.H * g.H, N + g.H));
        let got: Float32Array[] = [];
        const n = await compiles(async () => {
          const outs = noGrad(() =>
            tidy(() => {
              const y = conv2d(
                tensor(x, [N, g.C, g.H, g.H]),
                tensor(w, [g.O, g.C, g.k, g.k]),
                tensor(bias),
                {
                  stride: g.stride,
                  padding: [...g.pad] as [number, number, number, number],
                },
              );
              return [y, groupNorm(y, 2, tensor(gw), tensor(gb))];
            })
          );
          got = await Promise.all(outs.map((t) => t.read())) as Float32Array[];
          outs.forEach((t) => t.dispose());
        });
        if (i > 0) assert.equal(n, 0, `conv k${g.k} N=${N}: compiled ${n} pipelines`);
        const y = conv2dRef(
          { data: Float64Array.from(x), shape: [N, g.C, g.H, g.H] },
          w,
          [g.O, g.C, g.k, g.k],
          bias,
          g.stride,
          [...g.pad] as [number, number, number, number],
        );
        close(got[0], y.data, 1e-5, `conv k${g.k} N=${N}`);
        close(got[1], groupNormRef(y, 2, gw, gb).data, 1e-4, `groupNorm N=${N}`);
      }
    }
  },
);
