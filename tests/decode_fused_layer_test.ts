/**
 * The 5-dispatch decode layer's fused pieces against float64 and the unfused compositions:
 * the KV-cache epilogue of the QKV matmul (matmul `kvCache`) against matmul + appendKv,
 * attention with per-head output projections (`cachedAttentionProj`) against float64 and
 * cachedAttention + matmul, and the partials' sum + layer norm (`sumPartsNorm`) against
 * float64; the layer's dispatch count.
 */
import assert from "node:assert/strict";
import { counterDelta, initRuntime } from "../kernels/core/runtime.ts";
import { setPlanVerification } from "../kernels/core/plan_cache.ts";
import { noGrad } from "../kernels/core/autograd.ts";
import { readAll, Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { matmul, relu, sum } from "../kernels/ops/mod.ts";
import { sumPartsNorm } from "../kernels/ops/sum_parts_norm.ts";
import { appendKv, cachedAttention, cachedAttentionProj } from "../kernels/ops/cached_attention.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { SeedStream } from "../util/rng.ts";
import { assertClose, randArray } from "./helpers/reference.ts";

const rt = await initRuntime();
const f32t = (a: Float64Array, shape: number[]) => tensor(Float32Array.from(a), shape);

Deno.test("matmul kvCache: qkv + KV write in one skinny dispatch = matmul + appendKv", async () => {
  // K = 264 takes the skinny kernel; K = 64 falls back to matmul then appendKv.
  for (
    const [K, H, D, t, start, ln] of [
      [264, 2, 132, 1, 5, false],
      [264, 3, 32, 2, 7, true],
      [64, 2, 16, 1, 3, false],
    ] as const
  ) {
    const seqs = 4, cap = 12, N = 3 * H * D;
    const x = randArray(seqs * t * K, K + t), w = randArray(N * K, 2, -0.1, 0.1);
    const b = randArray(N, 3), init = randArray(2 * seqs * H * cap * D, 4);
    const g = randArray(K, 5, 0.5, 1.5), be = randArray(K, 6);
    const res = await noGrad(async () => {
      const tx = f32t(x, [seqs, t, K]), tw = f32t(w, [N, K]), tb = f32t(b, [N]);
      const cacheShape = [2, seqs, H, cap, D];
      const c1 = f32t(init, cacheShape), c2 = f32t(init, cacheShape);
      const layerNormOpt = ln ? { weight: f32t(g, [K]), bias: f32t(be, [K]) } : undefined;
      const opts = { transB: true, bias: tb, layerNorm: layerNormOpt };
      // The composition first: a shape-generic product's first call of a kind also warms
      // its other row buckets (extra one-workgroup dispatches, kernels/ops/matmul.ts).
      const plain = matmul(tx, tw, opts);
      appendKv(plain, c2, start);
      const before = rt.dispatchCount;
      const fused = matmul(tx, tw, { ...opts, kvCache: { cache: c1, start } });
      const n = rt.dispatchCount - before;
      const [a, p, k1, k2] = await readAll([fused, plain, c1, c2]);
      return { n, a, p, k1, k2 };
    });
    const what = `K ${K} H ${H} D ${D} t ${t} ln ${ln}`;
    assert.equal(res.n, K === 264 ? 1 : 2, `${what}: dispatches`);
    assertClose(res.a, res.p, { atol: 1e-5, rtol: 1e-5, what: `${what} output` });
    // Written positions agree; every other cache entry is untouched (the initial values).
    assertClose(res.k1, res.k2, { atol: 1e-5, rtol: 1e-5, what: `${what} cache` });
    let changed = 0;
    res.k1.forEach((v, i) => (changed += v !== Math.fround(init[i]) ? 1 : 0));
    assert.equal(changed, 2 * seqs * H * t * D, `${what}: entries written`);
  }
  const x = tensor(new Float32Array(4 * 264), [4, 1, 264]);
  const w = tensor(new Float32Array(792 * 264), [792, 264]);
  assert.throws(
    () =>
      matmul(x, w, { transB: true, kvCache: { cache: Tensor.empty([2, 4, 2, 8, 132]), start: 8 } }),
    /positions from 8 exceed the capacity 8/,
  );
  assert.throws(
    () =>
      matmul(x, w, { transB: true, kvCache: { cache: Tensor.empty([2, 4, 2, 8, 64]), start: 0 } }),
    /needs 384 output columns, got 792/,
  );
});

/** float64 causal attention of rows [from, to) over the prefix: [N, t, H, D]. */
function attention64(all: Float64Array, N: number, to: number, from: number, H: number, D: number) {
  const W = 3 * H * D, t = to - from;
  const out = new Float64Array(N * t * H * D);
  const at = (n: number, p: number, slot: number, h: number, c: number) =>
    all[n * to * W + p * W + (slot * H + h) * D + c];
  for (let n = 0; n < N; n++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < t; i++) {
        const qp = from + i;
        const s: number[] = [];
        for (let j = 0; j <= qp; j++) {
          let v = 0;
          for (let c = 0; c < D; c++) v += at(n, qp, 0, h, c) * at(n, j, 1, h, c);
          s.push(v / Math.sqrt(D));
        }
        const m = Math.max(...s);
        const e = s.map((v) => Math.exp(v - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let c = 0; c < D; c++) {
          let o = 0;
          for (let j = 0; j <= qp; j++) o += (e[j] / z) * at(n, j, 2, h, c);
          out[((n * t + i) * H + h) * D + c] = o;
        }
      }
    }
  }
  return out;
}

