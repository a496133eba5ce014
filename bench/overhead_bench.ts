/**
 * Host overhead of the engine: what a warm step records (dispatches, compute passes, submits,
 * writeBuffer uploads, bind groups created, pipelines compiled) and the host milliseconds it
 * takes to record it, for a training step (B = 2; stage 2 joint loss, and stage 1 world loss)
 * and a planning step (H = 2, K = 4; 1 and 16 environments) of the tiny, 40M and 150M
 * world-action configs. Plus `rawUsPerDispatch`: recording one dispatch with the bare WebGPU
 * API (one pipeline, one bind group, thousands of dispatches in one pass), so the engine's
 * cost reads as a ratio on a noisy machine; and `rawBoundUsPerDispatch`: the same with what a
 * model's dispatches bind (6 storage buffers per bind group, 600 distinct bind groups over 100
 * pipelines), whose extra cost is WebGPU's own validation at `encoder.finish()`. Each step's
 * `encodeMs` is the part of its host time spent inside `pass.end()` / `encoder.finish()`.
 *
 * Steps run in the runtime's dry-run mode: recorded exactly as a real step, never submitted
 * (a 150M step takes minutes on a CPU adapter), so counts are exact and times are host-only.
 *
 *   deno task bench overhead [-- --json FILE] [-- --quick] [-- --configs tiny,40M]
 *
 * JSON: {"rawUsPerDispatch": n, "<config>": {"train": {...}, "train_stage1": {...},
 * "train_replay": {...}, "train_stage1_replay": {...}, "plan_n1": {...}, "plan_n16": {...},
 * "plan_n1_replay": {...}, "plan_n16_replay": {...}}}, each object with dispatches, passes,
 * submits, uploads, bindGroupsCreated, pipelinesCompiled, hostMs, encodeMs. The `_replay` rows are the
 * same step captured once and replayed (kernels/core/capture.ts, train/captured_world_step.ts,
 * eval/captured_planner.ts).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { describeAdapter } from "../kernels/core/device.ts";
import { counterDelta, initRuntime, type RuntimeCounters } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { type ConfigName, worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { worldBatchArrays } from "../train/world_batch.ts";
import { worldActionStep } from "../train/world_step.ts";
import { captureWorldActionStep } from "../train/captured_world_step.ts";
import { beamSearch } from "../eval/beam_search.ts";
import { windowTimesteps } from "../eval/context_history.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { capturePlanner } from "../eval/captured_planner.ts";
import { decodeDefaults } from "../models/world_action/kv_cache.ts";
import { randomSegmentBatch } from "./_bench_data.ts";

const HELP = `overhead_bench — engine host cost per warm step (dry run: recorded, not submitted)

  --configs LIST   world-action configs (default tiny,40M,150M)
  --reps N         timed warm repetitions per case, median reported (default 3; --quick 1)
  --quick          tiny only, one repetition (CI smoke run)
  --json FILE      also write the results as JSON
  --help           this text`;

const { values } = parseArgs({
  options: {
    configs: { type: "string" },
    reps: { type: "string" },
    quick: { type: "boolean", default: false },
    json: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const configs = (values.configs ?? (values.quick ? "tiny" : "tiny,40M,150M")).split(",")
  .map((s) => s.trim()) as ConfigName[];
for (const c of configs) {
  if (!["tiny", "40M", "70M", "150M"].includes(c)) {
    console.error(`overhead_bench: unknown config '${c}' in --configs`);
    Deno.exit(2);
  }
}
const reps = Number(values.reps ?? (values.quick ? 1 : 3));
if (!Number.isInteger(reps) || reps < 1) {
  console.error("overhead_bench: --reps takes a positive integer");
  Deno.exit(2);
}

const rt = await initRuntime();
console.log(`adapter: ${describeAdapter(rt.ctx)}`);

/** Counters of one warm step plus its host milliseconds. */
export type StepCost = RuntimeCounters & { hostMs: number; encodeMs: number };

/**
 * Run `step` `warm` times (pipelines, pool; 3 for a captured step: eager, record, verify),
 * then `reps` times measured; median time.
 */
async function measure(
  step: () => Promise<void>,
  warm = 2,
): Promise<StepCost | { error: string }> {
  try {
    return await measureOrThrow(step, warm);
  } catch (e) {
    // E.g. a KV cache above the adapter's max storage binding (lavapipe: 128 MiB).
    return { error: (e as Error).message.split("\n")[0] };
  }
}

