/**
 * nn ops: softmax / log-softmax / logsumexp (rows shorter and longer than the 256-thread
 * workgroup), layer norm, index-select / embedding with an accumulating scatter-add backward,
 * gatherLast, cross-entropy (plain, masked, weighted, all-zero mask), dropout (reproducible
 * counter-based mask), top-k (ordering, ties, limits); forward against float64 references,
 * gradients via `checkOp`, and errors raised before anything is dispatched.
 */
import assert from "node:assert/strict";
import { backward } from "../kernels/core/autograd.ts";
import { initRuntime, runtime } from "../kernels/core/runtime.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import * as op from "../kernels/ops/mod.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { assertClose, numel, randArray } from "./helpers/reference.ts";
import {
  crossEntropyRef,
  dropoutKeeps,
  dropoutRef,
  gatherLastRef,
  indexSelectRef,
  layerNormRef,
  logSoftmaxRef,
  logsumexpRef,
  softmaxRef,
  topkRef,
} from "./helpers/cpu_nn.ts";

await initRuntime();

/** Assert `fn` throws matching `re` and records no dispatch. */
function assertThrowsBeforeDispatch(fn: () => unknown, re: RegExp): void {
  const before = runtime().dispatchCount;
  assert.throws(() => tidy(fn), re);
  assert.equal(runtime().dispatchCount, before, "an op dispatched before failing");
}

/** A random float input of `shape`. */
function input(shape: number[], seed: number, lo = -1, hi = 1) {
  return { data: randArray(numel(shape), seed, lo, hi), shape };
}

/** An integer input (uploaded as i32, not differentiated). */
function ints(data: number[], shape: number[] = [data.length]) {
  return { data, shape, int: true };
}

// Row lengths on both sides of the workgroup size (256): one element, short, odd, two passes.
const ROW_SHAPES = [[3, 1], [2, 7], [2, 37], [2, 300], [2, 1, 7]];

Deno.test("softmax / logSoftmax / logsumexp: forward and gradient, rows of 1, 7, 37, 300", async () => {
  for (const [s, shape] of ROW_SHAPES.entries()) {
    const C = shape[shape.length - 1];
    const x = input(shape, 10 + s, -3, 3);
    await checkOp(`softmax[${shape}]`, ([t]) => op.softmax(t), ([v]) => softmaxRef(v, C), [x]);
    await checkOp(
      `logSoftmax[${shape}]`,
      ([t]) => op.logSoftmax(t),
      ([v]) => logSoftmaxRef(v, C),
      [x],
    );
    await checkOp(
      `logsumexp[${shape}]`,
      ([t]) => {
        const y = op.logsumexp(t);
        assert.deepEqual(y.shape, shape.slice(0, -1));
        return y;
      },
      ([v]) => logsumexpRef(v, C),
      [x],
    );
  }
});

Deno.test("softmax family: stable for large logits (max subtracted first)", async () => {
  const shape = [2, 37];
  const x = input(shape, 5, -90, 90);
  x.data[3] = 200; // exp(200) overflows f32
  for (
    const [name, fn, ref] of [
      ["softmax", op.softmax, softmaxRef],
      ["logSoftmax", op.logSoftmax, logSoftmaxRef],
      ["logsumexp", op.logsumexp, logsumexpRef],
    ] as const
  ) {
    await checkOp(name, ([t]) => fn(t), ([v]) => ref(v, 37), [x], { noGrad: true, atol: 1e-4 });
  }
});

Deno.test("layerNorm: input, weight and bias gradients, C = 5, 64, 300", async () => {
  for (const [s, shape] of [[3, 5], [2, 2, 5], [2, 64], [2, 300]].entries()) {
    const C = shape[shape.length - 1];
    await checkOp(
      `layerNorm[${shape}]`,
      ([x, w, b]) => op.layerNorm(x, w, b),
      ([x, w, b]) => layerNormRef(x, w, b, C),
      [input(shape, 20 + s, -2, 2), input([C], 30 + s, 0.5, 1.5), input([C], 40 + s)],
      { atol: 2e-5, gradAtol: 2e-4 },
    );
  }
});

