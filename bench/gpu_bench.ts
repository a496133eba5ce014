/**
 * The GPU acceptance figures (issue 12; `.gpu/acceptance.sh` compares them with PyTorch's
 * `torch_reference.py` on the same machine), measured warm on whatever adapter it finds:
 *
 * - `matmul_4096_fp32`: TFLOP/s of a 4096^3 f32 matmul through the engine's `matmul` op;
 * - `train_40M_fp32`, `train_150M_fp32`: ms per stage-2 training step at batch 64 x 296 tokens
 *   (train/world_step.ts `worldActionStep` with the joint loss: world CE + C51 TD + CQL, forward,
 *   backward, AdamW with clipping; as `deno task pretrain` runs it);
 * - `plan_150M_n1`, `plan_150M_n16`: ms per environment step of the eval/ planner (KV-cached beam
 *   search, H = 2, K = 4, a 6-timestep window, one readback) with 1 and 16 environments.
 *
 * `--quick` runs small shapes so CI can check that it runs (keys `matmul_512_fp32`,
 * `train_tiny_fp32` at batch 4 and `plan_tiny_n1`, as torch_reference.py's quick mode). The JSON
 * holds those keys (ms, TFLOP/s for matmul; null for a case that failed) and `device`; it is
 * rewritten after every case, so a run cut by a timeout keeps what it measured.
 *
 *   deno task bench gpu [--json FILE] [--quick]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { describeAdapter } from "../kernels/core/device.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { matmul } from "../kernels/ops/mod.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { type ConfigName, worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { worldBatchArrays } from "../train/world_batch.ts";
import { worldActionStep } from "../train/world_step.ts";
import { beamSearch } from "../eval/beam_search.ts";
import { windowTimesteps } from "../eval/context_history.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { randomPlanningContext, randomSegmentBatch } from "./_bench_data.ts";

const HELP = `gpu_bench — the GPU acceptance figures (compare with .gpu/torch_reference.py)

  deno task bench gpu [--json FILE] [--quick]

  --json FILE   also write the figures as JSON (keys matmul_4096_fp32 in TFLOP/s,
                train_40M_fp32, train_150M_fp32, plan_150M_n1, plan_150M_n16 in ms, device)
  --quick       small shapes for CPU adapters (matmul_512_fp32, train_tiny_fp32, plan_tiny_n1)
  --help        this text`;

function parse() {
  try {
    return parseArgs({
      options: {
        json: { type: "string" },
        quick: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    }).values;
  } catch (e) {
    console.error(`gpu_bench: ${(e as Error).message}\n\n${HELP}`);
    Deno.exit(2);
  }
}
const values = parse();
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const quick = values.quick;
const rt = await initRuntime();
const out: Record<string, number | string | null> = { device: describeAdapter(rt.ctx) };
console.log(`adapter: ${out.device}`);

function save(): void {
  if (values.json) Deno.writeTextFileSync(values.json, JSON.stringify(out, null, 1) + "\n");
}
save();

/** Runs a case; its figure (rounded), or null with the error printed. */
async function figure(key: string, fn: () => Promise<number>, unit: string): Promise<void> {
  try {
    const v = await fn();
    out[key] = Number(v.toPrecision(6));
    console.log(`${key.padEnd(18)} ${v.toPrecision(4)} ${unit}`);
  } catch (e) {
    out[key] = null;
    console.error(`${key}: failed: ${(e as Error).message.split("\n")[0]}`);
  }
  save();
  await rt.trim();
}

/** Mean ms of `reps` calls after `warm` calls, as torch_reference.py's `timed`. */
async function timed(step: () => Promise<void>, warm: number, reps: number): Promise<number> {
  for (let i = 0; i < warm; i++) await step();
  await rt.sync();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await step();
  await rt.sync();
  return (performance.now() - t0) / reps;
}