async function measureOrThrow(step: () => Promise<void>, warm: number): Promise<StepCost> {
  for (let i = 0; i < warm; i++) await step();
  const times: { host: number; encode: number }[] = [];
  let counts: RuntimeCounters | null = null;
  for (let i = 0; i < reps; i++) {
    const before = rt.counters(), encode0 = rt.encodeMs;
    const t0 = performance.now();
    await step();
    times.push({ host: performance.now() - t0, encode: rt.encodeMs - encode0 });
    counts ??= counterDelta(before, rt.counters());
  }
  times.sort((a, b) => a.host - b.host);
  const median = times[Math.floor(times.length / 2)];
  return {
    ...counts!,
    hostMs: Number(median.host.toFixed(3)),
    encodeMs: Number(median.encode.toFixed(3)),
  };
}

/**
 * Bare-API cost of recording one dispatch, in one pass: `bindings` storage buffers per bind
 * group, `groups` distinct bind groups over `pipelines` pipelines, used round-robin.
 */
function rawUsPerDispatch(bindings = 1, groups = 1, pipelines = 1): number {
  const device = rt.device;
  const decl = Array.from(
    { length: bindings },
    (_, i) => `@group(0) @binding(${i}) var<storage, read_write> x${i}: array<f32>;`,
  ).join("\n");
  const reads = Array.from({ length: bindings }, (_, i) => ` + x${i}[1]`).join("");
  const pipes = Array.from({ length: pipelines }, (_, p) =>
    device.createComputePipeline({
      layout: "auto",
      compute: {
        module: device.createShaderModule({
          code: `${decl}\n@compute @workgroup_size(1) fn main() { x0[0] = ${p}.0${reads}; }`,
        }),
        entryPoint: "main",
      },
    }));
  const buffers = Array.from(
    { length: Math.min(2000, groups * bindings) },
    () => device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE }),
  );
  const bindGroups = Array.from({ length: groups }, (_, g) =>
    device.createBindGroup({
      layout: pipes[g % pipelines].getBindGroupLayout(0),
      entries: Array.from({ length: bindings }, (_, i) => ({
        binding: i,
        resource: { buffer: buffers[(g * bindings + i) % buffers.length] },
      })),
    }));
  const n = 5000;
  const best: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let i = 0; i < n; i++) {
      const g = i % groups;
      pass.setPipeline(pipes[g % pipelines]);
      pass.setBindGroup(0, bindGroups[g]);
      pass.dispatchWorkgroups(1);
    }
    pass.end();
    enc.finish(); // recorded, not submitted: the same host work the engine's dry run does
    best.push((performance.now() - t0) * 1000 / n);
  }
  for (const b of buffers) b.destroy();
  return Number(Math.min(...best).toFixed(3));
}

const results: Record<string, unknown> = {
  rawUsPerDispatch: rawUsPerDispatch(),
  rawBoundUsPerDispatch: rawUsPerDispatch(6, 600, 100),
};
console.log(
  `raw WebGPU: ${results.rawUsPerDispatch} us per dispatch (one pipeline, one 1-buffer bind ` +
    `group); ${results.rawBoundUsPerDispatch} us with 6-buffer bind groups, 600 distinct, ` +
    "100 pipelines",
);
const row = (name: string, c: StepCost | { error: string }) =>
  "error" in c ? console.log(`| ${name} | failed: ${c.error} |`) : console.log(
    `| ${name} | ${c.dispatches} | ${c.passes} | ${c.submits} | ${c.uploads} | ` +
      `${c.bindGroupsCreated} | ${c.pipelinesCompiled} | ${c.hostMs.toFixed(1)} | ` +
      `${(1000 * c.hostMs / Math.max(1, c.dispatches)).toFixed(1)} | ` +
      `${(1000 * c.encodeMs / Math.max(1, c.dispatches)).toFixed(1)} |`,
  );
