/**
 * The deterministic scatter-add backward of `indexSelect` / `embedding` (kernels/ops/gather.ts
 * `scatterAddRows`; its kernels in kernels/ops/_scatter_rows.ts and _row_sort.ts):
 * - the GPU sort equals a CPU stable sort by (clamped row, position): one and two radix
 *   passes, tile edges (255/256/257 positions), one row, skewed rows, i32 and u32 indices;
 * - the scatter-add (direct and sorted kernels, and the public op that picks one) equals, bit
 *   for bit, a sequential f32 sum of each row's contributions in position order (values
 *   spanning 1e-4..1e4, so another order gives other bits);
 * - gradients against float64 finite differences (tests/helpers/gradcheck.ts) on awkward
 *   shapes with heavy duplication;
 * - the same backward run 5 times gives identical bits (the float-atomic kernel it replaces
 *   did not: its additions landed in thread-arrival order);
 * - under capture and replay (kernels/core/capture.ts) the sorted kernel gives the same bits.
 */
import assert from "node:assert/strict";
import { backward } from "../kernels/core/autograd.ts";
import { capture } from "../kernels/core/capture.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import * as op from "../kernels/ops/mod.ts";
import { radixPlan, sortRowsStable } from "../kernels/ops/_row_sort.ts";
import { scatterRowsDirect, scatterRowsSorted } from "../kernels/ops/_scatter_rows.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { indexSelectRef } from "./helpers/cpu_nn.ts";
import { numel, randArray, rng } from "./helpers/reference.ts";

await initRuntime();

/** N row indices in [lo, hi) (lo < 0 or hi > V exercise clamping), `hot` of them on `hotRow`. */
function rows(N: number, lo: number, hi: number, seed: number, hot = 0, hotRow = 0): number[] {
  const r = rng(seed);
  return Array.from({ length: N }, () => r() < hot ? hotRow : lo + Math.floor(r() * (hi - lo)));
}

/** Values whose magnitudes span 1e-4..1e4 with both signs: f32 sums depend on their order. */
function wide(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() - 0.5) * 10 ** (8 * r() - 4));
}

const clampRow = (v: number, V: number) => Math.min(Math.max(v, 0), V - 1);

/** CPU: positions ordered by (clamped row, position). */
function stableOrder(idx: number[], V: number): number[] {
  const pos = idx.map((_, n) => n);
  return pos.sort((a, b) => clampRow(idx[a], V) - clampRow(idx[b], V) || a - b);
}

/** CPU: out[row] = ((0 + g[n1]) + g[n2]) + ... in f32, positions ascending. */
function sequentialScatter(g: Float32Array, idx: number[], V: number, D: number): Float32Array {
  const out = new Float32Array(V * D);
  idx.forEach((v, n) => {
    const row = clampRow(v, V);
    for (let d = 0; d < D; d++) {
      out[row * D + d] = Math.fround(out[row * D + d] + g[n * D + d]);
    }
  });
  return out;
}

/** Uploaded without the index range check (as a GPU-computed index tensor would be). */
function gpuIndices(idx: number[], dtype: "i32" | "u32" = "i32"): Tensor {
  const t = tensor(
    dtype === "i32" ? Int32Array.from(idx) : Uint32Array.from(idx),
    [idx.length],
    dtype,
  );
  t.intRange = null;
  return t;
}

Deno.test("radixPlan: one pass up to 2048 rows, two beyond", () => {
  assert.deepEqual(radixPlan(1), { passes: 1, bits: 1 });
  assert.deepEqual(radixPlan(5), { passes: 1, bits: 3 });
  assert.deepEqual(radixPlan(2048), { passes: 1, bits: 11 });
  assert.deepEqual(radixPlan(2049), { passes: 2, bits: 6 });
  assert.deepEqual(radixPlan(1 << 22), { passes: 2, bits: 11 });
  assert.deepEqual(radixPlan((1 << 22) + 1), { passes: 3, bits: 8 });
});

