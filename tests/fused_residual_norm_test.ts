/**
 * kernels/ops/fused_residual_norm.ts: h = x + dropout(y), n = layerNorm(h) in one dispatch.
 * Forward against a float64 reference and the unfused composition (dropout, add, layerNorm:
 * the same mask and the same sums, equal bit for bit on lavapipe, within an ulp or so where a
 * GPU compiler contracts a sum into an FMA); backward by finite differences of the float64
 * reference and against the unfused tape; on awkward shapes (rows not a multiple of
 * anything, odd widths, a width over the 256 threads of a row); the dispatch counts (1
 * forward, 2 backward), the joint rule when only one output is used, and bad input.
 */
import assert from "node:assert/strict";
import { backward } from "../kernels/core/autograd.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { add, concat, dropout, layerNorm, mul, sumAll } from "../kernels/ops/mod.ts";
import { dropoutAddLayerNorm } from "../kernels/ops/fused_residual_norm.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { dropoutKeeps, layerNormRef } from "./helpers/cpu_nn.ts";
import { assertClose, randArray } from "./helpers/reference.ts";

const rt = await initRuntime();

const SHAPES = [[3, 7, 37], [13, 5], [2, 300]];
const SEED = 0x9e3779b9;

/** float64 reference: [h, n] concatenated along the last axis (as the GPU side below). */
function ref(v: Float64Array[], C: number, p: number, hasX: boolean): Float64Array {
  const [x, y, w, b] = hasX ? v : [null, ...v] as [null, Float64Array, Float64Array, Float64Array];
  const h = y.map((yv, i) =>
    (x ? x[i] : 0) + (p > 0 ? (dropoutKeeps(SEED, i, p) ? yv / (1 - p) : 0) : yv)
  );
  const n = layerNormRef(h, w, b, C);
  const out = new Float64Array(2 * h.length);
  for (let r = 0; r < h.length / C; r++) {
    out.set(h.subarray(r * C, (r + 1) * C), 2 * r * C);
    out.set(n.subarray(r * C, (r + 1) * C), (2 * r + 1) * C);
  }
  return out;
}

Deno.test("dropoutAddLayerNorm: forward and gradients against float64 (finite differences)", async () => {
  for (const shape of SHAPES) {
    const C = shape[shape.length - 1];
    const size = shape.reduce((a, b) => a * b, 1);
    for (const [p, hasX] of [[0.3, true], [0, true], [0.25, false]] as const) {
      const inputs = [
        ...(hasX ? [{ data: randArray(size, C, -2, 2), shape }] : []),
        { data: randArray(size, C + 1, -2, 2), shape },
        { data: randArray(C, C + 2, 0.5, 1.5), shape: [C] },
        { data: randArray(C, C + 3), shape: [C] },
      ];
      await checkOp(
        `dropoutAddLayerNorm [${shape}] p=${p}${hasX ? "" : " no residual"}`,
        (xs) => {
          const [x, y, w, b] = hasX ? xs : [null, ...xs];
          const { h, n } = dropoutAddLayerNorm(x, y!, w!, b!, { p, seed: SEED });
          return concat([h, n], -1);
        },
        (v) => ref(v, C, p, hasX),
        inputs,
        { gradAtol: 2e-4, gradRtol: 2e-3 },
      );
    }
  }
});

/** Outputs and gradients of L = sum(wh * h) + sum(wn * n), fused or unfused. */
function run(fused: boolean, shape: number[], p: number, useH: boolean, useN: boolean) {
  const C = shape[shape.length - 1];
  const size = shape.reduce((a, b) => a * b, 1);
  const up = (d: Float64Array, s: number[]) => tensor(Float32Array.from(d), s);
  const x = up(randArray(size, 1, -2, 2), shape);
  const y = up(randArray(size, 2, -2, 2), shape);
  const w = up(randArray(C, 3, 0.5, 1.5), [C]);
  const b = up(randArray(C, 4), [C]);
  const wh = up(randArray(size, 5), shape);
  const wn = up(randArray(size, 6), shape);
  for (const t of [x, y, w, b]) t.requiresGrad = true;
  const outs = tidy(() => {
    let h: Tensor, n: Tensor;
    const before = rt.dispatchCount;
    if (fused) ({ h, n } = dropoutAddLayerNorm(x, y, w, b, { p, seed: SEED }));
    else {
      h = add(x, dropout(y, p, SEED));
      n = layerNorm(h, w, b);
    }
    const forwardDispatches = rt.dispatchCount - before;
    const terms = [...(useH ? [sumAll(mul(h, wh))] : []), ...(useN ? [sumAll(mul(n, wn))] : [])];
    backward(terms.length === 2 ? add(terms[0], terms[1]) : terms[0]);
    return { h, n, forwardDispatches };
  });
  return { ...outs, grads: [x, y, w, b].map((t) => t.grad) };
}

