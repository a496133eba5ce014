/**
 * The skinny decode GEMM (kernels/codegen/matmul/skinny.ts): K split inside each workgroup,
 * one dispatch. Planner occupancy on the JOWA decode shapes (>= 264 workgroups, <= 16 slices
 * per thread), and results against float64 and against the tiled kernel (`splitK: 1`) on
 * awkward shapes: every transpose combination, tails in K and N, batches with broadcast,
 * accumulate, bias, both GELUs and the residual. Inference products read their rows at run
 * time (kernels/ops/_skinny_rows.ts): new row counts compile nothing.
 */
import assert from "node:assert/strict";
import { gpu } from "../kernels/core/device.ts";
import { type MatmulSpec, planMatmul } from "../kernels/codegen/matmul/plan.ts";
import { SKINNY_MAX_SLICES, SKINNY_WORKGROUPS } from "../kernels/codegen/matmul/skinny.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { noGrad } from "../kernels/core/autograd.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { matmul } from "../kernels/ops/mod.ts";
import type { EpilogueActivation } from "../kernels/codegen/activation.ts";
import { bindMatmul, compileMatmul, encodeMatmul } from "./helpers/matmul_pipeline.ts";
import { assertClose, randArray } from "./helpers/reference.ts";
import { erf64 } from "./helpers/cpu_ops.ts";

const GPU_TEST = { sanitizeOps: false, sanitizeResources: false };
const LIMITS = {
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupsPerDimension: 65535,
};

const spec = (M: number, N: number, K: number, extra: Partial<MatmulSpec> = {}): MatmulSpec => ({
  batch: 1,
  M,
  N,
  K,
  transA: false,
  transB: true,
  aBatchStride: 0,
  bBatchStride: 0,
  ...extra,
});

Deno.test("skinny: JOWA decode shapes get >= 264 workgroups, <= 16 slices a thread, 1 pass", () => {
  // [N, K] of qkv, fc1, fc2, proj (150M: d 768; 40M: d 512) and the Q head (918 x 1792).
  const shapes = [
    [2304, 768],
    [3072, 768],
    [768, 3072],
    [768, 768],
    [1536, 512],
    [2048, 512],
    [
      512,
      2048,
    ],
    [512, 512],
    [918, 1792],
  ];
  for (const M of [1, 4, 16]) {
    for (const [N, K] of shapes) {
      const p = planMatmul(spec(M, N, K, { bias: true }), LIMITS);
      const what = `M${M} N${N} K${K}`;
      assert.ok(p.skinny, `${what}: skinny`);
      assert.equal(p.splitK, undefined, `${what}: no reduce pass`);
      const wgs = p.workgroups[0] * p.workgroups[1] * p.workgroups[2];
      assert.ok(wgs >= SKINNY_WORKGROUPS, `${what}: ${wgs} workgroups`);
      const { C, S } = p.skinny;
      assert.ok(C * S <= 256 && C * S >= 64, `${what}: ${C * S} threads`);
      // Each thread: ceil(K / 4 / S) chunks of 4 k values.
      const kPerThread = Math.ceil(K / 4 / S) * 4;
      assert.ok(kPerThread <= SKINNY_MAX_SLICES * 16, `${what}: ${kPerThread} k a thread`);
      // The reduction fits the workgroup memory limit.
      assert.ok(M * C * S * 4 <= LIMITS.maxComputeWorkgroupStorageSize, what);
    }
  }
  // Not skinny: short K, many rows, few columns, a k-sum, an explicit split or tile.
  for (
    const s of [
      spec(4, 256, 256),
      spec(17, 768, 3072),
      spec(4, 16, 3072),
      spec(4, 768, 3072, { sumK: "b" }),
      spec(4, 768, 3072, { splitK: 1 }),
    ]
  ) assert.equal(planMatmul(s, LIMITS).skinny, undefined, JSON.stringify(s));
  // Less workgroup memory: fewer threads, still correct sizes.
  const small = planMatmul(spec(16, 768, 3072), {
    ...LIMITS,
    maxComputeWorkgroupStorageSize: 8192,
  });
  assert.ok(small.skinny && 16 * small.skinny.C * small.skinny.S * 4 <= 8192);
});

/** float64 op(A)·op(B) (+ bias) (+ C0) for a batched spec over flat arrays. */
function reference(
  s: MatmulSpec,
  a: Float64Array,
  b: Float64Array,
  bias: Float64Array | null,
  c0: Float64Array | null,
): Float64Array {
  const out = new Float64Array(s.batch * s.M * s.N);
  for (let bt = 0; bt < s.batch; bt++) {
    for (let m = 0; m < s.M; m++) {
      for (let n = 0; n < s.N; n++) {
        let v = bias ? bias[n] : 0;
        for (let k = 0; k < s.K; k++) {
          const av = a[bt * s.aBatchStride + (s.transA ? k * s.M + m : m * s.K + k)];
          const bv = b[bt * s.bBatchStride + (s.transB ? n * s.K + k : k * s.N + n)];
          v += av * bv;
        }
        const i = (bt * s.M + m) * s.N + n;
        out[i] = v + (c0 ? c0[i] : 0);
      }
    }
  }
  return out;
}

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;

