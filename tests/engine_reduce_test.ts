/**
 * Reductions: sum/mean/max/min/argmax along every axis of rank 1..4 shapes, on both kernel
 * paths (workgroup tree: innermost axis longer than 32; one thread per output otherwise),
 * gradients via `checkOp`, argmax tie-breaking, > 65535 rows, and errors before dispatch.
 */
import assert from "node:assert/strict";
import { backward } from "../kernels/core/autograd.ts";
import { initRuntime, runtime } from "../kernels/core/runtime.ts";
import { tensor, tidy } from "../kernels/core/tensor.ts";
import * as op from "../kernels/ops/mod.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { assertClose, numel, randArray } from "./helpers/reference.ts";
import { reducedShape, reduceRef } from "./helpers/cpu_ops.ts";

await initRuntime();

/** Assert `fn` throws matching `re` and records no dispatch. */
function assertThrowsBeforeDispatch(fn: () => unknown, re: RegExp): void {
  const before = runtime().dispatchCount;
  assert.throws(() => tidy(fn), re);
  assert.equal(runtime().dispatchCount, before, "an op dispatched before failing");
}

/** Shapes for gradient checks: small, with size-1 dims, primes, and a tree-path last axis. */
const GRAD_SHAPES = [[7], [3, 13], [2, 1, 5], [2, 3, 1, 4], [3, 37], [2, 300]];

for (const kind of ["sum", "mean", "max"] as const) {
  Deno.test(`${kind}: every axis, with and without keepDims, forward and gradient`, async () => {
    const fn = { sum: op.sum, mean: op.mean, max: op.max }[kind];
    for (const [s, shape] of GRAD_SHAPES.entries()) {
      // Distinct values, so max has a unique winner and finite differences are clean.
      const x = { data: randArray(numel(shape), 40 + s, -2, 2), shape };
      for (let axis = -1; axis < shape.length; axis++) {
        for (const keepDims of [false, true]) {
          await checkOp(
            `${kind}([${shape}], axis ${axis}, keep ${keepDims})`,
            ([t]) => {
              const y = fn(t, axis, keepDims);
              assert.deepEqual(y.shape, reducedShape(shape, axis, keepDims));
              return y;
            },
            ([v]) => reduceRef(v, shape, axis, kind),
            [x],
            { rtol: 2e-4, atol: 2e-5 },
          );
        }
      }
    }
  });
}

Deno.test("sum/mean/max/min forward on larger awkward shapes (both kernel paths)", async () => {
  for (const shape of [[1, 1], [257], [5, 513], [13, 7, 37], [3, 1, 2, 33], [1000, 3]]) {
    const data = randArray(numel(shape), numel(shape), -3, 3);
    const x = tensor(Float32Array.from(data), shape);
    for (let axis = 0; axis < shape.length; axis++) {
      const outs = (["sum", "mean", "max", "min"] as const).map((k) => op[k](x, axis));
      const vals = await Promise.all(outs.map((t) => t.read()));
      (["sum", "mean", "max", "min"] as const).forEach((k, i) => {
        assertClose(vals[i], reduceRef(data, shape, axis, k), {
          atol: 1e-4,
          rtol: 1e-4,
          what: `${k}([${shape}], ${axis})`,
        });
      });
      outs.forEach((t) => t.dispose());
    }
    x.dispose();
  }
});

Deno.test("sumAll, meanAll: rank 0..4, forward and gradient", async () => {
  for (const [i, shape] of [[], [1], [7], [3, 13], [2, 1, 5], [2, 3, 1, 4]].entries()) {
    const x = { data: randArray(numel(shape), 70 + i), shape };
    const sum = ([v]: Float64Array[]) => Float64Array.of(v.reduce((a, b) => a + b, 0));
    await checkOp(`sumAll [${shape}]`, ([t]) => op.sumAll(t), sum, [x]);
    await checkOp(
      `meanAll [${shape}]`,
      ([t]) => op.meanAll(t),
      ([v]) => sum([v]).map((s) => s / v.length),
      [x],
    );
  }
});

Deno.test("max gradient goes to every tied maximum (documented rule)", async () => {
  const x = tensor([1, 3, 3, -1, 2, 0], [2, 3]);
  x.requiresGrad = true;
  tidy(() => backward(op.sumAll(op.max(x, 1))));
  assert.deepEqual([...await x.grad!.read()], [0, 1, 1, 0, 1, 0]);
  x.grad!.dispose();
  x.dispose();
});

