/** The matmul op through split-K plans (partial products + fixed-order reduce), with bias. */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { matmul } from "../kernels/ops/mod.ts";
import { planMatmul } from "../kernels/codegen/matmul/plan.ts";
import { runtime } from "../kernels/core/runtime.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { randArray } from "./helpers/reference.ts";

await initRuntime();

Deno.test("matmul op with a forced K split (3 parts) and bias: forward and gradients", async () => {
  const M = 5, K = 70, N = 6;
  const spec = {
    batch: 1,
    M,
    N,
    K,
    transA: false,
    transB: true,
    aBatchStride: 0,
    bBatchStride: 0,
    splitK: 3,
  };
  assert.ok(planMatmul(spec, runtime().ctx.limits).splitK, "the plan must actually split");
  await checkOp(
    "matmul splitK",
    ([a, w, b]) => matmul(a, w, { transB: true, bias: b, splitK: 3 }),
    ([a, w, b]) => {
      const out = new Float64Array(M * N);
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let s = b[j];
          for (let k = 0; k < K; k++) s += a[i * K + k] * w[j * K + k];
          out[i * N + j] = s;
        }
      }
      return out;
    },
    [
      { data: randArray(M * K, 1), shape: [M, K] },
      { data: randArray(N * K, 2), shape: [N, K] },
      { data: randArray(N, 3), shape: [N] },
    ],
    { atol: 1e-5, rtol: 1e-4 },
  );
});