/** Runs a plan through raw WebGPU (bindings a, b, c, bias) and reads C back. */
async function runRaw(
  s: MatmulSpec,
  data: { a: Float64Array; b: Float64Array; c: Float64Array; bias: Float64Array },
): Promise<Float32Array> {
  const { device, limits } = await gpu();
  const plan = planMatmul(s, limits);
  assert.ok(plan.skinny, `${plan.label} should be skinny`);
  const up = (x: Float64Array) => {
    const f = Float32Array.from(x.length ? x : [0]);
    const buf = device.createBuffer({ size: Math.max(16, f.byteLength), usage: USAGE });
    device.queue.writeBuffer(buf, 0, f);
    return buf;
  };
  const buffers = { a: up(data.a), b: up(data.b), c: up(data.c), bias: up(data.bias) };
  const read = device.createBuffer({
    size: data.c.length * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    const compiled = await compileMatmul(device, plan);
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    encodeMatmul(pass, compiled, bindMatmul(device, compiled, buffers));
    pass.end();
    enc.copyBufferToBuffer(buffers.c, 0, read, 0, data.c.length * 4);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    return new Float32Array(read.getMappedRange().slice(0));
  } finally {
    for (const b of Object.values(buffers)) b.destroy();
    read.destroy();
  }
}

Deno.test(
  "skinny: transposes, K and N tails, batches, accumulate + bias = float64",
  GPU_TEST,
  async () => {
    let seed = 11;
    const cases: Partial<MatmulSpec>[] = [];
    // Every transpose combination on awkward sizes (K % 4 != 0: scalar loads, a tail chunk).
    for (const [transA, transB] of [[false, true], [false, false], [true, true], [true, false]]) {
      cases.push({ M: 3, N: 37, K: 301, transA, transB });
      cases.push({ M: 16, N: 20, K: 264, transA, transB, bias: true });
    }
    // vec4 path with an N edge tile, M = 1 (GEMV), accumulate, batches with a broadcast B.
    cases.push({ M: 1, N: 130, K: 520, bias: true, accumulate: true });
    cases.push({ M: 5, N: 33, K: 1000, accumulate: true });
    cases.push({ M: 2, N: 24, K: 300, batch: 3, aBatchStride: 600, bBatchStride: 0, bias: true });
    cases.push({ M: 4, N: 18, K: 260, batch: 2, aBatchStride: 4 * 260, bBatchStride: 18 * 260 });
    for (const c of cases) {
      const s = spec(c.M!, c.N!, c.K!, c);
      const last = s.batch - 1;
      const a = randArray(last * s.aBatchStride + s.M * s.K, seed++);
      const b = randArray(last * s.bBatchStride + s.K * s.N, seed++);
      const c0 = randArray(s.batch * s.M * s.N, seed++);
      const bias = s.bias ? randArray(s.N, seed++) : new Float64Array(0);
      const got = await runRaw(s, { a, b, c: c0, bias });
      const want = reference(s, a, b, s.bias ? bias : null, s.accumulate ? c0 : null);
      const label = planMatmul(s, LIMITS).label;
      assertClose(got, want, { atol: 1e-4, rtol: 1e-4, what: label });
    }
  },
);

const act64 = (kind: EpilogueActivation | undefined, x: number) =>
  kind === "gelu"
    ? 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))
    : kind === "gelu_erf"
    ? 0.5 * x * (1 + erf64(x / Math.SQRT2))
    : x;

