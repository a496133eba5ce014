/**
 * Engine benchmarks: elementwise bandwidth, dispatch overhead inside one compute pass, and a
 * full training step (forward, backward, AdamW) of a small GPT.
 *
 *   deno task bench engine [-- --quick]
 */
import { parseArgs } from "node:util";
import { backward, describeAdapter, initRuntime, tensor, tidy } from "../mod.ts";
import { add, mulScalar } from "../kernels/ops/mod.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { Gpt } from "../models/world_action/transformer.ts";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(`engine_bench — elementwise GB/s, dispatch overhead, GPT training step

  --quick   small sizes (for CPU adapters such as lavapipe)`);
  Deno.exit(0);
}
const quick = values.quick;
const rt = await initRuntime();
console.log(`adapter: ${describeAdapter(rt.ctx)}`);

async function time(fn: () => void, reps: number): Promise<number> {
  fn();
  await rt.sync();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  await rt.sync();
  return (performance.now() - t0) / reps;
}

// Elementwise: c = a + b reads 8 bytes and writes 4 per element.
console.log("\nelementwise add");
for (const n of quick ? [1 << 16, 1 << 20] : [1 << 20, 1 << 24, 1 << 26]) {
  const a = tensor(new Float32Array(n), [n]);
  const b = tensor(new Float32Array(n), [n]);
  const ms = await time(() => add(a, b).dispose(), quick ? 5 : 50);
  console.log(
    `  n=${n.toString().padStart(9)}  ${ms.toFixed(3)} ms  ${(12 * n / ms / 1e6).toFixed(1)} GB/s`,
  );
  a.dispose();
  b.dispose();
}

// Dispatch overhead: many tiny dispatches recorded in one pass, one submit.
const small = tensor([1, 2, 3, 4], [4]);
const count = quick ? 500 : 10000;
const ms = await time(() => {
  for (let i = 0; i < count; i++) mulScalar(small, 1.0001).dispose();
}, 3);
console.log(
  `\ndispatch overhead: ${(1000 * ms / count).toFixed(1)} us per dispatch (${count} in one pass)`,
);

// Training step of a GPT at a small and a JOWA-like width.
console.log("\nGPT training step (forward + backward + AdamW)");
const configs = quick
  ? [{ layers: 2, d: 32, heads: 2, B: 8, T: 32 }]
  : [{ layers: 2, d: 128, heads: 4, B: 32, T: 128 }, {
    layers: 4,
    d: 512,
    heads: 8,
    B: 64,
    T: 296,
  }];
for (const c of configs) {
  const model = new Gpt({
    vocab: 2048,
    context: c.T,
    layers: c.layers,
    d: c.d,
    heads: c.heads,
    dropout: 0.1,
    seed: 1,
  });
  const opt = new AdamW(model.parameters(), { lr: 1e-4, maxGradNorm: 1 });
  const ids = tensor(Int32Array.from({ length: c.B * c.T }, (_, i) => (i * 7919) % 2048), [
    c.B,
    c.T,
  ], "i32");
  let step = 0;
  const stepMs = await time(() => {
    const l = tidy(() => {
      const l = model.loss(ids, ids, undefined, ++step);
      opt.zeroGrad();
      backward(l);
      opt.update();
      return l;
    });
    l.dispose();
  }, quick ? 3 : 10);
  const tokens = c.B * c.T;
  console.log(
    `  layers ${c.layers} d ${c.d} batch ${c.B}x${c.T}: ${stepMs.toFixed(1)} ms/step, ` +
      `${(tokens / stepMs * 1000).toFixed(0)} tokens/s, ${model.parameterCount()} params`,
  );
}
