/**
 * Layout ops: reshape, permute/transpose, slice, pad and concat against float64 references
 * on every axis of rank 0..4 shapes, gradients via `checkOp`, and errors before dispatch.
 */
import assert from "node:assert/strict";
import { initRuntime, runtime } from "../kernels/core/runtime.ts";
import { tensor, tidy } from "../kernels/core/tensor.ts";
import * as op from "../kernels/ops/mod.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { numel, randArray } from "./helpers/reference.ts";
import { concatRef, padRef, permuteRef, sliceRef } from "./helpers/cpu_ops.ts";

await initRuntime();

/** Assert `fn` throws matching `re` and records no dispatch. */
function assertThrowsBeforeDispatch(fn: () => unknown, re: RegExp): void {
  const before = runtime().dispatchCount;
  assert.throws(() => tidy(fn), re);
  assert.equal(runtime().dispatchCount, before, "an op dispatched before failing");
}

function input(shape: number[], seed: number) {
  return { data: randArray(numel(shape), seed), shape };
}

/** Every permutation of 0..n-1. */
function permutations(n: number): number[][] {
  if (n === 0) return [[]];
  return permutations(n - 1).flatMap((p) =>
    Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)])
  );
}

Deno.test("reshape: forward, -1, gradient; shares storage", async () => {
  const x = input([2, 3, 5], 1);
  for (const shape of [[30], [5, 6], [-1, 5], [2, -1, 1], [1, 30, 1, 1]]) {
    await checkOp(
      `reshape [${shape}]`,
      ([t]) => {
        const y = op.reshape(t, shape);
        const n = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
        assert.deepEqual(y.shape, shape.map((d) => (d === -1 ? 30 / n : d)));
        return y;
      },
      ([v]) => v.slice(),
      [x],
    );
  }
  await checkOp("reshape [] -> [1,1]", ([t]) => op.reshape(t, [1, 1]), ([v]) => v.slice(), [
    input([], 2),
  ]);
  const t = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  const before = runtime().dispatchCount;
  const r = op.reshape(t, [3, 2]);
  assert.equal(runtime().dispatchCount, before, "reshape copies nothing");
  assert.equal(r.buffer, t.buffer);
  r.dispose();
  t.dispose();
});

Deno.test("permute: every permutation of rank 0..3, some of rank 4, forward and gradient", async () => {
  const shapes = [[], [7], [3, 5], [2, 3, 5], [2, 1, 3, 4]];
  for (const [s, shape] of shapes.entries()) {
    const x = input(shape, 10 + s);
    const perms = shape.length < 4
      ? permutations(shape.length)
      : [[3, 2, 1, 0], [0, 2, 1, 3], [1, 3, 0, 2], [2, 0, 3, 1]];
    for (const perm of perms) {
      await checkOp(
        `permute [${shape}] (${perm})`,
        ([t]) => {
          const y = op.permute(t, perm);
          assert.deepEqual(y.shape, perm.map((p) => shape[p]));
          return y;
        },
        ([v]) => permuteRef(v, shape, perm),
        [x],
      );
    }
  }
});

Deno.test("permute/transpose: forward on larger awkward shapes", async () => {
  const shape = [7, 37, 13];
  const x = input(shape, 3);
  for (const perm of [[2, 1, 0], [1, 0, 2], [0, 2, 1], [2, 0, 1]]) {
    await checkOp(
      `permute [${shape}] (${perm})`,
      ([t]) => op.permute(t, perm),
      ([v]) => permuteRef(v, shape, perm),
      [x],
      { noGrad: true, atol: 0, rtol: 0 },
    );
  }
  await checkOp(
    "transpose default",
    ([t]) => op.transpose(t),
    ([v]) => permuteRef(v, shape, [0, 2, 1]),
    [x],
    { noGrad: true, atol: 0, rtol: 0 },
  );
});

Deno.test("transpose: default and explicit axes, gradient", async () => {
  const shape = [2, 3, 4];
  const x = input(shape, 4);
  const cases: [number, number, number[]][] = [[-2, -1, [0, 2, 1]], [0, 2, [2, 1, 0]], [
    1,
    0,
    [1, 0, 2],
  ], [-3, -2, [1, 0, 2]]];
  for (const [a, b, perm] of cases) {
    await checkOp(
      `transpose(${a}, ${b})`,
      ([t]) => op.transpose(t, a, b),
      ([v]) => permuteRef(v, shape, perm),
      [x],
    );
  }
});

