/**
 * The generated implicit-GEMM convolution kernels dispatched directly: several matmul tiles
 * forced on the forward, and a forced split-K weight gradient (the scratch's parts summed on
 * the CPU), against float64 CPU references.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { type ConvGeometry, convOutputSize, planConv } from "../kernels/codegen/conv/plan.ts";
import { MATMUL_TILES } from "../kernels/codegen/matmul/plan.ts";
import { readAll, Tensor, tensor } from "../kernels/core/tensor.ts";
import { conv2dRef } from "./helpers/cpu_tokenizer_ops.ts";
import { assertClose, randArray } from "./helpers/reference.ts";

const rt = await initRuntime();

const g: ConvGeometry = {
  N: 2,
  C: 3,
  H: 13,
  W: 11,
  O: 20,
  kh: 3,
  kw: 3,
  stride: 2,
  pad: [0, 1, 0, 1],
};
const [OH, OW] = convOutputSize(g);
const x = randArray(g.N * g.C * g.H * g.W, 1);
const w = randArray(g.O * g.C * 9, 2);
const bias = randArray(g.O, 3);
const ref = conv2dRef(
  { data: x, shape: [g.N, g.C, g.H, g.W] },
  w,
  [g.O, g.C, 3, 3],
  bias,
  2,
  g.pad,
);

/** A few matmul tiles (each compiles a kernel: lavapipe is slow at that). */
const TILES = [MATMUL_TILES[0], MATMUL_TILES[3], MATMUL_TILES[5], MATMUL_TILES.at(-1)!];

Deno.test("conv forward with several matmul tiles forced", async () => {
  const xt = tensor(Float32Array.from(x), [g.N, g.C, g.H, g.W]);
  const wt = tensor(Float32Array.from(w), [g.O, g.C, 3, 3]);
  const bt = tensor(Float32Array.from(bias), [g.O]);
  const outs = TILES.map((tile) => {
    const plan = planConv(g, "forward", rt.ctx.limits, { bias: true, tile });
    const y = Tensor.empty([g.N, g.O, OH, OW]);
    rt.dispatch(plan, [wt.buffer, xt.buffer, y.buffer, bt.buffer]);
    return y;
  });
  const vals = await readAll(outs);
  vals.forEach((v, i) =>
    assertClose(v, ref.data, {
      atol: 1e-5,
      rtol: 1e-4,
      what: `tile ${JSON.stringify(TILES[i])}`,
    })
  );
  [xt, wt, bt, ...outs].forEach((t) => t.dispose());
});

Deno.test("conv weight gradient with a forced 4-way split of N*OH*OW", async () => {
  const gy = randArray(g.N * g.O * OH * OW, 4);
  // dw[o, c, ky, kx] = sum over n, oy, ox of gy * x at the tap (float64).
  const dw = new Float64Array(g.O * g.C * 9);
  for (let n = 0; n < g.N; n++) {
    for (let o = 0; o < g.O; o++) {
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          const gv = gy[((n * g.O + o) * OH + oy) * OW + ox];
          for (let c = 0; c < g.C; c++) {
            for (let ky = 0; ky < 3; ky++) {
              for (let kx = 0; kx < 3; kx++) {
                const iy = oy * 2 + ky, ix = ox * 2 + kx;
                if (iy >= g.H || ix >= g.W) continue;
                dw[((o * g.C + c) * 3 + ky) * 3 + kx] += gv *
                  x[((n * g.C + c) * g.H + iy) * g.W + ix];
              }
            }
          }
        }
      }
    }
  }
  const plan = planConv(g, "weight", rt.ctx.limits, { splitK: 4 });
  assert.equal(plan.parts, 4);
  const xt = tensor(Float32Array.from(x), [g.N, g.C, g.H, g.W]);
  const gt = tensor(Float32Array.from(gy), [g.N, g.O, OH, OW]);
  const out = Tensor.empty([plan.outElems]);
  rt.dispatch(plan, [gt.buffer, xt.buffer, out.buffer]);
  const [raw] = await readAll([out]);
  const summed = new Float64Array(dw.length);
  for (let p = 0; p < 4; p++) {
    for (let i = 0; i < dw.length; i++) summed[i] += raw[p * dw.length + i];
  }
  assertClose(summed, dw, { atol: 1e-4, rtol: 1e-4, what: "split-K dw" });
  [xt, gt, out].forEach((t) => t.dispose());
});
