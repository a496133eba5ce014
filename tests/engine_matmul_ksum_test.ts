/**
 * The k-sum epilogue of the generated matmul (`MatmulSpec.sumK`, `matmulKSum`): the sum over
 * k of op(A) or op(B) written by the same kernel, which gives a Linear layer its bias gradient
 * from the weight-gradient GEMM. Forward against float64 (product and sum) and against the
 * unfused composition (a ones-row matmul, the former bias gradient) on awkward shapes, every
 * layout, batched, skinny tiles, and forced split-K (the sums of the parts reduced in the
 * second pass); the Linear backward by finite differences; and the dispatch saving.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { backward } from "../kernels/core/autograd.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { full, matmul, matmulKSum, sumAll } from "../kernels/ops/mod.ts";
import { planMatmul } from "../kernels/codegen/matmul/plan.ts";
import { InitRng, Linear } from "../kernels/nn/layers.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { assertClose, numel, randArray } from "./helpers/reference.ts";
import { matmulRef } from "./helpers/cpu_nn.ts";

const rt = await initRuntime();
let seed = 11;

/** op(X) of batch `bi` as float64 [rows][cols]. */
function dense(x: Float64Array, shape: number[], trans: boolean, bi: number) {
  const [r, c] = shape.slice(-2);
  const base = shape.length > 2 ? bi * r * c : 0;
  return (i: number, j: number) => trans ? x[base + j * c + i] : x[base + i * c + j];
}

async function check(
  aShape: number[],
  bShape: number[],
  which: "a" | "b",
  opts: { transA?: boolean; transB?: boolean; splitK?: number | "auto" } = {},
): Promise<void> {
  const { transA = false, transB = false } = opts;
  const a = randArray(numel(aShape), seed++);
  const b = randArray(numel(bShape), seed++);
  const ref = matmulRef(
    { data: a, shape: aShape, trans: transA },
    { data: b, shape: bShape, trans: transB },
  );
  const [ar, ac] = aShape.slice(-2);
  const [br, bc] = bShape.slice(-2);
  const M = transA ? ac : ar, K = transA ? ar : ac, N = transB ? br : bc;
  const batch = numel(ref.shape.slice(0, -2));
  const folded = bShape.length === 2 && !transA;
  const rows = folded ? batch * M : M;
  const sumRef: number[] = [];
  const nb = folded ? 1 : batch;
  for (let bi = 0; bi < nb; bi++) {
    if (which === "a") {
      const A = dense(a, folded ? [rows, K] : aShape, transA, bi);
      for (let i = 0; i < rows; i++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += A(i, k);
        sumRef.push(s);
      }
    } else {
      const B = dense(b, bShape, transB, bShape.length > 2 ? bi : 0);
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += B(k, j);
        sumRef.push(s);
      }
    }
  }
  const what = `[${aShape}]${transA ? "^T" : ""} x [${bShape}]${transB ? "^T" : ""} sum ${which}` +
    (opts.splitK ? ` split ${opts.splitK}` : "");
  const ts = tidy(() => {
    const ta = tensor(Float32Array.from(a), aShape);
    const tb = tensor(Float32Array.from(b), bShape);
    const r = matmulKSum(ta, tb, which, opts);
    // The unfused composition: a ones row times the operand (the former bias gradient).
    let u = null;
    if (nb === 1) {
      u = which === "a"
        ? matmul(full([1, K], 1), ta.view(folded ? [rows, K] : aShape), { transB: !transA })
        : matmul(full([1, K], 1), tb, { transB });
    }
    return u ? [r.out, r.sum, u] : [r.out, r.sum];
  });
  const [out, sum, unfused] = await readAll(ts);
  for (const t of ts) t.dispose();
  const tol = { atol: 1e-4, rtol: 1e-4 };
  assertClose(out, ref.data, { ...tol, what: `${what}: product` });
  assertClose(sum, sumRef, { ...tol, what: `${what}: k-sum` });
  if (unfused) assertClose(sum, unfused, { ...tol, what: `${what}: k-sum vs ones-matmul` });
}

Deno.test("matmul k-sum: every layout, awkward sizes, both operands", async () => {
  for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]]) {
    for (const [M, K, N] of [[7, 13, 5], [33, 70, 9], [1, 3, 65]]) {
      const aS = transA ? [K, M] : [M, K];
      const bS = transB ? [N, K] : [K, N];
      await check(aS, bS, "a", { transA, transB });
      await check(aS, bS, "b", { transA, transB });
    }
  }
});

Deno.test("matmul k-sum: skinny tiles, batched, folded batch", async () => {
  await check([4, 40], [40, 130], "a"); // skinny M
  await check([4, 40], [40, 130], "b");
  await check([150, 40], [40, 6], "a"); // skinny N
  await check([3, 5, 9], [3, 9, 7], "a"); // batched: [batch, M]
  await check([3, 5, 9], [3, 9, 7], "b", { transB: false }); // [batch, N]
  await check([2, 5, 9], [7, 9], "a", { transB: true }); // folded rows
});

Deno.test("matmul k-sum: forced split-K (parts reduced in the second pass)", async () => {
  const spec = {
    batch: 1,
    M: 13,
    N: 21,
    K: 150,
    transA: true,
    transB: false,
    aBatchStride: 0,
    bBatchStride: 0,
    splitK: 4,
    sumK: "a" as const,
  };
  const plan = planMatmul(spec, rt.ctx.limits);
  assert.ok(plan.splitK && plan.splitK.parts >= 3, "the plan must split");
  assert.equal(plan.splitK.sumScratchBytes, plan.splitK.parts * 13 * 4);
  await check([150, 13], [150, 21], "a", { transA: true, splitK: 4 });
  await check([150, 13], [150, 21], "b", { transA: true, splitK: 4 });
  await check([150, 3], [150, 40], "b", { transA: true, splitK: 3 }); // skinny M, more N
  await check([13, 150], [21, 150], "a", { transB: true, splitK: 5 });
});

Deno.test("Linear backward: bias and weight gradients from one GEMM, by finite differences", async () => {
  for (const [shape, out] of [[[2, 5, 7], 13], [[9, 6], 4], [[3, 1, 17], 33]] as const) {
    const inF = shape[shape.length - 1];
    await checkOp(
      `linear [${shape}] -> ${out}`,
      ([x, w, b]) => matmul(x, w, { transB: true, bias: b }),
      ([x, w, b]) => {
        const rows = x.length / inF;
        const y = new Float64Array(rows * out);
        for (let i = 0; i < rows; i++) {
          for (let j = 0; j < out; j++) {
            let s = b[j];
            for (let k = 0; k < inF; k++) s += x[i * inF + k] * w[j * inF + k];
            y[i * out + j] = s;
          }
        }
        return y;
      },
      [
        { data: randArray(numel(shape), seed++), shape: [...shape] },
        { data: randArray(out * inF, seed++), shape: [out, inF] },
        { data: randArray(out, seed++), shape: [out] },
      ],
    );
  }
});

Deno.test("Linear backward: the bias gradient costs no dispatch of its own", async () => {
  const count = (bias: boolean) =>
    tidy(() => {
      const lin = new Linear(24, 40, new InitRng(1), { bias });
      const x = tensor(Float32Array.from(randArray(2 * 8 * 24, 5)), [2, 8, 24]);
      const y = lin.forward(x);
      const loss = sumAll(y);
      const before = rt.dispatchCount;
      backward(loss);
      const n = rt.dispatchCount - before;
      for (const p of lin.parameters()) p.grad?.dispose();
      return n;
    });
  assert.equal(count(true), count(false));
  await rt.sync();
});
