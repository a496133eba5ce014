/**
 * Matmul epilogues (`matmul(..., {activation, residual})`): act(op(A)·op(B) + bias) + R
 * fused into the output pass or the split-K reduce, for GPT-2's tanh GELU and the exact erf
 * GELU, with and without bias and residual, scalar and vec4 outputs, decode (skinny) shapes
 * and a forced split-K.
 * Forward against float64 and against the unfused composition (matmul, gelu op, add); on the
 * tape the op takes the composition, checked by finite differences.
 */
import assert from "node:assert/strict";
import { initRuntime, runtime } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { add, gelu, geluErf, matmul } from "../kernels/ops/mod.ts";
import { planMatmul } from "../kernels/codegen/matmul/plan.ts";
import type { EpilogueActivation } from "../kernels/codegen/activation.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { assertClose, randArray } from "./helpers/reference.ts";
import { erf64 } from "./helpers/cpu_ops.ts";

const rt = await initRuntime();

const act64 = (kind: EpilogueActivation | undefined, x: number) =>
  kind === "gelu"
    ? 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))
    : kind === "gelu_erf"
    ? 0.5 * x * (1 + erf64(x / Math.SQRT2))
    : x;

function ref(
  x: Float64Array,
  w: Float64Array,
  b: Float64Array | null,
  r: Float64Array | null,
  [M, N, K]: number[],
  act?: EpilogueActivation,
): Float64Array {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = b ? b[j] : 0;
      for (let k = 0; k < K; k++) s += x[i * K + k] * w[j * K + k];
      out[i * N + j] = act64(act, s) + (r ? r[i * N + j] : 0);
    }
  }
  return out;
}

Deno.test("matmul epilogue: GELU (tanh, erf) + residual, fused = float64 = unfused", async () => {
  let seed = 3;
  // Scalar output (N 9), vec4 output (N 12), decode shapes (the skinny kernel applies it after
  // its in-workgroup reduction) and a forced split-K (the reduce pass applies it).
  const shapes: [number, number, number, number?][] = [
    [33, 9, 20],
    [5, 12, 7],
    [3, 40, 600],
    [16, 36, 300],
    [3, 40, 600, 3],
  ];
  for (const [M, N, K, splitK] of shapes) {
    const plan = planMatmul(
      { batch: 1, M, N, K, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0, splitK },
      rt.ctx.limits,
    );
    const split = !!plan.splitK;
    assert.equal(split, splitK !== undefined, `${M}x${N}x${K}: split as expected`);
    assert.equal(!!plan.skinny, K >= 300 && !splitK, `${M}x${N}x${K}: skinny as expected`);
    for (const act of [undefined, "gelu", "gelu_erf"] as const) {
      for (const [withBias, withRes] of [[true, true], [false, true], [true, false]]) {
        if (!act && !withRes) continue;
        // Pre-activations of a few units: both GELU tails and the bend matter.
        const x = randArray(M * K, seed++, -1, 1),
          w = randArray(N * K, seed++, -3 / Math.sqrt(K), 3 / Math.sqrt(K));
        const b = withBias ? randArray(N, seed++, -1, 1) : null;
        const r = withRes ? randArray(M * N, seed++, -1, 1) : null;
        const expected = ref(x, w, b, r, [M, N, K], act);
        const what = `${M}x${N}x${K} ${act ?? "no act"} bias ${withBias} res ${withRes}`;
        const before = rt.dispatchCount;
        const ts = tidy(() => {
          const tx = tensor(Float32Array.from(x), [M, K]);
          const tw = tensor(Float32Array.from(w), [N, K]);
          const tb = b ? tensor(Float32Array.from(b), [N]) : undefined;
          const tr = r ? tensor(Float32Array.from(r), [M, N]) : undefined;
          const fused = matmul(tx, tw, {
            transB: true,
            bias: tb,
            activation: act,
            residual: tr,
            splitK,
          });
          const mid = rt.dispatchCount;
          let u: Tensor = matmul(tx, tw, { transB: true, bias: tb });
          if (act) u = act === "gelu" ? gelu(u) : geluErf(u);
          if (tr) u = add(u, tr);
          return { fused, u, fusedDispatches: mid - before };
        });
        assert.equal(ts.fusedDispatches, split ? 2 : 1, `${what}: dispatches`);
        const [got, unfused] = await readAll([ts.fused, ts.u]);
        ts.fused.dispose();
        ts.u.dispose();
        assertClose(got, expected, { atol: 2e-5, rtol: 1e-4, what: `${what} vs float64` });
        assertClose(got, unfused, { atol: 2e-6, rtol: 1e-5, what: `${what} vs unfused` });
      }
    }
  }
});

Deno.test("matmul epilogue: on the tape, gradients by finite differences", async () => {
  const [M, N, K] = [4, 6, 5];
  for (const act of ["gelu", "gelu_erf"] as const) {
    await checkOp(
      `matmul + ${act} + residual`,
      ([x, w, b, r]) => matmul(x, w, { transB: true, bias: b, activation: act, residual: r }),
      ([x, w, b, r]) => ref(x, w, b, r, [M, N, K], act),
      [
        { data: randArray(M * K, 1), shape: [M, K] },
        { data: randArray(N * K, 2), shape: [N, K] },
        { data: randArray(N, 3), shape: [N] },
        { data: randArray(M * N, 4), shape: [M, N] },
      ],
    );
  }
});

Deno.test("matmul epilogue: a residual of the wrong shape throws before dispatch", () => {
  const before = runtime().dispatchCount;
  assert.throws(
    () =>
      tidy(() =>
        matmul(tensor([1, 2], [1, 2]), tensor([1, 2, 3, 4], [2, 2]), {
          residual: tensor([1, 2, 3], [1, 3]),
        })
      ),
    /residual \[1,3\] must have the output shape \[1,2\]/,
  );
  assert.equal(runtime().dispatchCount, before);
});
