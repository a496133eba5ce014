/**
 * Fine-tuning throughput: steps/s of the two kinds of `deno task finetune` step on random
 * token segments (the tokenizer is left out: a token store's run, or add the tokenizer
 * step's cost from tokenizer_bench):
 *
 * - `real`: stage 1, the joint loss with CQL on `batch` real segments (train/world_step.ts);
 * - `synth`: stage 2, planning synthesis (beam search H x K from the real contexts of the
 *   `batch - synthetic` real segments, one readback; train/synthesis.ts), the replay-buffer
 *   sample, and the COMBO step on the mixed batch (train/finetune_losses.ts).
 *
 * The cost of N steps is N / (steps/s): e.g. the paper's 3k real + 7k synthesis steps.
 *
 *   deno task bench finetune [-- --quick] [-- --configs tiny,40M --batch 32 --synthetic 8]
 */
import { parseArgs } from "node:util";
import { describeAdapter, initRuntime, readAll, type Tensor, tensor, tidy } from "../mod.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { type ConfigName, worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { defaultValidActions, worldBatchArrays } from "../train/world_batch.ts";
import { worldActionStep } from "../train/world_step.ts";
import { synthesize } from "../train/synthesis.ts";
import { SyntheticBuffer } from "../train/synthetic_buffer.ts";
import { mixedBatch } from "../train/finetune_batch.ts";
import { comboStep } from "../train/finetune_losses.ts";
import type { SegmentBatch } from "../offline/mod.ts";
import { slice } from "../kernels/ops/mod.ts";

const HELP = `finetune_bench — fine-tuning steps/s, real-data steps and synthesis + COMBO steps

  --quick          tiny config, batch 4 (3 real + 1 synthetic), 3 timed steps (lavapipe)
  --configs LIST   world-action configs (default tiny,40M)
  --batch N        segments per step (default 32, the paper's)
  --synthetic N    synthetic segments of a stage-2 batch (default 8)
  --horizon N, --beam-width N   synthesis planner (default 2, 2)
  --steps N        timed steps per case (default 10)
  --help           this text`;

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    configs: { type: "string" },
    batch: { type: "string" },
    synthetic: { type: "string" },
    horizon: { type: "string" },
    "beam-width": { type: "string" },
    steps: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const q = values.quick;
const configs = (values.configs ?? (q ? "tiny" : "tiny,40M")).split(",") as ConfigName[];
const B = Number(values.batch ?? (q ? 4 : 32));
const S = Number(values.synthetic ?? (q ? 1 : 8));
const H = Number(values.horizon ?? 2), K = Number(values["beam-width"] ?? 2);
const steps = Number(values.steps ?? (q ? 3 : 10));
for (const c of configs) {
  if (!["tiny", "40M", "70M", "150M"].includes(c)) {
    console.error(`error: unknown config '${c}'`);
    Deno.exit(2);
  }
}
if (![B, S, H, K, steps].every((n) => Number.isInteger(n) && n >= 1) || S >= B) {
  console.error("error: positive integers expected, and --synthetic below --batch");
  Deno.exit(2);
}

const rt = await initRuntime();
console.log(`adapter: ${describeAdapter(rt.ctx)}`);
const PONG = 39;
const acts = defaultValidActions(PONG);

function randomBatch(n: number, L: number, vocab: number, seed: number): SegmentBatch {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return {
    index: seed,
    batchSize: n,
    segmentLength: L,
    form: "tokens",
    tokens: Uint16Array.from({ length: n * L * 36 }, () => Math.floor(rand() * vocab)),
    actions: Int32Array.from({ length: n * L }, () => acts[Math.floor(rand() * acts.length)]),
    rewards: Float32Array.from({ length: n * L }, () => Math.floor(rand() * 3) - 1),
    terminals: new Uint8Array(n * L),
    mask: new Uint8Array(n * L).fill(1),
    taskIds: new Int32Array(n).fill(PONG),
    gameIndex: new Int32Array(n),
    starts: new Float64Array(n),
  };
}

console.log(`\nbatch ${B} (stage 2: ${B - S} real + ${S} synthetic), synthesis H ${H} K ${K}`);
console.log("config  step    ms/step  steps/s");
for (const name of configs) {
  const cfg = worldActionConfig(name);
  const model = new WorldActionModel(cfg);
  const opt = new AdamW(model.parameters(), { lr: 5e-5, weightDecay: 0.01, maxGradNorm: 1 });
  const L = cfg.timesteps, C = L - H, P = cfg.obsTokens, A = cfg.actions;
  const weights = { beta: 0.1, alpha: 0.1, gamma: 0.99 };
  const buffer = new SyntheticBuffer(1000, L, P);
  const valid = new Float32Array((B - S) * A);
  for (let i = 0; i < B - S; i++) for (const a of acts) valid[i * A + a] = 1;
  let last: Tensor | null = null;
  const real = async (k: number) => {
    const arrays = worldBatchArrays(randomBatch(B, L, cfg.obsVocab, k));
    last?.dispose();
    last = tidy(() => worldActionStep(model, opt, arrays, { joint: true, stepSeed: k }).total);
    opt.zeroGrad();
    await rt.flush();
  };
  const synth = async (k: number) => {
    const b = randomBatch(B - S, L, cfg.obsVocab, k);
    const n = B - S;
    const a = new Int32Array(n * (C - 1)), r = new Float32Array(n * (C - 1));
    for (let i = 0; i < n; i++) {
      for (let s = 0; s < C - 1; s++) a[i * (C - 1) + s] = b.actions[i * L + H + s];
    }
    // The real context: the last C observations of each segment.
    const ctx = tidy(() => slice(tensor(Int32Array.from(b.tokens!), [n, L, P], "i32"), 1, H, L));
    const seg = await synthesize(new WamPlanningModel(model), {
      obs: ctx,
      actions: a,
      rewards: r,
      taskIds: new Int32Array(n).fill(PONG),
      valid,
    }, { horizon: H, beamWidth: K, gamma: 0.99 });
    ctx.dispose();
    model.train();
    model.targetQ.eval();
    buffer.add(seg);
    const m = mixedBatch(b, buffer.sample(S, 0, k));
    last?.dispose();
    last = tidy(() => comboStep(model, opt, m, { stepSeed: k, weights }).total);
    opt.zeroGrad();
    await rt.flush();
  };
  for (const [label, fn] of [["real", real], ["synth", synth]] as const) {
    try {
      for (let k = 0; k < 2; k++) await fn(k); // compile and warm the pool
      await rt.sync();
      const t0 = performance.now();
      for (let k = 0; k < steps; k++) await fn(k + 2);
      const [loss] = await readAll([last!]);
      const ms = (performance.now() - t0) / steps;
      console.log(
        `${name.padEnd(6)}  ${label.padEnd(6)}  ${ms.toFixed(1).padStart(7)}  ${
          (1000 / ms).toFixed(3).padStart(7)
        }` + (Number.isFinite(loss[0]) ? "" : "  (non-finite loss!)"),
      );
    } catch (e) {
      console.log(
        `${name.padEnd(6)}  ${label.padEnd(6)}  failed: ${(e as Error).message.split("\n")[0]}`,
      );
    }
  }
  (last as Tensor | null)?.dispose();
  opt.dispose();
  await rt.trim();
}