Deno.test("layerNorm: custom eps, and no statistics kept without a tape", async () => {
  const shape = [4, 6];
  const x = input(shape, 1);
  await checkOp(
    "layerNorm eps 0.1",
    ([t, w, b]) => op.layerNorm(t, w, b, 0.1),
    ([t, w, b]) => layerNormRef(t, w, b, 6, 0.1),
    [x, input([6], 2), input([6], 3)],
  );
  const [xt, w, b] = [x, input([6], 2), input([6], 3)].map((i) =>
    tensor(Float32Array.from(i.data), i.shape)
  );
  const before = runtime().pool.stats().bytesInUse;
  const y = op.layerNorm(xt, w, b);
  // Only the output (one 256-byte buffer) stays allocated: the statistics go back to the pool.
  assert.equal(runtime().pool.stats().bytesInUse - before, 256);
  for (const t of [xt, w, b, y]) t.dispose();
});

Deno.test("indexSelect / embedding: [V, D] and [V, a, b] tables, repeated indices accumulate", async () => {
  // V = 5, D = 3; index 3 appears three times and 0 twice, 1 and 4 never... except once.
  const idx = [0, 3, 3, 1, 4, 0, 3, 2];
  await checkOp(
    "indexSelect [5, 3]",
    ([t, i]) => {
      const y = op.indexSelect(t, i);
      assert.deepEqual(y.shape, [2, 4, 3]);
      return y;
    },
    ([t, i]) => indexSelectRef(t, 3, i),
    [input([5, 3], 1), ints(idx, [2, 4])],
  );
  await checkOp(
    "embedding [4, 2, 3]",
    ([t, i]) => {
      const y = op.embedding(t, i);
      assert.deepEqual(y.shape, [6, 2, 3]);
      return y;
    },
    ([t, i]) => indexSelectRef(t, 6, i),
    [input([4, 2, 3], 2), ints([2, 2, 0, 2, 3, 2])],
  );
  // Many rows onto one entry: the scatter-add (sorted by row) must not lose any contribution.
  const n = 600;
  await checkOp(
    "indexSelect, 600 hits on 3 rows",
    ([t, i]) => op.indexSelect(t, i),
    ([t, i]) => indexSelectRef(t, 2, i),
    [input([3, 2], 3), ints(Array.from({ length: n }, (_, k) => (k % 5 === 0 ? 2 : k % 2)))],
    { gradAtol: 1e-3 },
  );
});

Deno.test("indexSelect: u32 indices", async () => {
  const table = tensor(Float32Array.from(randArray(12, 4)), [4, 3]);
  const idx = tensor([3, 0, 3], [3], "u32");
  const y = op.indexSelect(table, idx);
  const [t, out] = await readAll([table, y]);
  assertClose(out, indexSelectRef(t, 3, [3, 0, 3]), { atol: 0, rtol: 0 });
  for (const x of [table, idx, y]) x.dispose();
});

Deno.test("gatherLast: forward and gradient on rank 2 and 3", async () => {
  await checkOp(
    "gatherLast [3, 5]",
    ([x, i]) => op.gatherLast(x, i),
    ([x, i]) => gatherLastRef(x, 5, i),
    [input([3, 5], 1), ints([4, 0, 4])],
  );
  await checkOp(
    "gatherLast [2, 3, 7]",
    ([x, i]) => op.gatherLast(x, i),
    ([x, i]) => gatherLastRef(x, 7, i),
    [input([2, 3, 7], 2), ints([6, 0, 3, 3, 1, 5], [2, 3])],
  );
});

Deno.test("crossEntropy: plain, 0/1 mask and real weights (logits and weight gradients)", async () => {
  const C = 5;
  const targets = ints([0, 4, 2, 2, 1, 3], [2, 3]);
  const logits = input([2, 3, C], 7, -3, 3);
  await checkOp(
    "crossEntropy",
    ([l, t]) => op.crossEntropy(l, t),
    ([l, t]) => Float64Array.of(crossEntropyRef(l, C, t)),
    [logits, targets],
  );
  const mask = { data: [1, 0, 1, 1, 0, 1], shape: [2, 3] };
  await checkOp(
    "crossEntropy, 0/1 mask",
    ([l, t, w]) => op.crossEntropy(l, t, w),
    ([l, t, w]) => Float64Array.of(crossEntropyRef(l, C, t, w)),
    [logits, targets, mask],
  );
  await checkOp(
    "crossEntropy, real weights",
    ([l, t, w]) => op.crossEntropy(l, t, w),
    ([l, t, w]) => Float64Array.of(crossEntropyRef(l, C, t, w)),
    [logits, targets, input([2, 3], 8, 0.1, 2)],
  );
});

