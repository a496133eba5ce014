/**
 * The matmul op on the tape: every transA/transB combination, equal batches, a 2-D weight
 * under 3-D/4-D inputs (the folded path), a 2-D left operand with a batched right one, transA
 * with batched A and 2-D B, the fused bias, awkward sizes (1, 3, 7, 13, 33, 65); forward
 * against a float64 reference and gradients of both operands and the bias via `checkOp`.
 */
import assert from "node:assert/strict";
import { initRuntime, runtime } from "../kernels/core/runtime.ts";
import { type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import * as op from "../kernels/ops/mod.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { numel, randArray } from "./helpers/reference.ts";
import { matmulRef } from "./helpers/cpu_nn.ts";

await initRuntime();

/** Assert `fn` throws matching `re` and records no dispatch. */
function assertThrowsBeforeDispatch(fn: () => unknown, re: RegExp): void {
  const before = runtime().dispatchCount;
  assert.throws(() => tidy(fn), re);
  assert.equal(runtime().dispatchCount, before, "an op dispatched before failing");
}

let seed = 1;

/**
 * Check op(A)·op(B) (+ bias) for stored shapes `aShape`, `bShape`, forward and the gradients
 * of every operand.
 */
async function check(
  aShape: number[],
  bShape: number[],
  opts: { transA?: boolean; transB?: boolean; bias?: boolean; noGrad?: boolean } = {},
): Promise<void> {
  const { transA = false, transB = false } = opts;
  const N = transB ? bShape[bShape.length - 2] : bShape[bShape.length - 1];
  const inputs = [
    { data: randArray(numel(aShape), seed++), shape: aShape },
    { data: randArray(numel(bShape), seed++), shape: bShape },
  ];
  if (opts.bias) inputs.push({ data: randArray(N, seed++), shape: [N] });
  const name = `matmul [${aShape}]${transA ? "^T" : ""} x [${bShape}]${transB ? "^T" : ""}${
    opts.bias ? " + bias" : ""
  }`;
  const expectedShape = matmulRef(
    { data: inputs[0].data, shape: aShape, trans: transA },
    { data: inputs[1].data, shape: bShape, trans: transB },
  ).shape;
  await checkOp(
    name,
    ([a, b, bias]: Tensor[]) => {
      const y = op.matmul(a, b, { transA, transB, bias });
      assert.deepEqual(y.shape, expectedShape, `${name}: output shape`);
      return y;
    },
    ([a, b, bias]) =>
      matmulRef(
        { data: a, shape: aShape, trans: transA },
        { data: b, shape: bShape, trans: transB },
        bias,
      ).data,
    inputs,
    { atol: 1e-5, rtol: 2e-4, gradAtol: 2e-4, noGrad: opts.noGrad },
  );
}

/** Stored shape of an [r, c] operand used transposed or not, with batch axes in front. */
const stored = (batch: number[], r: number, c: number, trans: boolean) =>
  trans ? [...batch, c, r] : [...batch, r, c];

const COMBOS = [[false, false], [false, true], [true, false], [true, true]] as const;

Deno.test("matmul 2-D: all four transA/transB combinations, forward and gradients", async () => {
  const [M, K, N] = [3, 7, 5];
  for (const [transA, transB] of COMBOS) {
    await check(stored([], M, K, transA), stored([], K, N, transB), { transA, transB });
  }
});

Deno.test("matmul: awkward sizes 1, 3, 7, 13, 33, 65", async () => {
  for (const [M, K, N] of [[1, 1, 1], [1, 13, 3], [13, 1, 7], [7, 33, 1], [33, 7, 13]]) {
    await check([M, K], [K, N]);
  }
  await check([65, 13], [33, 13], { transB: true, bias: true });
  await check([13, 65], [13, 33], { transA: true });
  // Larger than one tile in every direction: forward only (finite differences get slow).
  await check([65, 33], [33, 65], { noGrad: true });
  await check([33, 65], [65, 33], { transA: true, transB: true, noGrad: true });
});

Deno.test("matmul batched (equal batch axes): all combinations, forward and gradients", async () => {
  const [M, K, N] = [3, 5, 4];
  for (const [transA, transB] of COMBOS) {
    await check(stored([2], M, K, transA), stored([2], K, N, transB), { transA, transB });
  }
  await check(stored([2, 3], M, K, false), stored([2, 3], K, N, true), { transB: true });
});

Deno.test("matmul: 2-D weight under 3-D and 4-D inputs (folded path), with bias", async () => {
  const [M, K, N] = [3, 7, 5];
  for (const transB of [false, true]) {
    await check([2, M, K], stored([], K, N, transB), { transB });
    await check([2, 2, M, K], stored([], K, N, transB), { transB, bias: true });
  }
});

Deno.test("matmul: 2-D left operand with a batched right operand", async () => {
  const [M, K, N] = [3, 7, 5];
  for (const [transA, transB] of COMBOS) {
    await check(stored([], M, K, transA), stored([2], K, N, transB), { transA, transB });
  }
  await check([M, K], [2, 2, K, N], { bias: true });
});

Deno.test("matmul: transA with batched A and 2-D B", async () => {
  const [M, K, N] = [3, 7, 5];
  for (const transB of [false, true]) {
    await check(stored([2], M, K, true), stored([], K, N, transB), { transA: true, transB });
    await check(stored([2, 2], M, K, true), stored([], K, N, transB), {
      transA: true,
      transB,
      bias: true,
    });
  }
});

Deno.test("matmul: fused bias in every layout", async () => {
  const [M, K, N] = [4, 3, 7];
  await check([M, K], [K, N], { bias: true });
  await check([K, M], [N, K], { transA: true, transB: true, bias: true });
  await check([2, M, K], [2, K, N], { bias: true });
  await check([2, K, M], [2, N, K], { transA: true, transB: true, bias: true });
});

Deno.test("matmul: one tensor as both operands (x · x^T) gets both gradients summed", async () => {
  for (const shape of [[3, 5], [2, 3, 4]]) {
    await checkOp(
      `matmul x x^T [${shape}]`,
      ([x]) => op.matmul(x, x, { transB: true }),
      ([x]) => matmulRef({ data: x, shape }, { data: x, shape, trans: true }).data,
      [{ data: randArray(numel(shape), seed++), shape }],
      { gradAtol: 2e-4 },
    );
  }
});

Deno.test("matmul: bad shapes and dtypes throw before dispatch", () => {
  const t = (shape: number[]) => tensor(new Float32Array(numel(shape)), shape);
  assertThrowsBeforeDispatch(() => op.matmul(t([3]), t([3, 2])), /matmul: operands need rank >= 2/);
  assertThrowsBeforeDispatch(
    () => op.matmul(t([2, 3]), t([4, 2])),
    /matmul: inner sizes differ: \[2,3\] x \[4,2\] \(3 vs 4\)/,
  );
  assertThrowsBeforeDispatch(
    () => op.matmul(t([2, 3]), t([2, 3]), { transB: true, transA: true }),
    /matmul: inner sizes differ/,
  );
  assertThrowsBeforeDispatch(
    () => op.matmul(t([2, 2, 3]), t([3, 3, 4])),
    /matmul: batch shapes \[2\] and \[3\] differ/,
  );
  assertThrowsBeforeDispatch(
    () => op.matmul(t([2, 3]), t([3, 4]), { bias: t([3]) }),
    /matmul: bias \[3\] must be \[4\]/,
  );
  assertThrowsBeforeDispatch(
    () => op.matmul(tensor([1, 2, 3, 4], [2, 2], "i32"), t([2, 2])),
    /matmul: f32 operands only/,
  );
});
