/**
 * conv2d (implicit GEMM) forward against a float64 CPU convolution, and its input, weight and
 * bias gradients against float64 finite differences (checkOp): strides 1, 2, 7, kernels 1, 3,
 * 8, asymmetric padding, channel counts that are not tile multiples, N > 1.
 */
import { initRuntime } from "../kernels/core/runtime.ts";
import { conv2d } from "../kernels/ops/mod.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { conv2dRef } from "./helpers/cpu_tokenizer_ops.ts";
import { randArray } from "./helpers/reference.ts";

await initRuntime();

interface Case {
  N: number;
  C: number;
  H: number;
  W: number;
  O: number;
  k: number;
  stride: number;
  pad: [number, number, number, number];
  bias: boolean;
}

const CASES: Case[] = [
  { N: 2, C: 3, H: 7, W: 6, O: 5, k: 3, stride: 1, pad: [1, 1, 1, 1], bias: true },
  { N: 1, C: 4, H: 8, W: 8, O: 6, k: 3, stride: 2, pad: [0, 1, 0, 1], bias: true },
  { N: 2, C: 2, H: 15, W: 15, O: 3, k: 8, stride: 7, pad: [0, 1, 0, 1], bias: false },
  { N: 3, C: 5, H: 4, W: 5, O: 7, k: 1, stride: 1, pad: [0, 0, 0, 0], bias: true },
  { N: 1, C: 1, H: 9, W: 9, O: 1, k: 3, stride: 2, pad: [2, 0, 1, 0], bias: true },
  // Input-gradient phases: stride 3 with uneven padding; 25 taps per phase (no hoisting).
  { N: 2, C: 3, H: 11, W: 10, O: 4, k: 5, stride: 3, pad: [2, 1, 0, 2], bias: false },
  { N: 1, C: 2, H: 12, W: 12, O: 3, k: 9, stride: 2, pad: [1, 1, 1, 1], bias: true },
];

for (const c of CASES) {
  const name = `conv2d N${c.N} C${c.C} ${c.H}x${c.W} -> O${c.O} k${c.k} s${c.stride} p[${c.pad}]`;
  Deno.test(name, async () => {
    const x = randArray(c.N * c.C * c.H * c.W, 1);
    const w = randArray(c.O * c.C * c.k * c.k, 2, -0.5, 0.5);
    const b = randArray(c.O, 3);
    const inputs = [
      { data: x, shape: [c.N, c.C, c.H, c.W] },
      { data: w, shape: [c.O, c.C, c.k, c.k] },
    ];
    if (c.bias) inputs.push({ data: b, shape: [c.O] });
    await checkOp(
      name,
      (xs) => conv2d(xs[0], xs[1], xs[2] ?? null, { stride: c.stride, padding: c.pad }),
      (v) =>
        conv2dRef(
          { data: v[0], shape: [c.N, c.C, c.H, c.W] },
          v[1],
          [c.O, c.C, c.k, c.k],
          c.bias ? v[2] : null,
          c.stride,
          c.pad,
        ).data,
      inputs,
      { atol: 1e-5, rtol: 1e-4, gradAtol: 2e-4, gradRtol: 2e-3 },
    );
  });
}