Deno.test("crossEntropy: an all-zero mask gives loss 0 and zero gradients, not NaN", async () => {
  const logits = tensor(Float32Array.from(randArray(12, 3)), [3, 4]);
  logits.requiresGrad = true;
  const targets = tensor([1, 0, 3], [3], "i32");
  const mask = tensor([0, 0, 0], [3]);
  const loss = tidy(() => {
    const l = op.crossEntropy(logits, targets, mask);
    backward(l);
    return l;
  });
  const [value, grad] = await readAll([loss, logits.grad!]);
  assert.equal(value[0], 0);
  assert.ok(grad.every((g) => g === 0), `gradient ${grad}`);
  for (const t of [logits.grad!, logits, targets, mask, loss]) t.dispose();
});

Deno.test("dropout: mask reproducible per seed, forward x*mask/(1-p), backward same mask", async () => {
  const shape = [3, 100];
  const x = input(shape, 11);
  const xt = tensor(Float32Array.from(x.data), shape);
  const [a, b, c] = [
    op.dropout(xt, 0.25, 1234),
    op.dropout(xt, 0.25, 1234),
    op.dropout(xt, 0.25, 99),
  ];
  const [va, vb, vc] = await readAll([a, b, c]);
  assert.deepEqual(va, vb, "same seed, same mask");
  assert.notDeepEqual(va, vc, "another seed, another mask");
  for (const t of [xt, a, b, c]) t.dispose();
  for (const [p, seed] of [[0.25, 1234], [0.5, 7], [0.9, 0xffffffff]]) {
    await checkOp(
      `dropout p=${p} seed=${seed}`,
      ([t]) => op.dropout(t, p, seed),
      ([v]) => dropoutRef(v, p, seed),
      [x],
    );
  }
});

Deno.test("dropout: keep rate within 0.02 of 1-p on 10k elements", async () => {
  const n = 10_000;
  const x = tensor(new Float32Array(n).fill(1), [n]);
  for (const p of [0.1, 0.5]) {
    const y = op.dropout(x, p, 42);
    const v = await y.read();
    y.dispose();
    let kept = 0;
    for (let i = 0; i < n; i++) {
      if (v[i] !== 0) {
        kept++;
        assert.ok(Math.abs(v[i] - 1 / (1 - p)) < 1e-6, `kept value ${v[i]}`);
      }
      assert.equal(v[i] !== 0, dropoutKeeps(42, i, p), `element ${i} against the CPU hash`);
    }
    assert.ok(Math.abs(kept / n - (1 - p)) < 0.02, `p=${p}: kept ${kept / n}`);
  }
  x.dispose();
});

Deno.test("dropout: p = 0 is the identity; p outside [0, 1) throws before dispatch", () => {
  const x = tensor([1, 2, 3]);
  assert.equal(op.dropout(x, 0, 5), x);
  for (const p of [-0.1, 1, 1.5, NaN]) {
    assertThrowsBeforeDispatch(() => op.dropout(x, p, 5), /dropout: p must be in \[0, 1\)/);
  }
  x.dispose();
});

/** Run topk on `data` [rows, C] and compare values and indices exactly. */
async function checkTopk(data: ArrayLike<number>, C: number, k: number): Promise<void> {
  const x = tensor(Float32Array.from(data), [data.length / C, C]);
  const { values, indices } = op.topk(x, k);
  assert.deepEqual(values.shape, [data.length / C, k]);
  const [v, i] = await readAll([values, indices]);
  const ref = topkRef(Float32Array.from(data), C, k);
  assert.deepEqual(Array.from(i), Array.from(ref.indices), `topk k=${k} C=${C} indices`);
  assert.deepEqual(Array.from(v), Array.from(ref.values), `topk k=${k} C=${C} values`);
  for (const t of [x, values, indices]) t.dispose();
}

Deno.test("topk: descending values, k = 1, k = C, k = 32", async () => {
  await checkTopk(randArray(3 * 18, 1), 18, 1);
  await checkTopk(randArray(3 * 18, 2), 18, 18);
  await checkTopk(randArray(2 * 40, 3), 40, 32);
  await checkTopk(randArray(70 * 5, 4), 5, 3); // more rows than one workgroup (64)
  await checkTopk([-Infinity, 2, -Infinity, 1], 4, 4);
});

