/**
 * Layer-norm backward in two dispatches: the input gradient, and the weight and bias
 * gradients as one fused column sum (kernels/ops/norm.ts `layerNormParamGrads`). Gradients
 * by finite differences of a float64 reference (tests/helpers/gradcheck.ts) on awkward
 * shapes: rows not a multiple of the 8 row groups, widths not a multiple of the 32-column
 * workgroups, a width over 256; and the dispatch count of the backward rule.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor } from "../kernels/core/tensor.ts";
import { layerNorm } from "../kernels/ops/mod.ts";
import { layerNormParamBlocks } from "../kernels/ops/norm.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { randArray } from "./helpers/reference.ts";

const rt = await initRuntime();

/** float64 layer norm over the last axis C. */
function ln64([x, w, b]: Float64Array[], C: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; r++) {
    const row = x.subarray(r * C, (r + 1) * C);
    const mean = row.reduce((s, v) => s + v, 0) / C;
    const v = row.reduce((s, u) => s + (u - mean) ** 2, 0) / C;
    for (let c = 0; c < C; c++) {
      out[r * C + c] = ((row[c] - mean) / Math.sqrt(v + 1e-5)) * w[c] + b[c];
    }
  }
  return out;
}

Deno.test("layerNorm backward: input, weight and bias gradients by finite differences", async () => {
  for (const shape of [[3, 7, 37], [13, 5], [2, 300]]) {
    const C = shape[shape.length - 1];
    const n = shape.reduce((a, b) => a * b, 1);
    await checkOp(
      `layerNorm [${shape}]`,
      ([x, w, b]) => layerNorm(x, w, b),
      (v) => ln64(v, C),
      [
        { data: randArray(n, C, -2, 2), shape },
        { data: randArray(C, C + 1, 0.5, 1.5), shape: [C] },
        { data: randArray(C, C + 2), shape: [C] },
      ],
    );
  }
});

Deno.test("layerNorm backward: two dispatches; a frozen weight or bias gets no gradient", async () => {
  const [R, C] = [40, 70];
  const x = tensor(Float32Array.from(randArray(R * C, 1)), [R, C]);
  const w = tensor(Float32Array.from(randArray(C, 2)), [C]);
  const b = tensor(Float32Array.from(randArray(C, 3)), [C]);
  for (const t of [x, w, b]) t.requiresGrad = true;
  const y = layerNorm(x, w, b);
  const g = tensor(Float32Array.from(randArray(R * C, 4)), [R, C]);
  const before = rt.dispatchCount;
  const grads = y.node!.backward(g);
  assert.equal(rt.dispatchCount - before, 2, "grad_x + fused grad_w/grad_b");
  const [, dw, db] = await readAll(grads.map((t) => t!));
  // The bias gradient is the plain column sum of g (an independent check of the fused sum).
  const gv = await readAll([g]);
  for (let c = 0; c < C; c++) {
    let s = 0;
    for (let r = 0; r < R; r++) s += gv[0][r * C + c];
    assert.ok(Math.abs(db[c] - s) < 1e-4, `db[${c}] ${db[c]} vs ${s}`);
  }
  assert.equal(dw.length, C);
  b.requiresGrad = false;
  const y2 = layerNorm(x, w, b);
  const [, dw2, db2] = y2.node!.backward(g);
  assert.equal(db2, null);
  assert.deepEqual(await readAll([dw2!]), [dw]);
});

Deno.test("layerNorm weight/bias gradients over row blocks: float64 sums, fixed order", async () => {
  // 601 rows: 3 row blocks (201, 201, 199 rows), so pass 1 writes partials and pass 2 adds
  // them; 40 columns: a partial 32-column group.
  const [R, C] = [601, 40];
  assert.equal(layerNormParamBlocks(R, C), 3);
  const xv = randArray(R * C, 11, -2, 2);
  const gv = randArray(R * C, 12);
  const x = tensor(Float32Array.from(xv), [R, C]);
  const w = tensor(Float32Array.from(randArray(C, 13, 0.5, 1.5)), [C]);
  const b = tensor(Float32Array.from(randArray(C, 14)), [C]);
  for (const t of [w, b]) t.requiresGrad = true;
  const g = tensor(Float32Array.from(gv), [R, C]);
  const y = layerNorm(x, w, b);
  const before = rt.dispatchCount;
  const [, dw, db] = y.node!.backward(g);
  assert.equal(rt.dispatchCount - before, 2, "row-block partials + their sum");
  const [dwv, dbv] = await readAll([dw!, db!]);
  // float64: xhat from the float64 statistics of the f32 inputs.
  const rw = new Float64Array(C), rb = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    const row = xv.subarray(r * C, (r + 1) * C);
    const mean = row.reduce((s, v) => s + v, 0) / C;
    const rstd = 1 / Math.sqrt(row.reduce((s, v) => s + (v - mean) ** 2, 0) / C + 1e-5);
    for (let c = 0; c < C; c++) {
      rw[c] += gv[r * C + c] * (row[c] - mean) * rstd;
      rb[c] += gv[r * C + c];
    }
  }
  for (let c = 0; c < C; c++) {
    assert.ok(Math.abs(dwv[c] - rw[c]) < 2e-4 * (1 + Math.abs(rw[c])), `dw[${c}]`);
    assert.ok(Math.abs(dbv[c] - rb[c]) < 2e-4 * (1 + Math.abs(rb[c])), `db[${c}]`);
  }
  // Same inputs, same bits (replay and resume compare steps bit for bit).
  const [, dw2, db2] = layerNorm(x, w, b).node!.backward(g);
  assert.deepEqual(await readAll([dw2!, db2!]), [dwv, dbv]);
});