Deno.test("slice: every axis, negative axis, full and partial ranges, gradient", async () => {
  const shapes = [[7], [3, 7], [3, 7, 5], [2, 1, 3, 4]];
  for (const [s, shape] of shapes.entries()) {
    const x = input(shape, 20 + s);
    for (let axis = 0; axis < shape.length; axis++) {
      const d = shape[axis];
      const ranges = [[0, d], [0, 1], [d - 1, d], [Math.floor(d / 3), Math.ceil((2 * d) / 3)]];
      for (const [start, end] of ranges) {
        for (const ax of [axis, axis - shape.length]) {
          await checkOp(
            `slice [${shape}] axis ${ax} [${start}, ${end})`,
            ([t]) => {
              const y = op.slice(t, ax, start, end);
              assert.deepEqual(y.shape, shape.map((v, k) => (k === axis ? end - start : v)));
              return y;
            },
            ([v]) => sliceRef(v, shape, axis, start, end),
            [x],
          );
        }
      }
    }
  }
  // An empty slice has shape 0 along the axis.
  const t = tensor(randArray(21, 1), [3, 7]);
  const e = op.slice(t, 1, 4, 4);
  assert.deepEqual(e.shape, [3, 0]);
  assert.equal((await e.read()).length, 0);
  t.dispose();
  e.dispose();
});

Deno.test("pad: every axis, zero and nonzero sides, gradient", async () => {
  const shapes = [[5], [3, 4], [2, 3, 5], [2, 1, 3, 2]];
  for (const [s, shape] of shapes.entries()) {
    const x = input(shape, 30 + s);
    for (let axis = 0; axis < shape.length; axis++) {
      for (const [before, after] of [[0, 0], [2, 0], [0, 3], [1, 2]]) {
        await checkOp(
          `pad [${shape}] axis ${axis} (${before}, ${after})`,
          ([t]) => op.pad(t, axis, before, after),
          ([v]) => padRef(v, shape, axis, before, after),
          [x],
        );
      }
    }
  }
  const shape = [3, 4];
  await checkOp(
    "pad negative axis",
    ([t]) => op.pad(t, -1, 1, 1),
    ([v]) => padRef(v, shape, 1, 1, 1),
    [input(shape, 40)],
  );
});

Deno.test("concat: several inputs along each axis, unequal sizes, gradient to all", async () => {
  const base = [3, 2, 4];
  for (let axis = 0; axis < base.length; axis++) {
    const sizes = [1, base[axis], 3];
    const shapes = sizes.map((n) => base.map((d, k) => (k === axis ? n : d)));
    const inputs = shapes.map((s, i) => input(s, 50 + 10 * axis + i));
    for (const ax of [axis, axis - base.length]) {
      await checkOp(
        `concat axis ${ax}`,
        (ts) => op.concat(ts, ax),
        (vs) => concatRef(vs, shapes, axis),
        inputs,
      );
    }
  }
  await checkOp("concat single input", (ts) => op.concat(ts, 0), ([v]) => v.slice(), [
    input([5], 5),
  ]);
  const four = [[2], [7], [1], [13]].map((s, i) => input(s, 60 + i));
  await checkOp(
    "concat 4 vectors",
    (ts) => op.concat(ts, 0),
    (vs) => concatRef(vs, four.map((x) => x.shape), 0),
    four,
  );
  // A zero-length part is skipped.
  const empty = [[2, 3], [2, 0], [2, 1]];
  const parts = empty.map((s, i) => input(s, 70 + i));
  await checkOp(
    "concat with an empty part",
    (ts) => op.concat(ts, 1),
    (vs) => concatRef(vs, empty, 1),
    parts,
  );
  // Larger, not a multiple of the workgroup size.
  const big = [[37, 13], [37, 7], [37, 1]];
  await checkOp(
    "concat [37, *]",
    (ts) => op.concat(ts, 1),
    (vs) => concatRef(vs, big, 1),
    big.map((s, i) => input(s, 80 + i)),
    { noGrad: true },
  );
});

