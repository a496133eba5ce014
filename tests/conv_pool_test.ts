/** maxPool2d (VGG's 2x2 / stride-2 pooling) forward and gradient against float64 references. */
import { initRuntime } from "../kernels/core/runtime.ts";
import { maxPool2d } from "../kernels/ops/mod.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { randArray } from "./helpers/reference.ts";

await initRuntime();

function poolRef(x: Float64Array, [N, C, H, W]: number[], k: number): Float64Array {
  const OH = Math.floor(H / k), OW = Math.floor(W / k);
  const out = new Float64Array(N * C * OH * OW);
  for (let p = 0; p < N * C; p++) {
    for (let y = 0; y < OH; y++) {
      for (let xx = 0; xx < OW; xx++) {
        let m = -Infinity;
        for (let dy = 0; dy < k; dy++) {
          for (let dx = 0; dx < k; dx++) m = Math.max(m, x[(p * H + y * k + dy) * W + xx * k + dx]);
        }
        out[(p * OH + y) * OW + xx] = m;
      }
    }
  }
  return out;
}

for (const [k, shape] of [[2, [2, 3, 6, 8]], [2, [1, 2, 5, 7]], [3, [1, 1, 7, 6]]] as const) {
  Deno.test(`maxPool2d ${k}x${k} of [${shape}]`, async () => {
    const s: number[] = [...shape];
    await checkOp(
      "maxPool2d",
      (xs) => maxPool2d(xs[0], k),
      (v) => poolRef(v[0], s, k),
      // Distinct values: no ties, so the finite differences see one maximum per window.
      [{ data: randArray(s.reduce((a, b) => a * b), 3), shape: s }],
    );
  });
}