Deno.test("topk: ties give the lower index first", async () => {
  await checkTopk([1, 3, 3, 2, 3, 0, 0, 0, 0, 0, 0, 0], 6, 4);
  await checkTopk([5, 5, 5, 5, 5], 5, 5);
  await checkTopk([2, 1, 2, 1, 2, 1, 2, 1], 8, 6);
});

Deno.test("topk: k > 32, k > C, k < 1 and fractional k throw before dispatch", () => {
  const x = tensor(new Float32Array(40), [1, 40]);
  const y = tensor(new Float32Array(10), [2, 5]);
  assertThrowsBeforeDispatch(
    () => op.topk(x, 33),
    /topk: k must be an integer in \[1, min\(32, 40\)\]/,
  );
  assertThrowsBeforeDispatch(() => op.topk(y, 6), /topk: k must be .*got 6/);
  assertThrowsBeforeDispatch(() => op.topk(y, 0), /topk/);
  assertThrowsBeforeDispatch(() => op.topk(y, 1.5), /topk/);
  x.dispose();
  y.dispose();
});

Deno.test("indexing: out-of-range uploaded indices throw before dispatch", () => {
  const table = tensor(new Float32Array(15), [5, 3]);
  const x = tensor(new Float32Array(12), [3, 4]);
  const i = (v: number[], shape = [v.length]) => tensor(v, shape, "i32");
  assertThrowsBeforeDispatch(
    () => op.indexSelect(table, i([0, 5])),
    /indexSelect: index range \[0, 5\] outside \[0, 4\]/,
  );
  assertThrowsBeforeDispatch(() => op.indexSelect(table, i([-1, 2])), /indexSelect: index range/);
  assertThrowsBeforeDispatch(() => op.embedding(table, i([7])), /indexSelect: index range/);
  assertThrowsBeforeDispatch(
    () => op.gatherLast(x, i([0, 4, 1])),
    /gatherLast: index range \[0, 4\] outside \[0, 3\]/,
  );
  assertThrowsBeforeDispatch(
    () => op.crossEntropy(x, i([0, 4, 1])),
    /crossEntropy: .*index range \[0, 4\] outside \[0, 3\]/,
  );
  for (const t of [table, x]) t.dispose();
});

Deno.test("nn ops: wrong shapes and dtypes throw before dispatch", () => {
  const x = tensor(new Float32Array(12), [3, 4]);
  const i = (v: number[], shape = [v.length]) => tensor(v, shape, "i32");
  assertThrowsBeforeDispatch(() => op.indexSelect(x, tensor([0, 1])), /indices must be i32 or u32/);
  assertThrowsBeforeDispatch(
    () => op.gatherLast(x, i([0, 1])),
    /gatherLast: indices \[2\] must have shape \[3\]/,
  );
  assertThrowsBeforeDispatch(
    () => op.gatherLast(x, tensor([0, 1, 2])),
    /indices must be i32 or u32/,
  );
  assertThrowsBeforeDispatch(
    () => op.layerNorm(x, tensor(new Float32Array(3)), tensor(new Float32Array(4))),
    /layerNorm: weight \[3\] and bias \[4\] must be \[4\]/,
  );
  assertThrowsBeforeDispatch(
    () => op.layerNorm(x, tensor(new Float32Array(4)), tensor(new Float32Array(4), [2, 2])),
    /layerNorm/,
  );
  assertThrowsBeforeDispatch(
    () => op.crossEntropy(x, i([0, 1])),
    /crossEntropy: targets \[2\] must have shape \[3\]/,
  );
  assertThrowsBeforeDispatch(
    () => op.crossEntropy(x, i([0, 1, 2]), tensor([1, 1])),
    /crossEntropy: weights \[2\] must have shape \[3\]/,
  );
  // The f32-only kernels must refuse other dtypes rather than reinterpret their bits.
  const h = tensor([1, 2, 3, 4], [1, 4], "f16");
  const n = tensor([1, 2, 3, 4], [1, 4], "i32");
  assertThrowsBeforeDispatch(() => op.softmax(h), /softmax: f32 input only, got f16/);
  assertThrowsBeforeDispatch(() => op.logSoftmax(n), /logsoftmax: f32 input only, got i32/);
  assertThrowsBeforeDispatch(() => op.logsumexp(h), /logsumexp: f32 input only/);
  assertThrowsBeforeDispatch(
    () => op.layerNorm(h, tensor([1, 1, 1, 1]), tensor([0, 0, 0, 0])),
    /layerNorm: f32 tensors only, got f16, f32 and f32/,
  );
  assertThrowsBeforeDispatch(() => op.gatherLast(n, i([3], [1])), /gatherLast: f32 input only/);
  assertThrowsBeforeDispatch(() => op.dropout(h, 0.5, 1), /dropout: f32 input only/);
  assertThrowsBeforeDispatch(() => op.topk(n, 2), /topk: f32 input only/);
  assertThrowsBeforeDispatch(() => op.crossEntropy(h, i([3], [1])), /f32 input only, got f16/);
  assertThrowsBeforeDispatch(() => op.topk(tensor([1], []), 1), /topk: needs at least one axis/);
  assertThrowsBeforeDispatch(() => op.gatherLast(tensor([1], []), i([0], [])), /gatherLast: needs/);
  assertThrowsBeforeDispatch(() => op.softmax(tensor([1], [])), /softmax: needs at least one axis/);
  assertThrowsBeforeDispatch(() => op.logsumexp(tensor([], [2, 0])), /logsumexp: empty last axis/);
  for (const t of [x, h, n]) t.dispose();
});