Deno.test(
  "skinny: the op's epilogues (bias, GELUs, residual) = float64 = tiled kernel",
  GPU_TEST,
  async () => {
    const rt = await initRuntime();
    let seed = 101;
    for (const [M, N, K] of [[4, 40, 600], [1, 130, 517], [16, 33, 1000]]) {
      for (const act of [undefined, "gelu", "gelu_erf"] as const) {
        const x = randArray(M * K, seed++), w = randArray(N * K, seed++, -0.1, 0.1);
        const bias = randArray(N, seed++), res = randArray(M * N, seed++);
        const ref = new Float64Array(M * N);
        for (let i = 0; i < M; i++) {
          for (let j = 0; j < N; j++) {
            let v = bias[j];
            for (let k = 0; k < K; k++) v += x[i * K + k] * w[j * K + k];
            ref[i * N + j] = act64(act, v) + res[i * N + j];
          }
        }
        const before = rt.dispatchCount;
        const out = tidy(() => {
          const tx = tensor(Float32Array.from(x), [M, K]);
          const tw = tensor(Float32Array.from(w), [N, K]);
          const tb = tensor(Float32Array.from(bias), [N]);
          const tr = tensor(Float32Array.from(res), [M, N]);
          const opts = { transB: true, bias: tb, activation: act, residual: tr };
          const fused = matmul(tx, tw, opts);
          const mid = rt.dispatchCount;
          const tiled = matmul(tx, tw, { ...opts, splitK: 1 });
          return { fused, tiled, n: mid - before };
        });
        assert.equal(out.n, 1, `${M}x${N}x${K}: one dispatch`);
        const [got, tiled] = await readAll([out.fused, out.tiled]);
        out.fused.dispose();
        out.tiled.dispose();
        const what = `${M}x${N}x${K} ${act ?? "none"}`;
        assertClose(got, ref, { atol: 1e-5, rtol: 1e-4, what });
        assertClose(got, tiled, { atol: 1e-5, rtol: 1e-4, what: `${what} vs tiled` });
      }
    }
  },
);

Deno.test(
  "skinny, inference: rows read at run time, one pipeline per row bucket = float64",
  GPU_TEST,
  async () => {
    const rt = await initRuntime();
    const N = 40, K = 264, H = 2, D = 4, cap = 6;
    const w = randArray(N * K, 1, -0.1, 0.1), bias = randArray(N, 2);
    const wq = randArray(3 * H * D * K, 3, -0.1, 0.1);
    const g = randArray(K, 4, 0.5, 1.5), be = randArray(K, 5);
    let compiled = 0;
    // The first product of each kind compiles every bucket; then no row count compiles.
    for (const [i, M] of [5, 3, 16, 9, 1, 12, 8].entries()) {
      const x = randArray(M * K, 10 + M), res = randArray(M * N, 30 + M);
      const before = rt.counters();
      const got = noGrad(() =>
        tidy(() => {
          const tx = tensor(Float32Array.from(x), [M, 1, K]);
          const y = matmul(tx, tensor(Float32Array.from(w), [N, K]), {
            transB: true,
            bias: tensor(Float32Array.from(bias), [N]),
            activation: "gelu_erf",
            residual: tensor(Float32Array.from(res), [M, 1, N]),
          });
          // ln + qkv + KV write of M sequences at position 2 (cache entries elsewhere 0).
          const cache = tensor(new Float32Array(2 * M * H * cap * D), [2, M, H, cap, D]);
          const qkv = matmul(tx, tensor(Float32Array.from(wq), [3 * H * D, K]), {
            transB: true,
            layerNorm: {
              weight: tensor(Float32Array.from(g), [K]),
              bias: tensor(Float32Array.from(be), [K]),
            },
            kvCache: { cache, start: 2 },
          });
          return { reads: readAll([y, qkv, cache]) };
        })
      );
      const [y, qkv, cache] = await got.reads;
      if (i > 0) compiled += rt.counters().pipelinesCompiled - before.pipelinesCompiled;
      const want = new Float64Array(M * N), wantQ = new Float64Array(M * 3 * H * D);
      for (let m = 0; m < M; m++) {
        const row = x.subarray(m * K, (m + 1) * K);
        for (let j = 0; j < N; j++) {
          let v = bias[j];
          for (let k = 0; k < K; k++) v += row[k] * w[j * K + k];
          want[m * N + j] = act64("gelu_erf", v) + res[m * N + j];
        }
        const mean = row.reduce((s, v) => s + v, 0) / K;
        const vr = row.reduce((s, v) => s + (v - mean) ** 2, 0) / K;
        const xn = row.map((v, k) => ((v - mean) / Math.sqrt(vr + 1e-5)) * g[k] + be[k]);
        for (let j = 0; j < 3 * H * D; j++) {
          let v = 0;
          for (let k = 0; k < K; k++) v += xn[k] * wq[j * K + k];
          wantQ[m * 3 * H * D + j] = v;
        }
      }
      const wantCache = new Float64Array(2 * M * H * cap * D);
      for (let half = 0; half < 2; half++) {
        for (let m = 0; m < M; m++) {
          for (let c = 0; c < H * D; c++) {
            const at = (((half * M + m) * H + Math.floor(c / D)) * cap + 2) * D + (c % D);
            wantCache[at] = wantQ[m * 3 * H * D + (half + 1) * H * D + c];
          }
        }
      }
      assertClose(y, want, { atol: 1e-5, rtol: 1e-4, what: `M ${M} bias gelu residual` });
      assertClose(qkv, wantQ, { atol: 1e-5, rtol: 1e-4, what: `M ${M} ln qkv` });
      assertClose(cache, wantCache, { atol: 1e-5, rtol: 1e-4, what: `M ${M} cache` });
    }
    assert.equal(compiled, 0, "row counts after the first compile nothing");
  },
);