Deno.test("errors before dispatch: reshape, permute, transpose, slice, pad, concat", () => {
  const x = tensor(randArray(30, 1), [2, 3, 5]);
  const y = tensor(randArray(12, 2), [2, 3, 2]);
  assertThrowsBeforeDispatch(() => op.reshape(x, [4, 8]), /\[2,3,5\].*\[4,8\]/);
  assertThrowsBeforeDispatch(() => op.reshape(x, [-1, 7]), /reshape: cannot reshape \[2,3,5\]/);
  assertThrowsBeforeDispatch(() => op.reshape(x, [-1, -1]), /reshape: at most one -1/);
  assertThrowsBeforeDispatch(() => op.reshape(x, [-2, -15]), /reshape: .*\[-2,-15\]/);
  assertThrowsBeforeDispatch(() => op.permute(x, [0, 0, 1]), /permute: \[0,0,1\] is not a perm/);
  assertThrowsBeforeDispatch(() => op.permute(x, [1, 0]), /permute: \[1,0\] is not a perm/);
  assertThrowsBeforeDispatch(() => op.permute(x, [0, 1, 3]), /permute: \[0,1,3\] is not a perm/);
  assertThrowsBeforeDispatch(() => op.transpose(x, 0, 3), /transpose: axis 3 out of range/);
  assertThrowsBeforeDispatch(() => op.slice(x, 2, 0, 6), /slice: \[0, 6\) out of range/);
  assertThrowsBeforeDispatch(() => op.slice(x, 1, 2, 1), /slice: \[2, 1\) out of range/);
  assertThrowsBeforeDispatch(() => op.slice(x, 0, -1, 1), /slice: \[-1, 1\) out of range/);
  assertThrowsBeforeDispatch(() => op.slice(x, 0, 0.5, 1), /slice: \[0.5, 1\) out of range/);
  assertThrowsBeforeDispatch(() => op.slice(x, 3, 0, 1), /slice: axis 3 out of range/);
  assertThrowsBeforeDispatch(() => op.pad(x, 3, 1, 1), /pad: axis 3 out of range/);
  assertThrowsBeforeDispatch(() => op.pad(x, 0, -1, 1), /pad: .*-1.*must be/);
  assertThrowsBeforeDispatch(() => op.concat([], 0), /concat: no tensors/);
  assertThrowsBeforeDispatch(
    () => op.concat([x, y], 0),
    /concat: .*\[2,3,5\], f32\[2,3,2\] differ/,
  );
  assertThrowsBeforeDispatch(() => op.concat([x, x], 3), /concat: axis 3 out of range/);
  assertThrowsBeforeDispatch(() => op.concat([x, x], -4), /concat: axis -4 out of range/);
  const v = tensor([1, 2], [2]);
  assertThrowsBeforeDispatch(() => op.concat([v, x], 0), /concat: .*differ/);
  const i = tensor([1, 2], [2], "i32");
  assertThrowsBeforeDispatch(
    () => op.concat([v, i], 0),
    /concat: shapes f32\[2\], i32\[2\] differ/,
  );
  for (const t of [x, y, v, i]) t.dispose();
});

Deno.test("layout ops copy i32 and f16 tensors exactly (no round trip through f32)", async () => {
  const shape = [3, 4, 5];
  // i32 values beyond f32's exact integer range would change through an f32 round trip.
  const ints = Array.from({ length: 60 }, (_, i) => (i % 2 ? -1 : 1) * (16777217 + 2 * i));
  const dtypes = runtime().ctx.hasF16 ? (["i32", "f16"] as const) : (["i32"] as const);
  for (const dtype of dtypes) {
    const data = dtype === "i32" ? ints : Array.from(randArray(60, 9, -8, 8), Math.f16round);
    const x = tensor(data, shape, dtype);
    const outs = tidy(() => ({
      permute: op.permute(x, [2, 0, 1]),
      slice: op.slice(x, 1, 1, 3),
      pad: op.pad(x, 2, 1, 2),
      concat: op.concat([x, op.slice(x, 0, 0, 1)], 0),
      expand: op.expand(op.slice(x, 0, 0, 1), [2, 4, 5]),
    }));
    const expected = {
      permute: permuteRef(data, shape, [2, 0, 1]),
      slice: sliceRef(data, shape, 1, 1, 3),
      pad: padRef(data, shape, 2, 1, 2),
      concat: concatRef([data, sliceRef(data, shape, 0, 0, 1)], [shape, [1, 4, 5]], 0),
      expand: concatRef([sliceRef(data, shape, 0, 0, 1), sliceRef(data, shape, 0, 0, 1)], [
        [1, 4, 5],
        [1, 4, 5],
      ], 0),
    };
    for (const [name, t] of Object.entries(outs)) {
      assert.equal(t.dtype, dtype, `${name} keeps ${dtype}`);
      const got = await t.read();
      assert.deepEqual([...got], [...expected[name as keyof typeof expected]], `${name} ${dtype}`);
      t.dispose();
    }
    x.dispose();
  }
});
