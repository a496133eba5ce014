/**
 * Skinny-M GEMMs WITH a k-sum (`sumK`, the bias-gradient products) split K across workgroups
 * by default (`chooseDecodeSplit`; without a k-sum they take the one-pass skinny kernel, see
 * tests/matmul_skinny_test.ts): the planner's occupancy on the JOWA-150M and 40M decode
 * shapes (M = 1, 4, 16 rows) — at least DECODE_WORKGROUPS (264, two per H100 SM) workgroups
 * where the shape allows, never more than DECODE_MAX_SLICES (16) TK-deep k-slices per
 * workgroup — and the split product with its k-sum through `matmulKSum` (awkward K) against
 * float64 and against the unsplit kernel (`splitK: 1`).
 */
import assert from "node:assert/strict";
import {
  DECODE_MAX_SLICES,
  DECODE_WORKGROUPS,
  type MatmulSpec,
  planMatmul,
  threadsOf,
} from "../kernels/codegen/matmul/plan.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { matmulKSum } from "../kernels/ops/matmul.ts";
import { assertClose, randArray } from "./helpers/reference.ts";

const LIMITS = {
  maxComputeWorkgroupStorageSize: 32768,
  maxComputeInvocationsPerWorkgroup: 1024,
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

Deno.test("decode split: 150M and 40M decode shapes reach 264 workgroups, <= 16 slices each", () => {
  // [N, K] of qkv, fc1, fc2 (150M: d 768; 40M: d 512), out-proj where it can.
  const shapes = [[2304, 768], [3072, 768], [768, 3072], [768, 768], [1536, 512], [2048, 512], [
    512,
    2048,
  ]];
  for (const M of [1, 4, 16]) {
    for (const [N, K] of shapes) {
      const p = planMatmul(spec(M, N, K, { sumK: "b" }), LIMITS);
      const parts = p.splitK?.parts ?? 1;
      const wgs = p.workgroups[0] * p.workgroups[1] * p.workgroups[2];
      const what = `M${M} N${N} K${K}: ${parts} parts, ${wgs} workgroups`;
      assert.ok(parts > 1, `${what}: should split`);
      assert.ok(wgs >= DECODE_WORKGROUPS, what);
      // The longest part: chunk slices, or the last part with a merged tail.
      const chunkSlices = Math.ceil(K / parts / p.tile.TK);
      assert.ok(chunkSlices <= DECODE_MAX_SLICES, `${what}: ${chunkSlices} slices per part`);
      assert.ok(threadsOf(p.tile) >= 32, what);
    }
  }
  // Unsplit before: fc2 of 150M ran 192 slices in each of its few workgroups.
  const before = planMatmul(spec(16, 768, 3072, { splitK: 1, sumK: "b" }), LIMITS);
  assert.equal(before.splitK, undefined);
  assert.ok(before.workgroups[0] <= 48);
});

Deno.test("decode split: short K, many rows or an explicit splitK are left alone", () => {
  const s = (M: number, N: number, K: number, extra: Partial<MatmulSpec> = {}) =>
    spec(M, N, K, { sumK: "b", ...extra });
  assert.equal(planMatmul(s(4, 256, 256), LIMITS).splitK, undefined); // 16 slices
  assert.equal(planMatmul(s(17, 768, 3072), LIMITS).splitK, undefined); // not skinny
  assert.equal(planMatmul(s(4, 8, 3072), LIMITS).splitK, undefined); // N <= 16 too
  assert.equal(planMatmul(s(4, 768, 3072, { splitK: 1 }), LIMITS).splitK, undefined);
  assert.equal(planMatmul(s(4, 768, 3072, { splitK: 3 }), LIMITS).splitK?.parts, 3);
  // Without a k-sum the skinny kernel, which never splits across workgroups.
  assert.equal(planMatmul(spec(4, 768, 3072), LIMITS).splitK, undefined);
});

Deno.test("decode split: the k-sum product equals float64 and the unsplit kernel", async () => {
  const rt = await initRuntime();
  for (const [M, N, K] of [[3, 40, 600], [1, 130, 517], [16, 33, 1000]]) {
    const p = planMatmul(spec(M, N, K, { sumK: "b" }), rt.ctx.limits);
    assert.ok(p.splitK, `${M}x${N}x${K} must split`);
    const x = randArray(M * K, M + N), w = randArray(N * K, K);
    const ref = new Float64Array(M * N), refSum = new Float64Array(N);
    for (let j = 0; j < N; j++) {
      for (let k = 0; k < K; k++) refSum[j] += w[j * K + k];
      for (let i = 0; i < M; i++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[i * K + k] * w[j * K + k];
        ref[i * N + j] = s;
      }
    }
    const ts = tidy(() => {
      const tx = tensor(Float32Array.from(x), [M, K]);
      const tw = tensor(Float32Array.from(w), [N, K]);
      const split = matmulKSum(tx, tw, "b", { transB: true });
      const plain = matmulKSum(tx, tw, "b", { transB: true, splitK: 1 });
      return [split.out, split.sum, plain.out, plain.sum];
    });
    const [out, sum, plainOut, plainSum] = await readAll(ts);
    for (const t of ts) t.dispose();
    const what = `${M}x${N}x${K}`;
    assertClose(out, ref, { atol: 1e-4, rtol: 1e-4, what: `${what} split` });
    assertClose(sum, refSum, { atol: 1e-4, rtol: 1e-4, what: `${what} split k-sum` });
    assertClose(out, plainOut, { atol: 1e-4, rtol: 1e-4, what: `${what} vs unsplit` });
    assertClose(sum, plainSum, { atol: 1e-4, rtol: 1e-4, what: `${what} k-sum vs unsplit` });
  }
});
