/**
 * The exact (erf) GELU: the float64 reference against known values of erf, the kernel against
 * the reference with a RELATIVE bound over the whole f32 range (the negative tail included,
 * where x * Phi(x) is tiny), the gradient against float64 finite differences, and its
 * distance from the tanh form (the two must differ, or the parity switch would test nothing).
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { tensor, tidy } from "../kernels/core/tensor.ts";
import * as op from "../kernels/ops/mod.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { erf64, erfc64, geluErf64, UNARY_REF } from "./helpers/cpu_ops.ts";
import { randArray } from "./helpers/reference.ts";

await initRuntime();

Deno.test("erf64: known values (Abramowitz-Stegun Table 7.1, scipy)", () => {
  const known: [number, number][] = [
    [0, 0],
    [0.1, 0.1124629160182849],
    [0.5, 0.5204998778130465],
    [1, 0.8427007929497149],
    [2, 0.9953222650189527],
    [2.5, 0.9995930479825550],
    [3, 0.9999779095030014],
  ];
  for (const [x, v] of known) {
    assert.ok(Math.abs(erf64(x) - v) < 1e-14, `erf(${x}) = ${erf64(x)}, want ${v}`);
    assert.ok(Math.abs(erf64(-x) + v) < 1e-14);
  }
  // Tails: erfc(5) = 1.5374597944280349e-12, erfc(10) = 2.088487583762545e-45 (relative).
  assert.ok(Math.abs(erfc64(5) / 1.5374597944280349e-12 - 1) < 1e-12);
  assert.ok(Math.abs(erfc64(10) / 2.088487583762545e-45 - 1) < 1e-12);
});

Deno.test("gelu_erf: relative error < 2e-6 on [-4, 12], < 3e-5 in the far negative tail", async () => {
  const n = 2401;
  const xs = Float32Array.from({ length: n }, (_, i) => -12 + i * 0.01);
  const got = await tidy(() => op.geluErf(tensor(xs, [n]))).read();
  let core = 0;
  let tail = 0;
  for (let i = 0; i < n; i++) {
    const want = geluErf64(xs[i]);
    if (want === 0) {
      assert.equal(got[i], 0);
      continue;
    }
    const rel = Math.abs(got[i] - want) / Math.abs(want);
    // Below -4 the f32 rounding of x^2 inside exp(-x^2/2) sets the floor (~x^2 * 6e-8).
    if (xs[i] >= -4) core = Math.max(core, rel);
    else tail = Math.max(tail, rel);
    assert.ok(
      Math.abs(got[i] - want) < 2e-7 * Math.max(1, Math.abs(xs[i])),
      `x = ${xs[i]}: ${got[i]} vs ${want}`,
    );
  }
  assert.ok(core < 2e-6, `worst relative error on [-4, 12]: ${core}`);
  assert.ok(tail < 3e-5, `worst relative error below -4: ${tail}`);
});

Deno.test("gelu_erf: gradient against float64 finite differences", async () => {
  const data = randArray(301, 5, -6, 6);
  await checkOp("gelu_erf", ([x]) => op.geluErf(x), ([x]) => x.map(UNARY_REF.gelu_erf), [
    { data, shape: [7, 43] },
  ], { gradAtol: 1e-4 });
});

Deno.test("gelu_erf differs from the tanh form by up to ~5e-4 (what the switch changes)", async () => {
  const xs = Float32Array.from({ length: 601 }, (_, i) => -3 + i * 0.01);
  const [a, b] = await Promise.all(
    tidy(() => [op.geluErf(tensor(xs, [601])), op.gelu(tensor(xs, [601]))]).map((t) => t.read()),
  );
  const diff = Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
  assert.ok(diff > 1e-4 && diff < 1e-3, `max |erf - tanh| = ${diff}`);
});
