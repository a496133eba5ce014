/**
 * The COMBO penalty of fine-tuning (train/combo.ts) against a float64 reference written from
 * the authors' code (tests/helpers/cpu_combo.ts), and its gradient against float64 finite
 * differences; plus the direction of the push: down on synthetic rows, up on real actions.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor } from "../kernels/core/tensor.ts";
import { softmax } from "../kernels/ops/mod.ts";
import { backward } from "../kernels/core/autograd.ts";
import { comboPenalty } from "../train/combo.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { comboRef, type CpuComboBatch } from "./helpers/cpu_combo.ts";
import { assertClose, randArray, rng } from "./helpers/reference.ts";

await initRuntime();

function softmaxRows(x: Float64Array, K: number): Float64Array {
  const p = new Float64Array(x.length);
  for (let r = 0; r < x.length / K; r++) {
    let m = -Infinity;
    for (let i = 0; i < K; i++) m = Math.max(m, x[r * K + i]);
    let s = 0;
    for (let i = 0; i < K; i++) s += p[r * K + i] = Math.exp(x[r * K + i] - m);
    for (let i = 0; i < K; i++) p[r * K + i] /= s;
  }
  return p;
}

function gpuBatch(b: CpuComboBatch) {
  return {
    actions: tensor(b.actions, [b.N], "i32"),
    negativeMask: tensor(b.negativeMask, [b.N]),
    positiveMask: tensor(b.positiveMask, [b.N]),
    valid: b.valid ? tensor(b.valid, [b.N, b.A]) : undefined,
  };
}

/** 6 real rows (one padded) then 4 synthetic rows (one padded). */
function mixedBatch(seed: number, withValid: boolean): CpuComboBatch {
  const r = rng(seed);
  const N = 10, A = 18, K = 51;
  const real = Array.from({ length: N }, (_, n) => (n < 6 ? 1 : 0));
  const pad = Array.from({ length: N }, (_, n) => (n === 4 || n === 9 ? 0 : 1));
  const valid = Array.from({ length: N * A }, (_, i) => (i % A < 6 || r() < 0.3 ? 1 : 0));
  return {
    N,
    A,
    K,
    probs: softmaxRows(randArray(N * A * K, seed + 1, -3, 3).map(Math.fround), K),
    actions: Array.from({ length: N }, (_, n) => (n * 5) % 6),
    negativeMask: pad,
    positiveMask: pad.map((m, n) => m * real[n]),
    valid: withValid ? valid : undefined,
  };
}

Deno.test("comboPenalty matches the float64 reference (all actions, and valid actions only)", async () => {
  for (const withValid of [false, true]) {
    const b = mixedBatch(3, withValid);
    const probs = tensor(Float32Array.from(b.probs), [b.N, b.A, b.K]);
    const out = comboPenalty({ probs, ...gpuBatch(b) }, { alpha: 0.1 });
    const [got] = await readAll([out]);
    assertClose([got[0]], [comboRef(b, 0.1)], {
      rtol: 1e-4,
      atol: 1e-5,
      what: `COMBO (valid mask: ${withValid})`,
    });
    out.dispose();
    probs.dispose();
  }
  // alpha scales linearly; an empty positive set contributes 0 (not NaN).
  const b = mixedBatch(4, false);
  const noPos = { ...b, positiveMask: b.positiveMask.map(() => 0) };
  const probs = tensor(Float32Array.from(b.probs), [b.N, b.A, b.K]);
  const out = comboPenalty({ probs, ...gpuBatch(noPos) }, { alpha: 0.5 });
  const [got] = await readAll([out]);
  assertClose([got[0]], [comboRef(noPos, 0.5)], { rtol: 1e-4, what: "COMBO, no positive rows" });
});

Deno.test("comboPenalty gradient w.r.t. Q-head logits matches float64 finite differences", async () => {
  const N = 3, A = 3, K = 51;
  const b: CpuComboBatch = {
    N,
    A,
    K,
    probs: new Float64Array(0),
    actions: [1, 2, 0],
    negativeMask: [1, 1, 1],
    positiveMask: [1, 0, 0], // row 0 real; rows 1-2 synthetic
    valid: [1, 1, 1, 1, 1, 1, 1, 0, 1],
  };
  await checkOp(
    "comboPenalty",
    ([x]) => comboPenalty({ probs: softmax(x), ...gpuBatch(b) }, { alpha: 0.1 }),
    ([x]) => Float64Array.of(comboRef({ ...b, probs: softmaxRows(x, K) }, 0.1)),
    [{ data: randArray(N * A * K, 21, -2, 2), shape: [N, A, K] }],
    { rtol: 1e-4, gradAtol: 1e-5, gradRtol: 2e-3 },
  );
});

Deno.test("COMBO pushes Q down on synthetic rows and up only on real data actions", async () => {
  // One real row (action 0) and one synthetic row (action 1); A = 2, K = 3 atoms at -10, 10, 30.
  const N = 2, A = 2, K = 3;
  const probs = tensor(new Float32Array(N * A * K).fill(1 / 3), [N, A, K]);
  probs.requiresGrad = true;
  const b = {
    N,
    A,
    K,
    probs: new Float64Array(0),
    actions: [0, 1],
    negativeMask: [1, 1],
    positiveMask: [1, 0],
  };
  const loss = comboPenalty({ probs, ...gpuBatch(b) }, {
    alpha: 1,
    support: { atoms: K, vMin: -10, vMax: 30 },
  });
  backward(loss);
  const [g] = await readAll([probs.grad!]);
  // dL/dp_i = dL/dQ * z_i; sign of dL/dQ read at the top atom (z = 30 > 0).
  const dQ = (n: number, a: number) => g[(n * A + a) * K + 2] / 30;
  // Synthetic row: both actions pushed down (positive gradient), nothing pushes its action up.
  assert.ok(dQ(1, 0) > 0 && dQ(1, 1) > 0, "synthetic Q pushed down");
  assertClose([dQ(1, 1)], [0.25], { atol: 1e-6, what: "synthetic row: only the softmax term" });
  // Real row: the data action's net push is up (0.25 - 1 < 0), the other action down.
  assertClose([dQ(0, 0), dQ(0, 1)], [0.25 - 1, 0.25], { atol: 1e-6, what: "real row" });
});