Deno.test("dropoutAddLayerNorm: equals dropout + add + layerNorm, forward and backward", async () => {
  // [2053, 37]: more rows than the backward's 1024 workgroups (3 rows each, a short last one).
  for (const shape of [[3, 7, 37], [2, 300], [2053, 37]]) {
    for (const [useH, useN] of [[true, true], [false, true], [true, false]]) {
      const a = run(true, shape, 0.3, useH, useN);
      const u = run(false, shape, 0.3, useH, useN);
      const k = useN ? 4 : 2; // no gradient reaches the norm's weight and bias without n
      const [ah, an, ...ag] = await readAll([a.h, a.n, ...a.grads.slice(0, k).map((g) => g!)]);
      const [uh, un, ...ug] = await readAll([u.h, u.n, ...u.grads.slice(0, k).map((g) => g!)]);
      const what = `[${shape}] h ${useH ? "used" : "unused"}, n ${useN ? "used" : "unused"}`;
      // Equal bit for bit on lavapipe; a GPU compiler may contract the residual-gradient sum
      // into an FMA (NVIDIA does), which moves the backward by an ulp or so.
      const close = (a: ArrayLike<number>, b: ArrayLike<number>, name: string) =>
        assertClose(a, b, { atol: 1e-6, rtol: 1e-5, what: `${what}: ${name}` });
      close(ah, uh, "h");
      close(an, un, "n");
      ["x", "y", "w", "b"].slice(0, k).forEach((name, i) => close(ag[i], ug[i], `grad ${name}`));
      if (!useN) assert.equal(a.grads[2], null);
      // One forward dispatch for three (dropout, add, layerNorm).
      assert.equal(a.forwardDispatches, 1);
      assert.equal(u.forwardDispatches, 3);
      for (const t of [a.h, a.n, u.h, u.n, ...a.grads, ...u.grads]) t?.dispose();
    }
  }
});

Deno.test("dropoutAddLayerNorm backward: one dispatch, two with the weight/bias gradients", () => {
  const [R, C] = [40, 70];
  const up = (seed: number, shape: number[]) =>
    tensor(Float32Array.from(randArray(shape.reduce((a, b) => a * b, 1), seed)), shape);
  const [x, y, w, b] = [up(1, [R, C]), up(2, [R, C]), up(3, [C]), up(4, [C])];
  const g = up(5, [R, C]);
  for (const frozenNorm of [false, true]) {
    for (const t of [x, y]) t.requiresGrad = true;
    for (const t of [w, b]) t.requiresGrad = !frozenNorm;
    tidy(() => {
      const { h, n } = dropoutAddLayerNorm(x, y, w, b, { p: 0.2, seed: 3 });
      const joint = h.node!.joint!;
      assert.equal(n.node!.joint, joint, "one rule for both outputs");
      for (const [gH, gN] of [[g, g], [null, g], [g, null]]) {
        const before = rt.dispatchCount;
        const grads = joint.backward([gH, gN]);
        const want = gN && !frozenNorm ? 2 : 1;
        assert.equal(rt.dispatchCount - before, want, `gH ${!!gH}, gN ${!!gN}`);
        assert.equal(grads.length, 4);
        assert.ok(grads[0] && grads[1], "gradients of x and y");
        assert.equal(grads[2] !== null, gN !== null && !frozenNorm, "weight gradient");
      }
    });
  }
  for (const t of [x, y, w, b, g]) t.dispose();
});

Deno.test("dropoutAddLayerNorm: no tape without gradients; bad input is refused by name", () => {
  const x = tensor(new Float32Array(6), [2, 3]);
  const w = tensor(new Float32Array(3).fill(1), [3]);
  const b = tensor(new Float32Array(3), [3]);
  const { h, n } = dropoutAddLayerNorm(x, x, w, b, { p: 0.1, seed: 1 });
  assert.equal(h.node, null);
  assert.equal(n.node, null);
  assert.throws(
    () => dropoutAddLayerNorm(x, x, w, b, { p: 1, seed: 1 }),
    /dropoutAddLayerNorm: p must be in \[0, 1\)/,
  );
  const y = tensor(new Float32Array(3), [1, 3]);
  assert.throws(() => dropoutAddLayerNorm(x, y, w, b, { p: 0, seed: 1 }), /residual \[2,3\]/);
  const w4 = tensor(new Float32Array(4), [4]);
  assert.throws(() => dropoutAddLayerNorm(x, x, w4, b, { p: 0, seed: 1 }), /weight \[4\]/);
  for (const t of [x, w, b, h, n, y, w4]) t.dispose();
});