Deno.test("sortRowsStable: a CPU stable sort by (row, position), one and two passes", async () => {
  const cases: { name: string; V: number; idx: number[]; dtype?: "u32" }[] = [
    { name: "one position", V: 1, idx: [0] },
    { name: "one row", V: 1, idx: rows(300, 0, 1, 1) },
    { name: "255 on 3 rows", V: 3, idx: rows(255, 0, 3, 2) },
    { name: "256 on 2 rows", V: 2, idx: rows(256, 0, 2, 3) },
    { name: "257 on 7 rows, 80% on row 5", V: 7, idx: rows(257, 0, 7, 4, 0.8, 5) },
    { name: "1000 on 2048 rows (11-bit digits)", V: 2048, idx: rows(1000, 0, 2048, 5, 0.3, 2047) },
    { name: "700 on 2049 rows (two passes)", V: 2049, idx: rows(700, 0, 2049, 6, 0.5, 1024) },
    {
      name: "3000 on 5000 rows (two passes, 12 tiles)",
      V: 5000,
      idx: rows(3000, 0, 5000, 7, 0.4, 63),
    },
    { name: "clamped GPU-made rows", V: 6, idx: rows(600, -4, 11, 8) },
    { name: "u32 rows", V: 9, idx: rows(300, 0, 9, 9, 0.5, 0), dtype: "u32" },
  ];
  for (const c of cases) {
    const idx = gpuIndices(c.idx, c.dtype);
    const perm = sortRowsStable(idx, c.V);
    const [got] = await readAll([perm]);
    assert.deepEqual(Array.from(got), stableOrder(c.idx, c.V), c.name);
    idx.dispose();
    perm.dispose();
  }
});

Deno.test("scatterAddRows: bit-identical to a sequential f32 sum in position order", async () => {
  const cases = [
    { name: "[5, 3], 8 positions", shape: [5, 3], idx: [0, 3, 3, 1, 4, 0, 3, 2] },
    { name: "[3, 1], 600 on 3 rows", shape: [3, 1], idx: rows(600, 0, 3, 11, 0.7, 2) },
    { name: "[4, 2, 3], 257 positions", shape: [4, 2, 3], idx: rows(257, 0, 4, 12, 0.5, 1) },
    { name: "[6, 300] (rows > workgroup)", shape: [6, 300], idx: rows(40, 0, 6, 13, 0.6, 0) },
    { name: "[2049, 2] (two passes)", shape: [2049, 2], idx: rows(500, 0, 2049, 14, 0.5, 2048) },
    { name: "[7, 5], clamped GPU-made rows", shape: [7, 5], idx: rows(300, -3, 10, 15) },
    { name: "[9, 4], unused rows are zero", shape: [9, 4], idx: rows(50, 2, 4, 16) },
    { name: "[3, 2], 3000 positions (12 tiles)", shape: [3, 2], idx: rows(3000, 0, 3, 17, 0.9, 1) },
  ];
  const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
  const kernels = {
    public: op.scatterAddRows,
    direct: scatterRowsDirect,
    sorted: scatterRowsSorted,
  };
  for (const c of cases) {
    const V = c.shape[0], D = numel(c.shape) / V;
    const gv = wide(c.idx.length * D, 18);
    const g = tensor(gv, [c.idx.length, D]);
    const idx = gpuIndices(c.idx);
    const want = bits(sequentialScatter(gv, c.idx, V, D));
    for (const [name, fn] of Object.entries(kernels)) {
      const out = fn(g, idx, c.shape);
      assert.deepEqual(out.shape, c.shape);
      const [got] = await readAll([out]);
      assert.deepEqual(bits(got as Float32Array), want, `${name}: ${c.name}`);
      out.dispose();
    }
    g.dispose();
    idx.dispose();
  }
});

Deno.test("scatterAddRows: a gradient that does not match the indices is refused", () => {
  const g = tensor(new Float32Array(6), [3, 2]);
  const idx = tensor([0, 1], [2], "i32");
  assert.throws(
    () => op.scatterAddRows(g, idx, [4, 2]),
    /gradient \[3,2\] does not match 2 rows of 2/,
  );
  g.dispose();
  idx.dispose();
});

