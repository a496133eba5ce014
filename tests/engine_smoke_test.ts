import { initRuntime } from "../kernels/runtime.ts";
import * as op from "../kernels/ops/mod.ts";
import { checkGradFiniteDiff, checkOp } from "./helpers/gradcheck.ts";
import { randArray } from "./helpers/reference.ts";

await initRuntime();

Deno.test("smoke: mul broadcast against float64", async () => {
  await checkOp("mul", ([a, b]) => op.mul(a, b), ([a, b]) => a.map((v, i) => v * b[i % 3]), [
    { data: randArray(6, 1), shape: [2, 3] },
    { data: randArray(3, 2), shape: [3] },
  ]);
});

Deno.test("smoke: tanh finite differences on GPU", async () => {
  await checkGradFiniteDiff("tanh", ([a]) => op.tanh(a), [{ data: randArray(5, 3), shape: [5] }]);
});
