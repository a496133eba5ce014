/**
 * Skinny-M (decode) GEMMs split K across workgroups by default (`chooseDecodeSplit`): the
 * planner's occupancy on the JOWA-150M and 40M decode shapes (M = 1, 4, 16 rows) — at least
 * DECODE_WORKGROUPS (264, two per H100 SM) workgroups where the shape allows, never more than
 * DECODE_MAX_SLICES (16) TK-deep k-slices per workgroup — and the split product through the
 * matmul op (bias, awkward K) against float64 and against the unsplit kernel (`splitK: 1`).
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
import { matmul } from "../kernels/ops/mod.ts";
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
      const p = planMatmul(spec(M, N, K), LIMITS);
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
  const before = planMatmul(spec(16, 768, 3072, { splitK: 1 }), LIMITS);
  assert.equal(before.splitK, undefined);
  assert.ok(before.workgroups[0] <= 48);
});

Deno.test("decode split: short K, many rows or an explicit splitK are left alone", () => {
  assert.equal(planMatmul(spec(4, 256, 256), LIMITS).splitK, undefined); // 16 slices
  assert.equal(planMatmul(spec(17, 768, 3072), LIMITS).splitK, undefined); // not skinny
  assert.equal(planMatmul(spec(4, 8, 3072), LIMITS).splitK, undefined); // N <= 16 too
  assert.equal(planMatmul(spec(4, 768, 3072, { splitK: 1 }), LIMITS).splitK, undefined);
  assert.equal(planMatmul(spec(4, 768, 3072, { splitK: 3 }), LIMITS).splitK?.parts, 3);
});

Deno.test("decode split: the op's split product equals float64 and the unsplit kernel", async () => {
  const rt = await initRuntime();
  for (const [M, N, K] of [[3, 40, 600], [1, 130, 517], [16, 33, 1000]]) {
    const p = planMatmul(spec(M, N, K, { bias: true }), rt.ctx.limits);
    assert.ok(p.splitK, `${M}x${N}x${K} must split`);
    const x = randArray(M * K, M + N), w = randArray(N * K, K), b = randArray(N, 7);
    const ref = new Float64Array(M * N);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = b[j];
        for (let k = 0; k < K; k++) s += x[i * K + k] * w[j * K + k];
        ref[i * N + j] = s;
      }
    }
    const ts = tidy(() => {
      const [tx, tw, tb] = [
        tensor(Float32Array.from(x), [M, K]),
        tensor(Float32Array.from(w), [N, K]),
        tensor(Float32Array.from(b), [N]),
      ];
      return [
        matmul(tx, tw, { transB: true, bias: tb }),
        matmul(tx, tw, { transB: true, bias: tb, splitK: 1 }),
      ];
    });
    const [split, plain] = await readAll(ts);
    for (const t of ts) t.dispose();
    assertClose(split, ref, { atol: 1e-4, rtol: 1e-4, what: `${M}x${N}x${K} split` });
    assertClose(split, plain, { atol: 1e-4, rtol: 1e-4, what: `${M}x${N}x${K} vs unsplit` });
  }
});