Deno.test("cachedAttentionProj: per-head projections = float64; their sum = attention · W^T", async () => {
  for (const [H, D] of [[2, 16], [3, 64]]) {
    const N = 3, cap = 30, S = 25, W = 3 * H * D, d = H * D;
    const all = randArray(N * S * W, D + H, -2, 2);
    const wt = randArray(d * d, 7, -0.2, 0.2);
    const cache = Tensor.empty([2, N, H, cap, D]);
    const weight = f32t(wt, [d, d]);
    const rowsOf = (from: number, to: number) => {
      const out = new Float64Array(N * (to - from) * W);
      for (let n = 0; n < N; n++) {
        out.set(all.subarray((n * S + from) * W, (n * S + to) * W), n * (to - from) * W);
      }
      return out;
    };
    for (const [a, b] of [[0, 20], [20, 21], [21, 25]]) {
      const qkv = f32t(rowsOf(a, b), [N, b - a, W]);
      appendKv(qkv, cache, a);
      const parts = cachedAttentionProj(qkv, cache, a, weight);
      const y = cachedAttention(qkv, cache, a);
      const unfused = matmul(y, weight, { transB: true });
      const summed = sum(parts, 0);
      const [got, s, u] = await readAll([parts, summed, unfused]);
      const t = b - a, M = N * t;
      const att = attention64(rowsOf(0, b), N, b, a, H, D);
      const want = new Float64Array(H * M * d);
      for (let h = 0; h < H; h++) {
        for (let m = 0; m < M; m++) {
          for (let j = 0; j < d; j++) {
            let v = 0;
            for (let c = 0; c < D; c++) v += att[(m * H + h) * D + c] * wt[j * d + h * D + c];
            want[(h * M + m) * d + j] = v;
          }
        }
      }
      const what = `H ${H} D ${D} positions ${a}..${b}`;
      assert.deepEqual(parts.shape, [H, M, d]);
      assertClose(got, want, { atol: 2e-5, rtol: 1e-4, what: `${what} vs float64` });
      assertClose(s, u, { atol: 1e-5, rtol: 1e-5, what: `${what} vs unfused` });
      for (const x of [qkv, parts, y, unfused, summed]) x.dispose();
    }
    assert.throws(
      () => cachedAttentionProj(f32t(rowsOf(0, 1), [N, 1, W]), cache, 25, Tensor.empty([d, 4])),
      /weight \[.*\] must be/,
    );
    cache.dispose();
    weight.dispose();
  }
});

Deno.test("KV-cache kernels: one pipeline for every number of sequences and new tokens; float64", async () => {
  // d = 48: 2 column blocks of 24 when few rows (cachedAttentionProj's blocked grid).
  const H = 3, D = 16, cap = 12, d = H * D, W = 3 * d;
  const wt = randArray(d * d, 11, -0.2, 0.2);
  const weight = f32t(wt, [d, d]);
  let compiled = 0;
  const verify = setPlanVerification(true);
  try {
    for (const [i, [N, a, b]] of [[2, 0, 5], [5, 5, 6], [1, 6, 9], [3, 3, 4]].entries()) {
      const all = randArray(N * b * W, 20 + i, -2, 2); // [N, b, W]: positions 0..b-1
      const rows = (from: number, to: number) => {
        const out = new Float64Array(N * (to - from) * W);
        for (let n = 0; n < N; n++) {
          out.set(all.subarray((n * b + from) * W, (n * b + to) * W), n * (to - from) * W);
        }
        return f32t(out, [N, to - from, W]);
      };
      const cache = Tensor.empty([2, N, H, cap, D]);
      const before = rt.counters();
      const got = noGrad(() =>
        tidy(() => {
          if (a > 0) appendKv(rows(0, a), cache, 0);
          const qkv = rows(a, b);
          appendKv(qkv, cache, a);
          const y = cachedAttention(qkv, cache, a);
          const p = cachedAttentionProj(qkv, cache, a, weight);
          return { reads: readAll([y, p]) };
        })
      );
      const [y, p] = await got.reads;
      if (i > 0) compiled += counterDelta(before, rt.counters()).pipelinesCompiled;
      const att = attention64(all, N, b, a, H, D);
      const what = `N ${N} positions ${a}..${b}`;
      assertClose(y, att, { atol: 2e-5, rtol: 1e-4, what: `${what} attention` });
      const M = N * (b - a);
      const want = new Float64Array(H * M * d);
      for (let h = 0; h < H; h++) {
        for (let m = 0; m < M; m++) {
          for (let j = 0; j < d; j++) {
            let v = 0;
            for (let c = 0; c < D; c++) v += att[(m * H + h) * D + c] * wt[j * d + h * D + c];
            want[(h * M + m) * d + j] = v;
          }
        }
      }
      assertClose(p, want, { atol: 2e-5, rtol: 1e-4, what: `${what} proj` });
      cache.dispose();
    }
  } finally {
    setPlanVerification(verify);
  }
  assert.equal(compiled, 0, "new N and t compile no pipeline");
  weight.dispose();
});