console.log("planning rows: the compact 3-dispatch decode layer, as on a GPU adapter");
console.log(
  "\n| step | dispatches | passes | submits | uploads | bind groups | pipelines | host ms | " +
    "us/dispatch | of which WebGPU finish |",
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");

rt.dryRun = true;
// Count the decode layer a GPU runs ("auto" takes the 5-dispatch one on a CPU adapter, where
// the compact kernels run slowly; a dry run executes nothing, so the choice costs nothing here).
const layerDefault = decodeDefaults.compactLayer;
decodeDefaults.compactLayer = true;
for (const name of configs) {
  const cfg = worldActionConfig(name);
  const model = new WorldActionModel(cfg);
  const out: Record<string, StepCost | { error: string }> = {};
  // Training: B = 2 segments of the config's window, joint (stage 2) and world-only (stage 1).
  const opt = new AdamW(model.parameters(), { lr: 5e-5, weightDecay: 0.01, maxGradNorm: 1 });
  const arrays = [0, 1].map((k) =>
    worldBatchArrays(randomSegmentBatch(2, cfg.timesteps, cfg.obsVocab, k))
  );
  for (const [key, joint] of [["train", true], ["train_stage1", false]] as const) {
    let k = 0;
    out[key] = await measure(async () => {
      const loss = tidy(() =>
        worldActionStep(model, opt, arrays[k % 2], { joint, stepSeed: k++ }).total
      );
      opt.zeroGrad();
      await readAll([loss]); // the trainer reads the losses back once per step
      loss.dispose();
    });
    row(`${name} ${key}`, out[key]);
    // The same step captured and replayed (train/captured_world_step.ts).
    const step = captureWorldActionStep(model, opt, { joint });
    out[`${key}_replay`] = await measure(async () => {
      const loss = tidy(() => step(arrays[k % 2], k++).total);
      await readAll([loss]);
      loss.dispose();
    }, 3);
    row(`${name} ${key}_replay`, out[`${key}_replay`]);
    // A replay row that silently ran eagerly would read as a slow replay: say why it did.
    for (const f of step.stats().fallbacks) console.log(`  (replay fell back to eager: ${f})`);
    step.dispose();
  }
  opt.dispose();
  // Planning: prefill of the full window + H = 2, K = 4, one readback.
  const planner = new WamPlanningModel(model);
  const H = 2, K = 4;
  const t = windowTimesteps(cfg.timesteps, H) * (cfg.obsTokens + 1) - 1;
  for (const N of [1, 16]) {
    const toks = Int32Array.from({ length: N * t }, (_, i) => {
      const off = (i % t) % (cfg.obsTokens + 1);
      return off === cfg.obsTokens ? i % 6 : (i * 7919) % cfg.obsVocab;
    });
    const valid = Array.from({ length: N * cfg.actions }, (_, i) => (i % cfg.actions < 9 ? 1 : 0));
    const key = `plan_n${N}`;
    out[key] = await measure(async () => {
      const a: Tensor = tidy(() =>
        beamSearch(planner, {
          tokens: tensor(toks, [N, t], "i32"),
          tasks: tensor(new Int32Array(N).fill(39), [N], "i32"),
          valid: tensor(valid, [N, cfg.actions]),
        }, { horizon: H, beamWidth: K }).actions
      );
      await readAll([a]);
      a.dispose();
    });
    row(`${name} ${key}`, out[key]);
    // The same planning step captured and replayed (eval/captured_planner.ts): the past
    // tokens, tasks and valid masks from the host, the current tokens on the GPU (as the
    // tokenizer leaves them).
    const plan = capturePlanner(planner, { horizon: H, beamWidth: K });
    const O = cfg.obsTokens, pastLen = t - O;
    const past = new Int32Array(N * pastLen), cur = new Int32Array(N * O);
    for (let n = 0; n < N; n++) {
      past.set(toks.subarray(n * t, n * t + pastLen), n * pastLen);
      cur.set(toks.subarray(n * t + pastLen, (n + 1) * t), n * O);
    }
    const tasks = new Int32Array(N).fill(39), validF = Float32Array.from(valid);
    out[`${key}_replay`] = await measure(async () => {
      const current = tensor(cur, [N, O], "i32");
      const a = tidy(() => plan({ current, past, tasks, valid: validF, keepPaths: false }).actions);
      current.dispose();
      await readAll([a]);
      a.dispose();
    }, 3);
    row(`${name} ${key}_replay`, out[`${key}_replay`]);
    for (const f of plan.stats().fallbacks) console.log(`  (replay fell back to eager: ${f})`);
    plan.dispose();
  }
  for (const p of model.parameters()) p.dispose();
  await rt.trim();
  results[name] = out;
}
rt.dryRun = false;
decodeDefaults.compactLayer = layerDefault;

if (values.json) {
  Deno.writeTextFileSync(values.json, JSON.stringify(results, null, 2) + "\n");
  console.log(`\nwrote ${values.json}`);
}