/** TFLOP/s of an n^3 f32 matmul (warm 3, `reps` timed, in one stream of submits). */
async function matmulTflops(n: number, reps: number): Promise<number> {
  const fill = (seed: number) =>
    Float32Array.from({ length: n * n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.5);
  const a = tensor(fill(1), [n, n]);
  const b = tensor(fill(2), [n, n]);
  try {
    const ms = await timed(
      async () => {
        tidy(() => matmul(a, b));
        await rt.flush();
      },
      3,
      reps,
    );
    return 2 * n ** 3 / (ms / 1e3) / 1e12;
  } finally {
    a.dispose();
    b.dispose();
  }
}

/** ms per stage-2 training step of `name` at batch B (warm 3, 1 quick; `reps` timed). */
async function trainMs(name: ConfigName, B: number, reps: number): Promise<number> {
  const cfg = worldActionConfig(name);
  const model = new WorldActionModel(cfg);
  const opt = new AdamW(model.parameters(), { lr: 5e-5, weightDecay: 0.01, maxGradNorm: 1 });
  const arrays = [0, 1].map((k) =>
    worldBatchArrays(randomSegmentBatch(B, cfg.timesteps, cfg.obsVocab, k))
  );
  let k = 0;
  let last: Tensor | null = null;
  try {
    const ms = await timed(
      async () => {
        last?.dispose();
        last = tidy(() =>
          worldActionStep(model, opt, arrays[k % 2], { joint: true, stepSeed: k++ }).total
        );
        await rt.flush();
      },
      quick ? 1 : 3,
      reps,
    );
    const [loss] = await readAll([last!]);
    if (!Number.isFinite(loss[0])) throw new Error(`non-finite loss ${loss[0]}`);
    return ms;
  } finally {
    (last as Tensor | null)?.dispose();
    opt.dispose();
    for (const p of model.parameters()) p.dispose();
  }
}

/** ms per environment step of the planner (H 2, K 4, full window) for N environments. */
async function planMs(name: ConfigName, N: number, reps: number): Promise<number> {
  const cfg = worldActionConfig(name);
  const model = new WorldActionModel(cfg).eval();
  const planner = new WamPlanningModel(model);
  const H = 2, K = 4;
  const w = windowTimesteps(cfg.timesteps, H); // 6, torch_reference.py's window
  const toks = randomPlanningContext(N, w, cfg.obsTokens, cfg.obsVocab);
  const t = toks.length / N;
  const valid = Array.from({ length: N * cfg.actions }, (_, i) => (i % cfg.actions < 9 ? 1 : 0));
  try {
    // Each step ends with its one readback (the decision), as the agent does.
    return await timed(
      async () => {
        const a = tidy(() =>
          beamSearch(planner, {
            tokens: tensor(toks, [N, t], "i32"),
            tasks: tensor(new Int32Array(N).fill(39), [N], "i32"),
            valid: tensor(valid, [N, cfg.actions]),
          }, { horizon: H, beamWidth: K }).actions
        );
        await readAll([a]);
        a.dispose();
      },
      quick ? 1 : 2,
      reps,
    );
  } finally {
    for (const p of model.parameters()) p.dispose();
  }
}

if (quick) {
  await figure("matmul_512_fp32", () => matmulTflops(512, 3), "TFLOP/s");
  // Few repetitions: CI's 2-core machine is often loaded.
  await figure("train_tiny_fp32", () => trainMs("tiny", 4, 2), "ms/step");
  await figure("plan_tiny_n1", () => planMs("tiny", 1, 2), "ms/env step");
} else {
  await figure("matmul_4096_fp32", () => matmulTflops(4096, 20), "TFLOP/s");
  for (const size of ["40M", "150M"] as const) {
    await figure(`train_${size}_fp32`, () => trainMs(size, 64, 10), "ms/step");
  }
  for (const N of [1, 16]) {
    await figure(`plan_150M_n${N}`, () => planMs("150M", N, 10), "ms/env step");
  }
}
if (values.json) console.log(`wrote ${values.json}`);
if (Object.values(out).some((v) => v === null)) Deno.exit(1);