Deno.test("sumPartsNorm: h = r + bias + sum of partials and LN(h) = float64; one pipeline for every row count", async () => {
  // K % 4 == 0 takes the kernel (K = 264: 66 chunks on 128 threads); K = 6 the composition.
  for (const [K, P] of [[264, 3], [32, 2], [6, 2]]) {
    let compiled = 0;
    for (const M of [5, 1, 16]) {
      const parts = randArray(P * M * K, K + M, -2, 2), r = randArray(M * K, 2 * K + M);
      const pb = randArray(K, 3), g = randArray(K, 4, 0.5, 1.5), be = randArray(K, 5);
      const before = rt.counters();
      const got = await noGrad(() =>
        tidy(() => {
          const c0 = rt.dispatchCount;
          const out = sumPartsNorm(f32t(parts, [P, M, 1, K]), f32t(r, [M, 1, K]), f32t(pb, [K]), {
            weight: f32t(g, [K]),
            bias: f32t(be, [K]),
          });
          const n = rt.dispatchCount - c0;
          return { n, reads: readAll([out.h, out.n]) };
        })
      );
      const [h, n] = await got.reads;
      if (M !== 5) compiled += rt.counters().pipelinesCompiled - before.pipelinesCompiled;
      const wantH = new Float64Array(M * K), wantN = new Float64Array(M * K);
      for (let i = 0; i < M; i++) {
        for (let k = 0; k < K; k++) {
          let v = r[i * K + k] + pb[k];
          for (let p = 0; p < P; p++) v += parts[(p * M + i) * K + k];
          wantH[i * K + k] = v;
        }
        const row = wantH.subarray(i * K, (i + 1) * K);
        const mean = row.reduce((a, v) => a + v, 0) / K;
        const v = row.reduce((a, u) => a + (u - mean) ** 2, 0) / K;
        for (let k = 0; k < K; k++) {
          wantN[i * K + k] = ((row[k] - mean) / Math.sqrt(v + 1e-5)) * g[k] + be[k];
        }
      }
      const what = `K ${K} P ${P} M ${M}`;
      if (K % 4 === 0) assert.equal(got.n, 1, `${what}: one dispatch`);
      assertClose(h, wantH, { atol: 1e-5, rtol: 1e-5, what: `${what} h` });
      assertClose(n, wantN, { atol: 2e-5, rtol: 1e-4, what: `${what} n` });
    }
    if (K % 4 === 0) assert.equal(compiled, 0, `K ${K}: new row counts compile nothing`);
  }
});

Deno.test("matmul relu epilogue = matmul + relu (skinny and tiled kernels)", async () => {
  for (const [M, N, K] of [[4, 40, 264], [40, 24, 20]]) {
    const a = f32t(randArray(M * K, M), [M, K]), w = f32t(randArray(N * K, N), [N, K]);
    const b = f32t(randArray(N, 5), [N]);
    const [fused, plain] = await readAll([
      matmul(a, w, { transB: true, bias: b, activation: "relu" }),
      relu(matmul(a, w, { transB: true, bias: b })),
    ]);
    assert.ok(fused.some((v) => v === 0) && fused.some((v) => v > 0), "both signs");
    assertClose(fused, plain, { atol: 1e-6, rtol: 1e-6, what: `${M}x${N}x${K}` });
  }
});

Deno.test("decode layer: 5 dispatches (ln1 + qkv + KV, attention + proj, sum + ln2, fc1, fc2)", () => {
  const cfg = worldActionConfig("tiny", { d: 264, heads: 2, layers: 1, timesteps: 2, seed: 3 });
  const model = new WorldActionModel(cfg);
  model.eval();
  const b = model.blocks[0];
  const cache = Tensor.empty([2, 4, 2, 16, 132]);
  const x = tensor(Float32Array.from(randArray(4 * cfg.d, 9)), [4, 1, cfg.d]);
  noGrad(() =>
    tidy(() => {
      const c0 = rt.dispatchCount;
      const qkv = b.decodeQkv(x, { cache, start: 3 });
      const parts = cachedAttentionProj(qkv, cache, 3, b.attn.proj.weight);
      const y = b.decodeTailParts(x, parts, new SeedStream(0));
      assert.equal(rt.dispatchCount - c0, 5);
      assert.deepEqual(y.shape, [4, 1, cfg.d]);
    })
  );
  x.dispose();
  cache.dispose();
  for (const p of model.parameters()) p.dispose();
});