Deno.test("softmax family: -Infinity entries (masking) get probability 0 and no gradient", async () => {
  const C = 7;
  const x = input([3, C], 12, -2, 2);
  for (const i of [0, 3, 4, 8, 20]) x.data[i] = -Infinity;
  await checkOp("softmax, masked", ([t]) => op.softmax(t), ([v]) => softmaxRef(v, C), [x]);
  await checkOp("logsumexp, masked", ([t]) => op.logsumexp(t), ([v]) => logsumexpRef(v, C), [x]);
  const t = tensor(Float32Array.from(x.data), [3, C]);
  const y = op.logSoftmax(t);
  const got = await y.read();
  const ref = logSoftmaxRef(x.data, C);
  ref.forEach((r, i) => {
    if (r === -Infinity) assert.equal(got[i], -Infinity, `logSoftmax element ${i}`);
    else assert.ok(Math.abs(got[i] - r) < 1e-5, `logSoftmax element ${i}: ${got[i]} vs ${r}`);
  });
  t.dispose();
  y.dispose();
});

Deno.test("softmax / logsumexp / layerNorm: more than 65535 rows (2-D grid), 1-D input", async () => {
  const rows = 70_000;
  const x = input([rows, 2], 13, -2, 2);
  await checkOp("softmax 70000 rows", ([t]) => op.softmax(t), ([v]) => softmaxRef(v, 2), [x], {
    noGrad: true,
  });
  await checkOp("logsumexp 70000 rows", ([t]) => op.logsumexp(t), ([v]) => logsumexpRef(v, 2), [
    x,
  ], { noGrad: true });
  await checkOp(
    "layerNorm 70000 rows",
    ([t, w, b]) => op.layerNorm(t, w, b),
    ([t, w, b]) => layerNormRef(t, w, b, 2),
    [x, input([2], 14), input([2], 15)],
    { noGrad: true, atol: 1e-4 },
  );
  await checkOp(
    "logsumexp [5] -> []",
    ([t]) => {
      const y = op.logsumexp(t);
      assert.deepEqual(y.shape, []);
      return y;
    },
    ([v]) => logsumexpRef(v, 5),
    [input([5], 16)],
  );
});

Deno.test("layerNorm: rows with a large common offset (two-pass variance)", async () => {
  const C = 64;
  const x = input([3, C], 17, -1, 1);
  x.data.forEach((v, i) => (x.data[i] = Math.fround(v + 1000)));
  await checkOp(
    "layerNorm offset 1000",
    ([t, w, b]) => op.layerNorm(t, w, b),
    ([t, w, b]) => layerNormRef(t, w, b, C),
    [x, input([C], 18), input([C], 19)],
    { noGrad: true, atol: 2e-3, rtol: 2e-3 },
  );
});
