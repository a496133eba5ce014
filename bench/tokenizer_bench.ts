/**
 * Tokenizer throughput: conv2d GFLOP/s of the implicit-GEMM kernels on the tokenizer's
 * shapes (forward, input gradient, weight gradient), and tokenizer encode frames/s.
 *
 * Each case records `--iters` repetitions and one submit after a warmup, timed by wall clock
 * around onSubmittedWorkDone.
 *
 *   deno run -A bench/tokenizer_bench.ts            # paper config, batch 64 frames
 *   deno run -A bench/tokenizer_bench.ts --quick    # batch 2, fewer iterations (lavapipe)
 *
 * @module
 */
import { parseArgs } from "node:util";
import { describeAdapter } from "../kernels/core/device.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { type ConvGeometry, convOutputSize, planConv } from "../kernels/codegen/conv/plan.ts";
import { Tensor, tensor } from "../kernels/core/tensor.ts";
import { PAPER_TOKENIZER, TINY_TOKENIZER, Tokenizer } from "../models/tokenizer/model.ts";

const HELP = `tokenizer_bench: conv2d GFLOP/s on tokenizer shapes and encode frames/s.

Options:
  --batch N     frames per batch (default 64; 2 with --quick)
  --iters N     repetitions per timed submit (default 10; 2 with --quick)
  --config C    paper (default) or tiny, for the encode throughput
  --quick       small batch and iterations, for CPU adapters such as lavapipe
  --help        this text
`;

const args = parseArgs({
  options: {
    batch: { type: "string" },
    iters: { type: "string" },
    config: { type: "string", default: "paper" },
    quick: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (args.values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const quick = args.values.quick;
const batch = Number(args.values.batch ?? (quick ? 2 : 64));
const iters = Number(args.values.iters ?? (quick ? 2 : 10));
const cfg = args.values.config === "tiny" ? TINY_TOKENIZER : PAPER_TOKENIZER;

const rt = await initRuntime();
console.log(`adapter: ${describeAdapter(rt.ctx)}`);
console.log(`batch ${batch} frames, ${iters} iterations, config ${args.values.config}`);

const C = cfg.ch;
/** The tokenizer's convolutions (paper widths), per frame batch. */
const SHAPES: [string, ConvGeometry][] = [
  ["conv3x3 84x84", geo(84, C, C, 3, 1, [1, 1, 1, 1])],
  ["down k8 s7 84->12", geo(84, C, C, 8, 7, [0, 1, 0, 1])],
  ["conv3x3 12x12", geo(12, C, C, 3, 1, [1, 1, 1, 1])],
  ["down k3 s2 12->6", geo(12, C, C, 3, 2, [0, 1, 0, 1])],
  ["conv_out 6x6 ->z", geo(6, C, cfg.zChannels, 3, 1, [1, 1, 1, 1])],
  ["conv3x3 42x42", geo(42, C, C, 3, 1, [1, 1, 1, 1])],
];

function geo(
  R: number,
  Cin: number,
  O: number,
  k: number,
  stride: number,
  pad: [number, number, number, number],
): ConvGeometry {
  return { N: batch, C: Cin, H: R, W: R, O, kh: k, kw: k, stride, pad };
}

function random(n: number): Tensor {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 12.9898) * 0.5;
  return tensor(a, [n]);
}

async function time(fn: () => void): Promise<number> {
  fn();
  await rt.sync();
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) fn();
  await rt.sync();
  return (performance.now() - t0) / iters;
}

console.log("\nconv2d (implicit GEMM)          kind     GEMM MxNxK            ms    GFLOP/s");
for (const [name, g] of SHAPES) {
  const [OH, OW] = convOutputSize(g);
  const x = random(g.N * g.C * g.H * g.W);
  const w = random(g.O * g.C * g.kh * g.kw);
  const y = random(g.N * g.O * OH * OW);
  for (const kind of ["forward", "input", "weight"] as const) {
    const plan = planConv(g, kind, rt.ctx.limits, {
      splitK: kind === "weight" ? "auto" : undefined,
    });
    const out = Tensor.empty([plan.outElems]);
    const bufs = kind === "forward"
      ? [w.buffer, x.buffer, out.buffer]
      : kind === "input"
      ? [w.buffer, y.buffer, out.buffer]
      : [y.buffer, x.buffer, out.buffer];
    const ms = await time(() => rt.dispatch(plan, bufs));
    // Useful FLOPs only (the input gradient's zero taps of strided convs are not counted).
    const flops = 2 * g.N * g.O * OH * OW * g.C * g.kh * g.kw;
    const gemm = `${plan.M}x${plan.N}x${plan.K}${plan.parts > 1 ? ` /${plan.parts}` : ""}`;
    console.log(
      `${name.padEnd(32)} ${kind.padEnd(8)} ${gemm.padEnd(20)} ${ms.toFixed(2).padStart(8)} ${
        (flops / ms / 1e6).toFixed(1).padStart(9)
      }`,
    );
    out.dispose();
  }
  [x, w, y].forEach((t) => t.dispose());
}

const tok = new Tokenizer(cfg).eval();
const frames = new Uint8Array(batch * cfg.resolution * cfg.resolution);
for (let i = 0; i < frames.length; i++) frames[i] = (i * 37) % 251;
const input = tensor(Int32Array.from(frames), [batch, 1, cfg.resolution, cfg.resolution], "i32");
const ms = await time(() => tok.encode(input).dispose());
console.log(
  `\nencode (${args.values.config}): ${ms.toFixed(1)} ms per batch of ${batch}, ${
    (batch / ms * 1000).toFixed(1)
  } frames/s`,
);
