/**
 * Elementwise ops: forward against float64 references on awkward shapes and every
 * broadcasting position, backward via `checkOp` (float64 finite differences), the
 * comparison/cast ops, one grid beyond 65535 workgroups, and errors raised before dispatch.
 */
import assert from "node:assert/strict";
import { backward } from "../kernels/core/autograd.ts";
import { initRuntime, runtime } from "../kernels/core/runtime.ts";
import { type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import * as op from "../kernels/ops/mod.ts";
import { checkGradFiniteDiff, checkOp } from "./helpers/gradcheck.ts";
import { assertClose, numel, randArray } from "./helpers/reference.ts";
import { BINARY_REF, broadcastMap, UNARY_REF } from "./helpers/cpu_ops.ts";

await initRuntime();

/** Assert `fn` throws matching `re` and records no dispatch. */
function assertThrowsBeforeDispatch(fn: () => unknown, re: RegExp): void {
  const before = runtime().dispatchCount;
  assert.throws(() => tidy(fn), re);
  assert.equal(runtime().dispatchCount, before, "an op dispatched before failing");
}

/** Random input of `shape`; `away` pushes values at least that far from 0. */
function input(shape: number[], seed: number, lo = -1, hi = 1, away = 0) {
  const data = randArray(numel(shape), seed, lo, hi).map((v) =>
    Math.abs(v) < away ? Math.fround(v < 0 ? v - away : v + away) : v
  );
  return { data, shape };
}

/** Input ranges that keep each unary op away from non-differentiable or undefined points. */
const UNARY_DOMAIN: Record<string, [number, number, number]> = {
  neg: [-2, 2, 0],
  exp: [-2, 2, 0],
  log: [0.2, 3, 0],
  sqrt: [0.2, 3, 0],
  rsqrt: [0.2, 3, 0],
  tanh: [-3, 3, 0],
  sigmoid: [-4, 4, 0],
  relu: [-2, 2, 0.05],
  abs: [-2, 2, 0.05],
  gelu: [-3, 3, 0],
  gelu_erf: [-3, 3, 0],
  silu: [-4, 4, 0],
  mish: [-4, 4, 0],
};

for (const [name, [lo, hi, away]] of Object.entries(UNARY_DOMAIN)) {
  Deno.test(`unary ${name}: forward and gradient on rank 0..4`, async () => {
    const f = UNARY_REF[name];
    const gpu = ([x]: Tensor[]) => op.unary(name as op.UnaryOp, x);
    for (const [i, shape] of [[], [7], [3, 13], [2, 1, 5], [2, 1, 3, 2]].entries()) {
      await checkOp(name, gpu, ([x]) => x.map(f), [input(shape, 10 + i, lo, hi, away)], {
        gradAtol: 2e-4,
      });
    }
  });
}

Deno.test("unary: forward is finite and stable at large |x|, non-multiple-of-256 size", async () => {
  const n = 515;
  const data = new Float64Array(n).map((_, i) => Math.fround((i - 257) * 0.4));
  for (
    const name of ["tanh", "sigmoid", "gelu", "gelu_erf", "silu", "mish", "relu", "abs", "neg"]
  ) {
    await checkOp(name, ([x]) => op.unary(name as op.UnaryOp, x), ([x]) => x.map(UNARY_REF[name]), [
      { data, shape: [5, 103] },
    ], { noGrad: true, rtol: 2e-4, atol: 1e-5 });
  }
});

/** Shape pairs covering every broadcasting position. */
const BROADCAST_CASES: [number[], number[]][] = [
  [[], []], // rank 0
  [[7], []], // scalar operand
  [[], [13]],
  [[1], [37]],
  [[2, 3, 5], [5]], // leading
  [[4, 1, 5], [4, 3, 5]], // middle
  [[3, 5], [3, 1]], // trailing
  [[1, 3, 1], [2, 1, 7]], // both operands
  [[2, 1, 3, 1], [1, 5, 1, 4]], // rank 4, both
  [[1, 1], [1, 1]],
];

for (const name of ["add", "sub", "mul", "div"]) {
  Deno.test(`binary ${name}: broadcasting forward and gradient`, async () => {
    const f = BINARY_REF[name];
    for (const [i, [sa, sb]] of BROADCAST_CASES.entries()) {
      const a = input(sa, 100 + i);
      // Divisors stay away from 0.
      const b = name === "div" ? input(sb, 200 + i, 0.5, 2) : input(sb, 200 + i);
      await checkOp(
        `${name} [${sa}] [${sb}]`,
        ([x, y]) => op.binary(name as op.BinaryOp, x, y),
        ([x, y]) => broadcastMap([{ data: x, shape: sa }, { data: y, shape: sb }], f),
        [a, b],
      );
    }
  });
}

Deno.test("binary: forward on sizes around the workgroup size", async () => {
  for (const [sa, sb] of [[[255], [255]], [[257], [1]], [[3, 257], [257]], [[513, 1], [1, 3]]]) {
    const a = input(sa, 1);
    const b = input(sb, 2, 0.5, 2);
    for (const name of ["add", "sub", "mul", "div"]) {
      await checkOp(
        name,
        ([x, y]) => op.binary(name as op.BinaryOp, x, y),
        ([x, y]) =>
          broadcastMap([{ data: x, shape: sa }, { data: y, shape: sb }], BINARY_REF[name]),
        [a, b],
        { noGrad: true },
      );
    }
  }
});

Deno.test("affine, addScalar, mulScalar: forward and gradient", async () => {
  const x = input([3, 7], 5);
  await checkOp(
    "affine",
    ([t]) => op.affine(t, -1.5, 0.25),
    ([t]) => t.map((v) => v * -1.5 + 0.25),
    [
      x,
    ],
  );
  await checkOp("addScalar", ([t]) => op.addScalar(t, 3), ([t]) => t.map((v) => v + 3), [x]);
  await checkOp("mulScalar", ([t]) => op.mulScalar(t, 0.1), ([t]) => t.map((v) => v * 0.1), [x]);
  await checkOp("affine rank 0", ([t]) => op.affine(t, 2, -1), ([t]) => t.map((v) => 2 * v - 1), [
    input([], 6),
  ]);
});

Deno.test("powScalar: integer exponents on signed inputs, real exponents on positive", async () => {
  const signed = input([2, 7], 7, -2, 2, 0.2);
  for (const p of [0, 1, 2, 3, 4, 5, 6, -1, -2, -3]) {
    await checkOp(
      `pow ${p}`,
      ([t]) => op.powScalar(t, p),
      ([t]) => t.map((v) => v ** p),
      [signed],
      {
        rtol: 2e-4,
        gradRtol: 2e-3,
      },
    );
  }
  const positive = input([2, 7], 8, 0.3, 2);
  for (const p of [0.5, 1.5, -0.5, 2.5]) {
    await checkOp(`pow ${p}`, ([t]) => op.powScalar(t, p), ([t]) => t.map((v) => v ** p), [
      positive,
    ], { rtol: 2e-4, gradRtol: 2e-3 });
  }
});

Deno.test("where: broadcast mask (f32 and i32), gradient to both branches", async () => {
  const cases: [number[], number[], number[]][] = [
    [[3, 1], [3, 4], [4]],
    [[4], [3, 4], [3, 1]],
    [[], [5], [5]],
    [[2, 1, 3], [1, 4, 3], [2, 4, 1]],
  ];
  for (const [i, [sc, sa, sb]] of cases.entries()) {
    // Mask values: 0 or a nonzero that is not 1.
    const mask = randArray(numel(sc), 300 + i).map((v) => (v > 0 ? -2 : 0));
    const ref = ([c, a, b]: Float64Array[]) =>
      broadcastMap(
        [{ data: c, shape: sc }, { data: a, shape: sa }, { data: b, shape: sb }],
        (m, x, y) => (m !== 0 ? x : y),
      );
    const [a, b] = [input(sa, 400 + i), input(sb, 500 + i)];
    // An f32 mask: forward only (finite differences of a 0/1 mask are meaningless).
    await checkOp(`where [${sc}] f32 mask`, ([c, x, y]) => op.where(c, x, y), ref, [
      { data: mask, shape: sc },
      a,
      b,
    ], { noGrad: true });
    await checkOp(`where [${sc}] i32 mask`, ([c, x, y]) => op.where(c, x, y), ref, [
      { data: mask, shape: sc, int: true },
      a,
      b,
    ]);
  }
});

Deno.test("expand: forward and gradient (sums back over every expanded axis)", async () => {
  const cases: [number[], number[]][] = [
    [[], [4]],
    [[1], [7]],
    [[3, 1], [2, 3, 5]],
    [[1, 4], [3, 4]],
    [[2, 1, 3, 1], [2, 5, 3, 2]],
    [[5], [5]],
  ];
  for (const [i, [from, to]] of cases.entries()) {
    await checkOp(
      `expand [${from}] -> [${to}]`,
      ([x]) => op.expand(x, to),
      ([x]) => broadcastMap([{ data: x, shape: from }], (v) => v, to),
      [input(from, 600 + i)],
    );
  }
});

Deno.test("compare: all six ops with broadcasting and ties", async () => {
  const refs: Record<string, (a: number, b: number) => boolean> = {
    gt: (a, b) => a > b,
    ge: (a, b) => a >= b,
    lt: (a, b) => a < b,
    le: (a, b) => a <= b,
    eq: (a, b) => a === b,
    ne: (a, b) => a !== b,
  };
  // Small integers so ties are frequent.
  const a = { data: randArray(21, 1).map((v) => Math.round(v * 2)), shape: [3, 7] };
  const b = { data: randArray(7, 2).map((v) => Math.round(v * 2)), shape: [7] };
  for (const [name, f] of Object.entries(refs)) {
    await checkOp(
      name,
      ([x, y]) => op.compare(name as "gt", x, y),
      ([x, y]) =>
        broadcastMap(
          [{ data: x, shape: a.shape }, { data: y, shape: b.shape }],
          (u, v) => f(u, v) ? 1 : 0,
        ),
      [a, b],
      { noGrad: true, atol: 0, rtol: 0 },
    );
  }
  // Integer operands compare exactly, also beyond f32's 2^24.
  for (const dtype of ["i32", "u32"] as const) {
    const x = tensor([16777217, 16777216, 3000000001 % 2147483647, 7], [4], dtype);
    const y = tensor([16777216, 16777217, 3000000001 % 2147483647, 8], [4], dtype);
    const [eq, gt] = [op.compare("eq", x, y), op.compare("gt", x, y)];
    assert.deepEqual([...await eq.read()], [0, 0, 1, 0], `eq ${dtype}`);
    assert.deepEqual([...await gt.read()], [1, 0, 0, 0], `gt ${dtype}`);
    for (const t of [x, y, eq, gt]) t.dispose();
  }
});

Deno.test("cast: f32 -> i32 truncates, i32 -> f32, u32, f16 round trip", async () => {
  const vals = [-3.7, -1.2, -0.5, 0, 0.5, 1.9, 2.5, 1000.25, -70000.75];
  const x = tensor(vals, [3, 3]);
  const i = op.cast(x, "i32");
  const back = op.cast(i, "f32");
  const viaI32 = op.cast(tensor([1, -7, 123456789], [3], "i32"), "f32");
  const u = op.cast(tensor([0, 3.9, 4e9], [3]), "u32");
  const [ri, rb, rv, ru] = await Promise.all([i.read(), back.read(), viaI32.read(), u.read()]);
  assert.ok(ri instanceof Int32Array);
  assert.deepEqual([...ri], vals.map((v) => Math.trunc(v) | 0));
  assert.deepEqual([...rb], vals.map((v) => Math.trunc(v) | 0));
  assert.deepEqual([...rv], [1, -7, Math.fround(123456789)]);
  assert.ok(ru instanceof Uint32Array);
  assert.deepEqual([...ru], [0, 3, 4e9]);
  for (const t of [x, i, back, viaI32, u]) t.dispose();
  // Integers beyond 2^24 convert between i32 and u32 exactly.
  const big = tensor([16777217, 2147483647, 5], [3], "i32");
  const bu = op.cast(big, "u32");
  const bi = op.cast(bu, "i32");
  assert.deepEqual([...await bu.read()], [16777217, 2147483647, 5]);
  assert.deepEqual([...await bi.read()], [16777217, 2147483647, 5]);
  for (const t of [big, bu, bi]) t.dispose();

  if (!runtime().ctx.hasF16) return; // shader-f16 is optional
  const data = randArray(37, 9, -70, 70);
  const h = op.cast(tensor(Float32Array.from(data), [37]), "f16");
  assert.equal(h.dtype, "f16");
  const hv = await h.read();
  assert.ok(hv instanceof Float16Array);
  const f16 = Array.from(data, (v) => Math.f16round(v));
  assert.deepEqual([...hv], f16);
  const f = op.cast(h, "f32");
  const e = op.exp(op.mulScalar(h, 0.01)); // ops on f16 inputs compute in f32
  assertClose(await f.read(), f16, { atol: 0, rtol: 0, what: "f16 -> f32" });
  assert.equal(e.dtype, "f32");
  assertClose(await e.read(), f16.map((v) => Math.exp(v * 0.01)), { what: "exp(f16 * 0.01)" });
  const hu = op.unary("tanh", h);
  assert.equal(hu.dtype, "f16", "unary ops keep f16");
  assertClose(await hu.read(), f16.map((v) => Math.tanh(v)), { atol: 1e-3, rtol: 1e-3 });
  for (const t of [h, f, e, hu]) t.dispose();

  // Gradients pass through casts as f32, unchanged.
  const p = tensor([1.5, -2.25, 3]);
  p.requiresGrad = true;
  tidy(() => {
    const y = op.cast(op.cast(p, "f16"), "f32");
    backward(op.sumAll(op.mul(y, tensor([2, -1, 0.5]))));
  });
  assert.equal(p.grad!.dtype, "f32");
  assert.deepEqual([...await p.grad!.read()], [2, -1, 0.5]);
  p.grad!.dispose();
  p.dispose();
});

Deno.test("composite chain: gradients match f32 finite differences of the GPU function", async () => {
  await checkGradFiniteDiff("tanh", ([a]) => op.tanh(a), [input([5], 3)]);
  await checkGradFiniteDiff(
    "sigmoid(a * b + 1) / (1 + b^2), b broadcast",
    ([a, b]) =>
      op.div(op.sigmoid(op.addScalar(op.mul(a, b), 1)), op.addScalar(op.powScalar(b, 2), 1)),
    [input([2, 3], 4), input([3], 5)],
  );
});

Deno.test("full, zeros, ones", async () => {
  const [a, b, c, d] = [
    op.full([2, 3], -2.5),
    op.zeros([7]),
    op.ones([]),
    op.full([5], 7, "i32"),
  ];
  assert.deepEqual([...await a.read()], new Array(6).fill(-2.5));
  assert.deepEqual([...await b.read()], new Array(7).fill(0));
  assert.deepEqual(c.shape, []);
  assert.equal(await c.item(), 1);
  assert.deepEqual([...await d.read()], [7, 7, 7, 7, 7]);
  for (const t of [a, b, c, d]) t.dispose();
});

Deno.test("grid beyond 65535 workgroups: add on 65536*256+5 elements", async () => {
  const n = 65536 * 256 + 5;
  const a = new Float32Array(n);
  const b = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a[i] = i % 9973;
    b[i] = (i * 7) % 101;
  }
  const [ta, tb] = [tensor(a), tensor(b)];
  const tc = op.add(ta, tb);
  const out = await tc.read();
  for (let i = 0; i < n; i += i < n - 2000 ? 997 : 1) {
    if (out[i] !== a[i] + b[i]) assert.fail(`element ${i}: ${out[i]} != ${a[i] + b[i]}`);
  }
  for (const t of [ta, tb, tc]) t.dispose();
});

Deno.test("errors before dispatch: broadcasting mismatch, bad expand", () => {
  const a = tensor(randArray(6, 1), [2, 3]);
  const b = tensor(randArray(4, 2), [4]);
  assertThrowsBeforeDispatch(() => op.add(a, b), /add: shapes \[2,3\] and \[4\] do not broadcast/);
  assertThrowsBeforeDispatch(
    () => op.mul(a, tensor([1, 2, 3, 4, 5, 6], [3, 1, 2])),
    /mul: .*do not broadcast/,
  );
  assertThrowsBeforeDispatch(() => op.where(b, a, a), /where: .*do not broadcast/);
  assertThrowsBeforeDispatch(() => op.expand(a, [2, 4]), /expand: .*\[2,3\].*\[2,4\]/);
  assertThrowsBeforeDispatch(() => op.expand(a, [3]), /expand: .*\[2,3\].*\[3\]/);
  a.dispose();
  b.dispose();
});
