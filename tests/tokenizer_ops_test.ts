/**
 * The tokenizer's other ops against float64 CPU references: nearest upsampling and group
 * norm (forward + finite-difference gradients via checkOp), and vector quantization (indices
 * through the matmul distance, straight-through and loss gradients written out by hand,
 * since the quantizer is piecewise constant).
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { backward } from "../kernels/core/autograd.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import {
  add,
  groupNorm,
  mul,
  mulScalar,
  sumAll,
  upsampleNearest,
  vectorQuantize,
} from "../kernels/ops/mod.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { groupNormRef, upsampleRef, vqRef } from "./helpers/cpu_tokenizer_ops.ts";
import { assertClose, randArray } from "./helpers/reference.ts";

await initRuntime();

for (const [f, shape] of [[2, [2, 3, 3, 4]], [7, [1, 2, 2, 3]], [[2, 3], [2, 1, 3, 2]]] as const) {
  Deno.test(`upsampleNearest x${f} of [${shape}]`, async () => {
    const [fy, fx] = typeof f === "number" ? [f, f] : f;
    const s = [...shape] as [number, number, number, number];
    await checkOp(
      "upsampleNearest",
      (xs) => upsampleNearest(xs[0], typeof f === "number" ? f : [fy, fx]),
      (v) => upsampleRef({ data: v[0], shape: s }, fy, fx).data,
      [{ data: randArray(s.reduce((a, b) => a * b), 1), shape: s }],
    );
  });
}

for (const [groups, shape] of [[3, [2, 6, 3, 4]], [1, [1, 4, 5, 5]], [4, [3, 4, 2, 2]]] as const) {
  Deno.test(`groupNorm ${groups} groups of [${shape}]`, async () => {
    const s = [...shape] as [number, number, number, number];
    const C = s[1];
    await checkOp(
      "groupNorm",
      (xs) => groupNorm(xs[0], groups, xs[1], xs[2]),
      (v) => groupNormRef({ data: v[0], shape: s }, groups, v[1], v[2]).data,
      [
        { data: randArray(s.reduce((a, b) => a * b), 1, -2, 3), shape: s },
        { data: randArray(C, 2, 0.5, 1.5), shape: [C] },
        { data: randArray(C, 3), shape: [C] },
      ],
      { gradAtol: 2e-4, gradRtol: 2e-3 },
    );
  });
}

Deno.test("vectorQuantize: nearest codes via matmul, straight-through and loss gradients", async () => {
  const N = 37, V = 23, D = 12;
  const e = randArray(V * D, 4);
  // z near random codebook rows, so the nearest entry is unambiguous.
  const pick = randArray(N, 5, 0, V).map(Math.floor);
  const noise = randArray(N * D, 6, -0.1, 0.1);
  const z = Float64Array.from(
    noise,
    (n, i) => Math.fround(e[pick[Math.floor(i / D)] * D + (i % D)] + n),
  );
  const w = randArray(N * D, 7);
  const ref = vqRef(z, e, N, V, D);
  assert.deepEqual(Array.from(ref.indices), Array.from(pick));
  const zt = tensor(Float32Array.from(z), [N, D]);
  const et = tensor(Float32Array.from(e), [V, D]);
  zt.requiresGrad = et.requiresGrad = true;
  const alpha = 0.7, beta = 0.3;
  const { indices, zq, codebookLoss, commitmentLoss } = tidy(() => {
    const q = vectorQuantize(zt, et);
    // L = sum(w * zq) + alpha * codebook + beta * commitment.
    const loss = add(
      sumAll(mul(q.zq, tensor(Float32Array.from(w), [N, D]))),
      add(mulScalar(q.codebookLoss, alpha), mulScalar(q.commitmentLoss, beta)),
    );
    backward(loss);
    return q;
  });
  const [idx, zqv, cl, ml, dz, de] = await readAll([
    indices,
    zq,
    codebookLoss,
    commitmentLoss,
    zt.grad!,
    et.grad!,
  ]);
  assert.deepEqual(Array.from(idx), Array.from(ref.indices));
  assertClose(zqv, ref.zq, { what: "zq" });
  assertClose([cl[0], ml[0]], [ref.mse, ref.mse], { atol: 1e-7, rtol: 1e-5, what: "losses" });
  const dzRef = new Float64Array(N * D);
  const deRef = new Float64Array(V * D);
  for (let i = 0; i < N * D; i++) {
    const row = ref.indices[Math.floor(i / D)] * D + (i % D);
    const diff = z[i] - e[row];
    dzRef[i] = w[i] + (beta * 2 * diff) / (N * D);
    deRef[row] += (alpha * 2 * -diff) / (N * D);
  }
  assertClose(dz, dzRef, { atol: 1e-6, rtol: 1e-4, what: "dz (straight-through + commitment)" });
  assertClose(de, deRef, { atol: 1e-7, rtol: 1e-4, what: "dcodebook (codebook loss only)" });
  for (const t of [indices, zq, codebookLoss, commitmentLoss, zt.grad!, et.grad!, zt, et]) {
    t.dispose();
  }
});