Deno.test("argmax: ties give the first index, on both kernel paths and every axis", async () => {
  // Small integers: many ties, including ties that the tree combines across threads.
  for (const shape of [[7], [4, 5], [3, 33], [2, 300], [2, 3, 40], [6, 1, 3], [5, 600]]) {
    const data = randArray(numel(shape), numel(shape), -3, 3).map((v) => Math.round(v));
    const x = tensor(Float32Array.from(data), shape);
    for (let axis = 0; axis < shape.length; axis++) {
      for (const keepDims of [false, true]) {
        const a = op.argmax(x, axis, keepDims);
        assert.equal(a.dtype, "i32");
        assert.deepEqual(a.shape, reducedShape(shape, axis, keepDims));
        const got = await a.read();
        assert.ok(got instanceof Int32Array);
        assert.deepEqual(
          [...got],
          [...reduceRef(data, shape, axis, "argmax")],
          `[${shape}] ${axis}`,
        );
        a.dispose();
      }
    }
    x.dispose();
  }
  // A constant row, an all-negative row, the max at the very end: tree path (R = 300).
  const rows = [new Array(300).fill(-5), new Array(300).fill(0).map((_, i) => -1 - i / 1000), [
    ...new Array(299).fill(-2),
    7,
  ]];
  const t = tensor(rows.flat(), [3, 300]);
  const a = op.argmax(t, 1);
  assert.deepEqual([...await a.read()], [0, 0, 299]);
  const b = op.argmax(op.transpose(t), 0); // per-thread path (axis 0) on the same rows
  assert.deepEqual([...await b.read()], [0, 0, 299]);
  for (const u of [t, a, b]) u.dispose();
});

Deno.test("reductions with more than 65535 rows (2-D grid)", async () => {
  const rows = 70001;
  const R = 33; // > 32: the workgroup-tree path, one workgroup per row
  const data = randArray(rows * R, 5, -1, 1);
  const x = tensor(Float32Array.from(data), [rows, R]);
  const [s, m, a] = [op.sum(x, 1), op.max(x, 1), op.argmax(x, 1)];
  const [sv, mv, av] = await Promise.all([s.read(), m.read(), a.read()]);
  for (let r = 0; r < rows; r += r < rows - 300 ? 97 : 1) {
    let sum = 0;
    let best = -Infinity;
    let arg = 0;
    for (let k = 0; k < R; k++) {
      const v = data[r * R + k];
      sum += v;
      if (v > best) [best, arg] = [v, k];
    }
    if (Math.abs(sv[r] - sum) > 1e-4) assert.fail(`sum row ${r}: ${sv[r]} != ${sum}`);
    if (mv[r] !== best) assert.fail(`max row ${r}: ${mv[r]} != ${best}`);
    if (av[r] !== arg) assert.fail(`argmax row ${r}: ${av[r]} != ${arg}`);
  }
  for (const t of [x, s, m, a]) t.dispose();
});

Deno.test("errors before dispatch: bad axis, empty axis", () => {
  const x = tensor(randArray(6, 1), [2, 3]);
  assertThrowsBeforeDispatch(() => op.sum(x, 2), /sum: axis 2 out of range for rank 2/);
  assertThrowsBeforeDispatch(() => op.mean(x, -3), /mean: axis -3 out of range for rank 2/);
  assertThrowsBeforeDispatch(() => op.max(x, 1.5), /max: axis 1.5 out of range/);
  assertThrowsBeforeDispatch(() => op.argmax(x, 5), /argmax: axis 5 out of range/);
  assertThrowsBeforeDispatch(
    () => op.min(tensor([3], []), 0),
    /min: axis 0 out of range for rank 0/,
  );
  const used = runtime().pool.stats().bytesInUse;
  assertThrowsBeforeDispatch(
    () => op.sum(tensor([], [0, 3]), 0),
    /sum: cannot reduce an empty axis/,
  );
  assert.equal(runtime().pool.stats().bytesInUse, used, "a failed reduction leaked its output");
  x.dispose();
});

Deno.test("reductions of f16 and i32 inputs give f32 (argmax i32)", async () => {
  const shape = [3, 40];
  const data = Array.from(randArray(120, 3, -4, 4), Math.f16round);
  const dtypes = runtime().ctx.hasF16 ? (["i32", "f16"] as const) : (["i32"] as const);
  for (const dtype of dtypes) {
    const vals = dtype === "i32" ? data.map(Math.round) : data;
    const x = tensor(vals, shape, dtype);
    for (const axis of [0, 1]) {
      for (const kind of ["sum", "mean", "max", "min", "argmax"] as const) {
        const y = op[kind](x, axis);
        assert.equal(y.dtype, kind === "argmax" ? "i32" : "f32");
        assertClose(await y.read(), reduceRef(vals, shape, axis, kind), {
          what: `${kind} ${dtype} axis ${axis}`,
        });
        y.dispose();
      }
    }
    x.dispose();
  }
});

Deno.test("max/min of rows holding infinities, on both kernel paths", async () => {
  for (const len of [40, 5]) {
    const rows = [
      new Array(len).fill(-Infinity),
      [...new Array(len - 1).fill(-Infinity), -3],
      new Array(len).fill(Infinity),
    ];
    const x = tensor(rows.flat(), [3, len]);
    const [mx, mn, am] = [op.max(x, 1), op.min(x, 1), op.argmax(x, 1)];
    assert.deepEqual([...await mx.read()], [-Infinity, -3, Infinity], `max, row length ${len}`);
    assert.deepEqual([...await mn.read()], [-Infinity, -Infinity, Infinity], `min, length ${len}`);
    assert.deepEqual([...await am.read()], [0, len - 1, 0], `argmax, row length ${len}`);
    for (const t of [x, mx, mn, am]) t.dispose();
  }
});
