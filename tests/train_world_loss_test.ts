/** The world loss (Eq. 8) against a float64 reference, with padding masked out. */
import { initRuntime } from "../kernels/core/runtime.ts";
import { tensor } from "../kernels/core/tensor.ts";
import { worldLoss } from "../train/losses.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { randArray } from "./helpers/reference.ts";

await initRuntime();

function ce(logits: Float64Array, row: number, C: number, target: number): number {
  let m = -Infinity;
  for (let c = 0; c < C; c++) m = Math.max(m, logits[row * C + c]);
  let z = 0;
  for (let c = 0; c < C; c++) z += Math.exp(logits[row * C + c] - m);
  return m + Math.log(z) - logits[row * C + target];
}

Deno.test("world loss: token, reward and termination CE over unmasked timesteps; gradients", async () => {
  const N = 4, P = 3, V = 7;
  const obsT = [1, 6, 0, 2, 2, 3, 5, 5, 1, 0, 4, 6];
  const rewT = [1, 2, 0, 1];
  const termT = [0, 0, 1, 0];
  const mask = [1, 1, 1, 0];
  const cpu = ([o, r, t]: Float64Array[]) => {
    let so = 0, sr = 0, st = 0, n = 0;
    for (let i = 0; i < N; i++) {
      if (!mask[i]) continue;
      n++;
      for (let p = 0; p < P; p++) so += ce(o, i * P + p, V, obsT[i * P + p]) / P;
      sr += ce(r, i, 3, rewT[i]);
      st += ce(t, i, 2, termT[i]);
    }
    return Float64Array.of((so + sr + st) / n);
  };
  await checkOp(
    "worldLoss",
    ([o, r, t]) =>
      worldLoss(o, r, t, {
        obsTokens: tensor(obsT, [N, P], "i32"),
        rewardClass: tensor(rewT, [N], "i32"),
        terminal: tensor(termT, [N], "i32"),
        mask: tensor(mask, [N]),
      }),
    cpu,
    [
      { data: randArray(N * P * V, 1, -2, 2), shape: [N, P, V] },
      { data: randArray(N * 3, 2, -2, 2), shape: [N, 3] },
      { data: randArray(N * 2, 3, -2, 2), shape: [N, 2] },
    ],
    { rtol: 1e-4 },
  );
});