Deno.test("indexSelect gradient: float64 finite differences, heavy duplication", async () => {
  await checkOp(
    "indexSelect [7, 5], [3, 41] indices, 90% on row 2",
    ([t, i]) => op.indexSelect(t, i),
    ([t, i]) => indexSelectRef(t, 5, i),
    [
      { data: randArray(35, 21), shape: [7, 5] },
      { data: rows(123, 0, 7, 22, 0.9, 2), shape: [3, 41], int: true },
    ],
    { gradAtol: 1e-3 },
  );
  await checkOp(
    "embedding [3, 2, 3], 257 indices (tile edge), 2 rows used",
    ([t, i]) => op.embedding(t, i),
    ([t, i]) => indexSelectRef(t, 6, i),
    [
      { data: randArray(18, 23), shape: [3, 2, 3] },
      { data: rows(257, 1, 3, 24), shape: [257], int: true },
    ],
    { gradAtol: 1e-3 },
  );
  await checkOp(
    "indexSelect [2100, 1] (two radix passes), 300 indices",
    ([t, i]) => op.indexSelect(t, i),
    ([t, i]) => indexSelectRef(t, 1, i),
    [
      { data: randArray(2100, 25), shape: [2100, 1] },
      { data: rows(300, 0, 2100, 26, 0.5, 2099), shape: [300], int: true },
    ],
    { gradAtol: 1e-3 },
  );
  await checkOp(
    "indexSelect [4, 3], 2500 indices (sorted kernel, 10 tiles), 90% on row 0",
    ([t, i]) => op.indexSelect(t, i),
    ([t, i]) => indexSelectRef(t, 3, i),
    [
      { data: randArray(12, 27), shape: [4, 3] },
      { data: rows(2500, 0, 4, 28, 0.9, 0), shape: [2500], int: true },
    ],
    { gradAtol: 2e-3 },
  );
});

Deno.test("indexSelect backward: 5 runs give identical bits under heavy duplication", async () => {
  // 65536 positions, 95% on one row, upstream gradients spanning 1e-4..1e4: any change in the
  // order of additions changes the bits. The float-atomic kernel this replaces gave 2-3
  // distinct results in 5 runs here on lavapipe (which spreads 2048 workgroups over threads).
  const [V, D, N] = [4, 8, 65536];
  const idxData = rows(N, 0, V, 31, 0.95, 1);
  const w = wide(N * D, 32);
  const runs: Uint32Array[] = [];
  for (let k = 0; k < 5; k++) {
    const table = tensor(Float32Array.from(randArray(V * D, 33)), [V, D]);
    table.requiresGrad = true;
    const idx = tensor(Int32Array.from(idxData), [N], "i32");
    tidy(() => backward(op.sumAll(op.mul(op.indexSelect(table, idx), tensor(w, [N, D])))));
    const [grad] = await readAll([table.grad!]);
    runs.push(new Uint32Array(grad.buffer, grad.byteOffset, grad.length).slice());
    table.grad!.dispose();
    table.dispose();
    idx.dispose();
  }
  for (let k = 1; k < 5; k++) assert.deepEqual(runs[k], runs[0], `run ${k} differs from run 0`);
  const want = sequentialScatter(w, idxData, V, D);
  assert.deepEqual(runs[0], new Uint32Array(want.buffer), "not the position-order sum");
});

Deno.test("scatterAddRows under capture: replays give the position-order sum (sort path)", async () => {
  // One-pass sort ([5, 3] table, 3000 positions) and two-pass sort ([2100, 2], 300 positions).
  const A = { V: 5, D: 3, N: 3000 }, B = { V: 2100, D: 2, N: 300 };
  interface In {
    ga: Float32Array;
    ia: Int32Array;
    gb: Float32Array;
    ib: Int32Array;
  }
  const step = capture<In, Tensor[]>(
    (x) => [
      op.scatterAddRows(tensor(x.ga, [A.N, A.D]), tensor(x.ia, [A.N], "i32"), [A.V, A.D]),
      op.scatterAddRows(tensor(x.gb, [B.N, B.D]), tensor(x.ib, [B.N], "i32"), [B.V, B.D]),
    ],
    { name: "scatter rows", strict: true },
  );
  const bits = (a: ArrayLike<number>) => Array.from(new Uint32Array(Float32Array.from(a).buffer));
  for (let k = 0; k < 6; k++) {
    const x: In = {
      ga: wide(A.N * A.D, 40 + k),
      ia: Int32Array.from(rows(A.N, 0, A.V, 50 + k, 0.8, k % A.V)),
      gb: wide(B.N * B.D, 60 + k),
      ib: Int32Array.from(rows(B.N, 0, B.V, 70 + k, 0.5, 7 * k)),
    };
    const outs = tidy(() => step(x));
    const [a, b] = await readAll(outs);
    assert.deepEqual(bits(a), bits(sequentialScatter(x.ga, [...x.ia], A.V, A.D)), `call ${k}: A`);
    assert.deepEqual(bits(b), bits(sequentialScatter(x.gb, [...x.ib], B.V, B.D)), `call ${k}: B`);
  }
  assert.equal(step.stats().replays, 3);
  step.dispose();
});
