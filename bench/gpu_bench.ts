/**
 * The GPU acceptance figures (issue 12; `.gpu/acceptance.sh` compares them with PyTorch's
 * `torch_reference.py` on the same machine), measured warm on whatever adapter it finds:
 *
 * - `matmul_4096_fp32`: TFLOP/s of a 4096^3 f32 matmul through the engine's `matmul` op;
 * - `train_40M_fp32`, `train_150M_fp32`: ms per stage-2 training step at batch 64 x 296 tokens
 *   (train/world_step.ts `worldActionStep` with the joint loss: world CE + C51 TD + CQL, forward,
 *   backward, AdamW with clipping; as `deno task pretrain` runs it);
 * - `train_40M_f16`, `train_150M_f16`: the same with `--precision f16` (f16 weight copies and
 *   f16-rounded operands in the products, f32 accumulation, loss scaling; needs shader-f16);
 * - `plan_150M_n1`, `plan_150M_n16`: ms per environment step of the eval/ planner (KV-cached beam
 *   search, H = 2, K = 4, a 6-timestep window, one readback) with 1 and 16 environments;
 *   `plan_150M_n1_layer5`: the 1-environment step with the 5-dispatch decode layer instead of
 *   the compact 3-dispatch default (models/world_action/kv_cache.ts `decodeDefaults`);
 *   `plan_150M_n1_f16`: the 1-environment step as `eval --precision f16` runs it.
 *
 * Training steps and planning calls run as `pretrain` and `eval` run them: captured once and
 * replayed (train/captured_world_step.ts, eval/captured_planner.ts). With `--profile FILE` (or
 * the variable JOWA_GPU_PROFILE=FILE, so that `.gpu/acceptance.sh` can ask for it), one more
 * replayed step of each case runs with a timestamped pass per dispatch and the GPU time per
 * kernel is written to FILE as JSON and its largest rows printed (kernels/core/gpu_profiler.ts).
 *
 * `--quick` runs small shapes so CI can check that it runs (keys `matmul_512_fp32`,
 * `train_tiny_fp32` and `train_tiny_f16` at batch 4 and `plan_tiny_n1`, as torch_reference.py's quick mode). The JSON
 * holds those keys (ms, TFLOP/s for matmul; null for a case that failed) and `device`; it is
 * rewritten after every case, so a run cut by a timeout keeps what it measured.
 *
 *   deno task bench gpu [--json FILE] [--quick] [--profile FILE]
 *
 * @module
 */
import { benchArgs } from "./_cli.ts";
import { describeAdapter } from "../kernels/core/device.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { matmul } from "../kernels/ops/mod.ts";
import { GpuProfiler, type KernelTime } from "../kernels/core/gpu_profiler.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { type ConfigName, worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { worldBatchArrays } from "../train/world_batch.ts";
import { captureWorldActionStep } from "../train/captured_world_step.ts";
import { capturePlanner } from "../eval/captured_planner.ts";
import { windowTimesteps } from "../eval/context_history.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { f16Candidates, F16Shadows } from "../kernels/nn/f16_shadow.ts";
import { decodeDefaults } from "../models/world_action/kv_cache.ts";
import { randomPlanningContext, randomSegmentBatch } from "./_bench_data.ts";

const HELP = `gpu_bench — the GPU acceptance figures (compare with .gpu/torch_reference.py)

  deno task bench gpu [--json FILE] [--quick] [--profile FILE]

  --json FILE   also write the figures as JSON (keys matmul_4096_fp32 in TFLOP/s,
                train_40M_fp32, train_150M_fp32, train_40M_f16, train_150M_f16, plan_150M_n1,
                plan_150M_n16, plan_150M_n1_layer5, plan_150M_n1_f16 in ms, device)
  --quick       small shapes for CPU adapters (matmul_512_fp32, train_tiny_fp32, train_tiny_f16,
                plan_tiny_n1)
  --profile FILE  GPU time per kernel of one more step of each case (timestamp queries), as
                JSON (default: the variable JOWA_GPU_PROFILE)
  --help        this text`;

const values = benchArgs("gpu_bench", HELP, {
  json: { type: "string" },
  quick: { type: "boolean", default: false },
  profile: { type: "string" },
  help: { type: "boolean", default: false },
});
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

