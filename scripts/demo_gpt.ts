/**
 * The engine's demo: a tiny GPT learns to reverse sequences of digits, trained with AdamW on
 * whatever WebGPU adapter is present (a CPU adapter works; it takes a minute or two).
 *
 *   deno task demo [--steps 300] [--length 6] [--batch 32]
 */
import { parseArgs } from "node:util";
import { backward, describeAdapter, initRuntime, readAll, tensor, tidy } from "../mod.ts";
import { argmax } from "../kernels/ops/mod.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { Gpt } from "../models/world_action/transformer.ts";
import { StepProgress } from "../util/progress.ts";

const HELP = `deno task demo — train a tiny GPT to reverse digit sequences on WebGPU

Options:
  --steps N     training steps (default 300)
  --length N    digits per sequence (default 6)
  --batch N     sequences per step (default 32)
  --seed N      seed for data and initialization (default 1)
  --help        this text`;

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "300" },
    length: { type: "string", default: "6" },
    batch: { type: "string", default: "32" },
    seed: { type: "string", default: "1" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const int = (name: string, v: string, min: number) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    console.error(`error: --${name} must be an integer >= ${min}, got '${v}'`);
    Deno.exit(2);
  }
  return n;
};
const steps = int("steps", values.steps, 1);
const n = int("length", values.length, 1);
const batch = int("batch", values.batch, 1);
const seed = int("seed", values.seed, 0);

const rt = await initRuntime();
console.log(`adapter: ${describeAdapter(rt.ctx)}`);
const T = 2 * n;
const model = new Gpt({ vocab: 10, context: T, layers: 2, d: 32, heads: 2, dropout: 0, seed });
const opt = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01, maxGradNorm: 1 });
console.log(`model: ${model.parameterCount()} parameters, task: reverse ${n} digits`);

let state = seed * 7919 + 1;
const rand = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
/** Input: digits then their reverse; targets are the next token; only the reverse counts. */
function makeBatch() {
  const x = new Int32Array(batch * T);
  const y = new Int32Array(batch * T);
  const m = new Float32Array(batch * T);
  for (let b = 0; b < batch; b++) {
    const d = Array.from({ length: n }, () => Math.floor(rand() * 10));
    const seq = [...d, ...d.toReversed()];
    for (let t = 0; t < T; t++) {
      x[b * T + t] = seq[t];
      y[b * T + t] = seq[t + 1] ?? 0;
      m[b * T + t] = t >= n - 1 && t < T - 1 ? 1 : 0;
    }
  }
  return {
    x: tensor(x, [batch, T], "i32"),
    y: tensor(y, [batch, T], "i32"),
    m: tensor(m, [batch, T]),
  };
}

const bar = new StepProgress({ label: "train", total: steps });
const losses: number[] = [];
let pending: ReturnType<typeof tensor>[] = [];
for (let step = 1; step <= steps; step++) {
  const loss = tidy(() => {
    const { x, y, m } = makeBatch();
    const l = model.loss(x, y, m, step);
    opt.zeroGrad();
    backward(l);
    opt.update();
    return l;
  });
  pending.push(loss);
  // Read losses back in batches: a readback per step would stall the GPU.
  if (pending.length === 25 || step === steps) {
    const vals = await readAll(pending);
    pending.forEach((t) => t.dispose());
    pending = [];
    for (const v of vals) losses.push(v[0]);
    bar.update(step, { loss: losses.at(-1)! }, true);
  } else {
    await rt.flush();
  }
}
bar.finish({ loss: losses.at(-1)! });

// Greedy check on fresh sequences: teacher-forced predictions of the reversed half.
model.eval();
const { x, y, m } = makeBatch();
const pred = tidy(() => argmax(model.forward(x), 2));
const [p, yy, mm] = await readAll([pred, y, m]);
let right = 0;
let total = 0;
for (let i = 0; i < p.length; i++) {
  if (mm[i]) {
    total++;
    if (p[i] === yy[i]) right++;
  }
}
console.log(
  `final loss ${losses.at(-1)!.toFixed(4)}, reversal accuracy ${(100 * right / total).toFixed(1)}%`,
);