/** TFLOP/s of an n^3 f32 matmul (warm >= 1 s, `reps` timed, in one stream of submits). */
async function matmulTflops(n: number, reps: number): Promise<number> {
  const fill = (seed: number) =>
    Float32Array.from({ length: n * n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.5);
  const a = tensor(fill(1), [n, n]);
  const b = tensor(fill(2), [n, n]);
  const once = async () => {
    tidy(() => matmul(a, b));
    await rt.flush();
  };
  try {
    // GPU clocks ramp up under load: on an H200 this 4096^3 matmul took 9.1 ms per submit right
    // after compiling and 4.2 ms after 1.5 s of load (bench/kernel_sweep_bench.ts). Warm for
    // about a second (at least 10 calls) before timing.
    const w0 = performance.now();
    do {
      for (let i = 0; i < 10; i++) await once();
      await rt.sync();
    } while (performance.now() - w0 < 1000);
    const ms = await timed(once, 3, reps);
    return 2 * n ** 3 / (ms / 1e3) / 1e12;
  } finally {
    a.dispose();
    b.dispose();
  }
}

/** GPU time per kernel of each profiled case (`--profile`). */
const profiles: Record<string, { dispatches: number; gpuMs: number; kernels: KernelTime[] }> = {};
const profileFile = values.profile ?? Deno.env.get("JOWA_GPU_PROFILE");
const canProfile = rt.device.features.has("timestamp-query");
if (profileFile && !canProfile) console.error("--profile: the adapter has no timestamp-query");

/** Run `step` once more with a timestamped pass per dispatch; print and save the profile. */
async function profile(key: string, step: () => Promise<void>): Promise<void> {
  if (!profileFile || !canProfile) return;
  await rt.sync();
  const profiler = new GpuProfiler(rt.device);
  rt.profiler = profiler;
  try {
    await step();
    await rt.sync();
  } finally {
    rt.profiler = null;
  }
  const dispatches = profiler.dispatches;
  const kernels = await profiler.report();
  const gpuMs = kernels.reduce((s, k) => s + k.ms, 0);
  profiles[key] = { dispatches, gpuMs, kernels };
  Deno.writeTextFileSync(profileFile, JSON.stringify(profiles, null, 1) + "\n");
  console.log(
    `  ${key}: ${dispatches} dispatches, ${gpuMs.toFixed(2)} ms of kernel time; largest:`,
  );
  for (const k of kernels.slice(0, 12)) {
    console.log(
      `    ${k.ms.toFixed(3).padStart(9)} ms ${String(k.count).padStart(5)}x  ${k.label}`,
    );
  }
}

/**
 * ms per stage-2 training step of `name` at batch B, captured and replayed as `pretrain` runs
 * it (warm 3, 1 quick; `reps` timed).
 */
async function trainMs(name: ConfigName, B: number, reps: number, f16 = false): Promise<number> {
  const cfg = worldActionConfig(name);
  const model = new WorldActionModel(cfg);
  // f16: `--precision f16` (f16 weight copies, f32 accumulation, dynamic loss scaling).
  const opt = new AdamW(model.parameters(), {
    lr: 5e-5,
    weightDecay: 0.01,
    maxGradNorm: 1,
    mixedPrecision: f16,
  });
  const step = captureWorldActionStep(model, opt, { joint: true });
  const arrays = [0, 1].map((k) =>
    worldBatchArrays(randomSegmentBatch(B, cfg.timesteps, cfg.obsVocab, k))
  );
  let k = 0;
  let last: Tensor | null = null;
  // A replay's outputs are views of the capture's buffers: nothing to dispose per step.
  const once = async () => {
    last = tidy(() => step(arrays[k % 2], k++).total);
    await rt.flush();
  };
  try {
    const ms = await timed(once, 3, reps);
    const [loss] = await readAll([last!]);
    if (!Number.isFinite(loss[0])) throw new Error(`non-finite loss ${loss[0]}`);
    for (const f of step.stats().fallbacks) console.log(`  (ran eagerly: ${f})`);
    await profile(`train_${name}${f16 ? "_f16" : ""}`, once);
    return ms;
  } finally {
    step.dispose();
    opt.dispose();
    for (const p of model.parameters()) p.dispose();
  }
}

/**
 * ms per environment step of the planner (H 2, K 4, full window) for N environments,
 * captured and replayed as `eval` runs it: past tokens, tasks and valid actions from the host,
 * the current observation's tokens on the GPU, one readback of the decisions.
 */
async function planMs(name: ConfigName, N: number, reps: number, f16 = false): Promise<number> {
  const cfg = worldActionConfig(name);
  const model = new WorldActionModel(cfg).eval();
  // f16: as `eval --precision f16` (f16 weight copies in the products, an f16 KV cache).
  if (f16) new F16Shadows(f16Candidates(model.parameters()));
  const H = 2, K = 4;
  const plan = capturePlanner(
    new WamPlanningModel(model, { cacheDtype: f16 ? "f16" : "f32" }),
    { horizon: H, beamWidth: K },
  );
  const w = windowTimesteps(cfg.timesteps, H); // 6, torch_reference.py's window
  const O = cfg.obsTokens;
  const toks = randomPlanningContext(N, w, O, cfg.obsVocab);
  const t = toks.length / N, pastLen = t - O;
  const past = new Int32Array(N * pastLen), cur = new Int32Array(N * O);
  for (let n = 0; n < N; n++) {
    past.set(toks.subarray(n * t, n * t + pastLen), n * pastLen);
    cur.set(toks.subarray(n * t + pastLen, (n + 1) * t), n * O);
  }
  const tasks = new Int32Array(N).fill(39);
  const valid = Float32Array.from(
    { length: N * cfg.actions },
    (_, i) => i % cfg.actions < 9 ? 1 : 0,
  );
  // Each step ends with its one readback (the decision), as the agent does.
  const once = async () => {
    const current = tensor(cur, [N, O], "i32");
    const a = tidy(() => plan({ current, past, tasks, valid, keepPaths: false }).actions);
    current.dispose();
    await readAll([a]);
  };
  try {
    const ms = await timed(once, 3, reps);
    for (const f of plan.stats().fallbacks) console.log(`  (ran eagerly: ${f})`);
    await profile(`plan_${name}_n${N}${f16 ? "_f16" : ""}`, once);
    return ms;
  } finally {
    plan.dispose();
    for (const p of model.parameters()) p.dispose();
  }
}

if (quick) {
  await figure("matmul_512_fp32", () => matmulTflops(512, 3), "TFLOP/s");
  // Few repetitions: CI's 2-core machine is often loaded.
  await figure("train_tiny_fp32", () => trainMs("tiny", 4, 2), "ms/step");
  if (rt.ctx.hasF16) await figure("train_tiny_f16", () => trainMs("tiny", 4, 2, true), "ms/step");
  await figure("plan_tiny_n1", () => planMs("tiny", 1, 2), "ms/env step");
} else {
  await figure("matmul_4096_fp32", () => matmulTflops(4096, 20), "TFLOP/s");
  for (const size of ["40M", "150M"] as const) {
    await figure(`train_${size}_fp32`, () => trainMs(size, 64, 10), "ms/step");
  }
  for (const N of [1, 16]) {
    await figure(`plan_150M_n${N}`, () => planMs("150M", N, 10), "ms/env step");
  }
  // Last: a run cut by its time limit keeps the f32 figures.
  for (const size of ["40M", "150M"] as const) {
    if (!rt.ctx.hasF16) break; // no shader-f16: no f16 figures
    await figure(`train_${size}_f16`, () => trainMs(size, 64, 10, true), "ms/step");
  }
  // After the acceptance figures: the 1-environment step with the 5-dispatch decode layer
  // instead of the compact 3-dispatch default (kv_cache.ts decodeDefaults.compactLayer).
  const layer = decodeDefaults.compactLayer;
  decodeDefaults.compactLayer = false;
  await figure("plan_150M_n1_layer5", () => planMs("150M", 1, 10), "ms/env step");
  decodeDefaults.compactLayer = layer;
  if (rt.ctx.hasF16) {
    await figure("plan_150M_n1_f16", () => planMs("150M", 1, 10, true), "ms/env step");
  }
}
if (values.json) console.log(`wrote ${values.json}`);
if (Object.values(out).some((v) => v === null)) Deno.exit(1);
