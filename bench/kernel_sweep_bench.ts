/**
 * Kernel sweep: GPU time of the big training kernels under candidate configurations, to pick
 * the tile table of kernels/codegen/matmul/plan.ts and the row blocks of layer norm's
 * weight/bias gradient (kernels/ops/norm.ts) from measurements instead of guesses.
 *
 * - `layerNorm.grad_wb` at 18944 x 512 and 18944 x 768 (JOWA-40M / 150M at batch 64 x 296) for
 *   several row-block counts (1 = the old single pass);
 * - the attention backward (dK/dV, dQ) of the JOWA-40M step, BH512 T296 D64 causal dropout
 *   packed qkv, under the planner's tiles and a few alternatives (bench/_attention_sweep.ts);
 * - matmul 4096^3 and the JOWA-40M training GEMMs (forward, input and weight gradients, with
 *   the flags training uses: B^T + bias, A^T + k-sum + split-K) under each candidate tile, next
 *   to what the planner picks ("plan"); 4096^3 also as the shape-generic (dynamic-M) plan where
 *   plan.ts has one, and once "cold" (wall clock of single submits right after compiling, as
 *   `deno task bench gpu` measures it) before a second of sustained load.
 *
 * Each configuration is compiled, run for 250 ms (clocks drop while the host compiles), then
 * `--iters` dispatches are recorded in one compute pass whose beginning and end are
 * timestamped (wall clock around the submit when the adapter lacks "timestamp-query"). Layer norm runs through the runtime with the per-dispatch
 * profiler (kernels/core/gpu_profiler.ts). Prints compact tables (ms per call, TFLOP/s); no
 * configuration is started once `--budget` seconds have passed.
 *
 *   deno task bench kernel_sweep [--quick] [--iters N] [--budget S] [--json FILE]
 *
 * @module
 */
import { benchArgs } from "./_cli.ts";
import { describeAdapter } from "../kernels/core/device.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { GpuProfiler } from "../kernels/core/gpu_profiler.ts";
import { tensor } from "../kernels/core/tensor.ts";
import { layerNormParamBlocks, layerNormParamGrads } from "../kernels/ops/norm.ts";
import {
  type MatmulPlan,
  type MatmulSpec,
  type MatmulTile,
  planMatmul,
} from "../kernels/codegen/matmul/plan.ts";
import { compileChecked } from "../tests/helpers/matmul_pipeline.ts";
import { sweepAttentionBackward } from "./_attention_sweep.ts";

const HELP = `kernel_sweep — GPU time of the training kernels under candidate configurations

  deno task bench kernel_sweep [--quick] [--iters N] [--budget S] [--json FILE]

  --quick      small shapes and two tiles (checks that it runs on a CPU adapter)
  --iters N    dispatches per timed pass (default 20; 2 with --quick)
  --budget S   start no configuration after S seconds (default 100)
  --json FILE  also write every row as JSON
  --help       this text`;

const values = benchArgs("kernel_sweep", HELP, {
  quick: { type: "boolean", default: false },
  iters: { type: "string" },
  budget: { type: "string", default: "100" },
  json: { type: "string" },
  help: { type: "boolean", default: false },
});
const quick = values.quick;
const iters = Number(values.iters ?? (quick ? 2 : 20));
const budgetS = Number(values.budget);
if (!Number.isInteger(iters) || iters < 1) {
  console.error(`kernel_sweep: --iters must be an integer >= 1, got ${values.iters}`);
  Deno.exit(2);
}
if (!(budgetS > 0)) {
  console.error(
    `kernel_sweep: --budget must be a positive number of seconds, got ${values.budget}`,
  );
  Deno.exit(2);
}

const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1e3;
const rt = await initRuntime();
const device = rt.device;
const limits = rt.ctx.limits;
const hasTimestamps = device.features.has("timestamp-query");
console.log(`adapter: ${describeAdapter(rt.ctx)}; timestamps ${hasTimestamps ? "yes" : "no"}`);
console.log(
  `limits: ${limits.maxComputeInvocationsPerWorkgroup} invocations, ` +
    `${limits.maxComputeWorkgroupStorageSize} B workgroup memory; ${iters} dispatches per pass`,
);

interface Row {
  kernel: string;
  config: string;
  ms: number | null;
  tflops?: number;
  note?: string;
}
const rows: Row[] = [];
function save(): void {
  if (values.json) Deno.writeTextFileSync(values.json, JSON.stringify(rows, null, 1) + "\n");
}

// ---------------------------------------------------------------- layer norm weight/bias grads

/** ms per layerNormParamGrads call (both passes) for each row-block count. */
async function sweepLayerNorm(R: number, C: number, blockList: number[]): Promise<void> {
  const kernel = `layerNorm.grad_wb ${R}x${C}`;
  console.log(`\n${kernel} (default ${layerNormParamBlocks(R, C)} row blocks)`);
  const data = new Float32Array(R * C);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 12.9898) * 0.5;
  const st = new Float32Array(2 * R);
  for (let r = 0; r < R; r++) st.set([0.01 * Math.sin(r), 1 + 0.1 * Math.cos(r)], 2 * r);
  const g = tensor(data, [R, C]), x = tensor(data.map((v) => v * 2 - 0.1), [R, C]);
  const stats = tensor(st, [R, 2]);
  const call = (blocks: number) => {
    for (const t of layerNormParamGrads(g, x, stats, C, R, blocks)) t.dispose();
  };
  try {
    for (const blocks of blockList) {
      if (elapsed() > budgetS) break;
      call(blocks);
      call(blocks);
      await rt.sync();
      let ms: number;
      if (hasTimestamps) {
        const profiler = new GpuProfiler(device);
        rt.profiler = profiler;
        try {
          for (let i = 0; i < iters; i++) call(blocks);
          await rt.sync();
        } finally {
          rt.profiler = null;
        }
        ms = (await profiler.report()).reduce((s, k) => s + k.ms, 0) / iters;
      } else {
        const w0 = performance.now();
        for (let i = 0; i < iters; i++) call(blocks);
        await rt.sync();
        ms = (performance.now() - w0) / iters;
      }
      const gbps = (2 * R * C * 4) / (ms / 1e3) / 1e9;
      rows.push({ kernel, config: `blocks ${blocks}`, ms });
      console.log(
        `  blocks ${String(blocks).padStart(4)}  ${ms.toFixed(4).padStart(9)} ms  ` +
          `${gbps.toFixed(0).padStart(6)} GB/s of g and x`,
      );
      save();
    }
  } finally {
    for (const t of [g, x, stats]) t.dispose();
    await rt.trim();
  }
}

// ------------------------------------------------------------------------------------ matmuls

/** Candidate tiles, most promising first (the budget may cut the tail). */
const TILES: [string, MatmulTile][] = [
  ["128x128x16/8x8", { TM: 128, TN: 128, TK: 16, RM: 8, RN: 8 }],
  ["128x128x8/8x8", { TM: 128, TN: 128, TK: 8, RM: 8, RN: 8 }],
  ["128x128x32/8x8", { TM: 128, TN: 128, TK: 32, RM: 8, RN: 8 }],
  ["256x128x8/8x8", { TM: 256, TN: 128, TK: 8, RM: 8, RN: 8 }],
  ["128x256x8/8x8", { TM: 128, TN: 256, TK: 8, RM: 8, RN: 8 }],
  ["128x64x16/8x8", { TM: 128, TN: 64, TK: 16, RM: 8, RN: 8 }],
  ["64x128x16/8x8", { TM: 64, TN: 128, TK: 16, RM: 8, RN: 8 }],
  ["128x128x16/16x8", { TM: 128, TN: 128, TK: 16, RM: 16, RN: 8 }],
  ["128x64x16/8x4", { TM: 128, TN: 64, TK: 16, RM: 8, RN: 4 }],
  ["64x64x16/8x8", { TM: 64, TN: 64, TK: 16, RM: 8, RN: 8 }],
];
const QUICK_TILES = TILES.filter(([n]) => n === "128x128x16/8x8" || n === "64x64x16/8x8");

function mm(
  M: number,
  N: number,
  K: number,
  flags: { tA?: boolean; tB?: boolean; bias?: boolean; sumA?: boolean } = {},
): MatmulSpec {
  const spec: MatmulSpec = {
    batch: 1,
    M,
    N,
    K,
    transA: !!flags.tA,
    transB: !!flags.tB,
    aBatchStride: 0,
    bBatchStride: 0,
    bias: !!flags.bias,
  };
  // Weight gradients run as training runs them: k-sum of A (the bias gradient), split "auto".
  if (flags.sumA) Object.assign(spec, { sumK: "a", splitK: "auto" });
  return spec;
}

/** JOWA-40M training GEMMs at batch 64 x 296 (18944 rows), largest GPU time first. */
const CASES: MatmulSpec[] = quick
  ? [
    mm(256, 256, 256),
    mm(300, 64, 96, { tB: true, bias: true }),
    mm(64, 96, 600, {
      tA: true,
      sumA: true,
    }),
  ]
  : [
    mm(4096, 4096, 4096),
    mm(18944, 512, 2048, { tB: true, bias: true }), // MLP down
    mm(18944, 512, 2048), // input gradient of MLP up
    mm(512, 2048, 18944, { tA: true, sumA: true }), // weight gradient of MLP up
    mm(2048, 512, 18944, { tA: true, sumA: true }), // weight gradient of MLP down
    mm(18944, 2048, 512, { tB: true, bias: true }), // MLP up
    mm(18944, 2048, 512), // input gradient of MLP down
    mm(1536, 512, 18944, { tA: true, sumA: true }), // weight gradient of QKV
    mm(18944, 1536, 512, { tB: true, bias: true }), // QKV
  ];

const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
const fillChunk = new Float32Array(1 << 22).map((_, i) => Math.sin(i * 12.9898) * 0.5);
/** Random contents: zeros would flatter the GPU's power budget. */
function randomBuffer(bytes: number): GPUBuffer {
  const buffer = device.createBuffer({ size: Math.max(16, bytes), usage });
  for (let off = 0; off < bytes; off += fillChunk.byteLength) {
    const n = Math.min(fillChunk.byteLength, bytes - off);
    device.queue.writeBuffer(buffer, off, fillChunk, 0, n / 4);
  }
  return buffer;
}
const scratchBuffer = (bytes: number) => device.createBuffer({ size: Math.max(16, bytes), usage });

/** A compiled plan with its bind groups, ready to encode. */
interface Runnable {
  encode(pass: GPUComputePassEncoder): void;
  release(): void;
}

/** Pipelines and bind groups of `plan` (bindings as planMatmul documents them). */
async function prepare(
  spec: MatmulSpec,
  plan: MatmulPlan,
  io: { a: GPUBuffer; b: GPUBuffer; c: GPUBuffer; bias: GPUBuffer; sum: GPUBuffer },
): Promise<Runnable> {
  const main = await compileChecked(device, plan.code, plan.label);
  const group = (p: GPUComputePipeline, res: (GPUBuffer | GPUBufferBinding)[]) =>
    device.createBindGroup({
      layout: p.getBindGroupLayout(0),
      entries: res.map((r, binding) => ({
        binding,
        resource: r instanceof GPUBuffer ? { buffer: r } : r,
      })),
    });
  const owned: GPUBuffer[] = [];
  if (!plan.splitK) {
    const res: GPUBuffer[] = [io.a, io.b, io.c];
    if (spec.bias) res.push(io.bias);
    if (spec.dynamicM) {
      const dims = device.createBuffer({
        size: 16,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      device.queue.writeBuffer(dims, 0, Uint32Array.of(spec.M, 0, 0, 0));
      owned.push(dims);
      res.push(dims);
    }
    if (spec.sumK) res.push(io.sum);
    const bg = group(main, res);
    return {
      encode(pass) {
        pass.setPipeline(main);
        pass.setBindGroup(0, bg);
        pass.dispatchWorkgroups(...plan.workgroups);
      },
      release: () => owned.forEach((b) => b.destroy()),
    };
  }
  const s = plan.splitK;
  const reduce = await compileChecked(device, s.reduce.code, s.reduce.label);
  const scratch = scratchBuffer(s.scratchBytes);
  owned.push(scratch);
  const sumScratch = spec.sumK ? scratchBuffer(s.sumScratchBytes) : null;
  if (sumScratch) owned.push(sumScratch);
  const bgMain = group(
    main,
    sumScratch ? [io.a, io.b, scratch, sumScratch] : [io.a, io.b, scratch],
  );
  const red: GPUBuffer[] = [scratch, io.c];
  if (spec.bias) red.push(io.bias);
  if (sumScratch) red.push(sumScratch, io.sum);
  const bgReduce = group(reduce, red);
  return {
    encode(pass) {
      pass.setPipeline(main);
      pass.setBindGroup(0, bgMain);
      pass.dispatchWorkgroups(...plan.workgroups);
      pass.setPipeline(reduce);
      pass.setBindGroup(0, bgReduce);
      pass.dispatchWorkgroups(...s.reduce.workgroups);
    },
    release: () => owned.forEach((b) => b.destroy()),
  };
}

const querySet = hasTimestamps ? device.createQuerySet({ type: "timestamp", count: 2 }) : null;
const resolveBuf = device.createBuffer({
  size: 16,
  usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
});
const readBuf = device.createBuffer({
  size: 16,
  usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
});

/** ms per call: `n` calls in one timestamped pass (wall clock without timestamps). */
async function timePass(r: Runnable, n: number): Promise<number> {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass(
    querySet
      ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }
      : {},
  );
  for (let i = 0; i < n; i++) r.encode(pass);
  pass.end();
  if (querySet) {
    enc.resolveQuerySet(querySet, 0, 2, resolveBuf, 0);
    enc.copyBufferToBuffer(resolveBuf, 0, readBuf, 0, 16);
  }
  const w0 = performance.now();
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
  const wall = (performance.now() - w0) / n;
  if (!querySet) return wall;
  await readBuf.mapAsync(GPUMapMode.READ);
  const [begin, end] = new BigUint64Array(readBuf.getMappedRange().slice(0));
  readBuf.unmap();
  return Number(end - begin) / 1e6 / n;
}

/** Wall-clock ms per call of single submits (3 warm, `reps` timed), as gpu_bench times it. */
async function timeSubmits(r: Runnable, reps: number): Promise<number> {
  const one = () => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    r.encode(pass);
    pass.end();
    device.queue.submit([enc.finish()]);
  };
  for (let i = 0; i < 3; i++) one();
  await device.queue.onSubmittedWorkDone();
  const w0 = performance.now();
  for (let i = 0; i < reps; i++) one();
  await device.queue.onSubmittedWorkDone();
  return (performance.now() - w0) / reps;
}

function tileName(plan: MatmulPlan): string {
  const t = plan.tile;
  const split = plan.splitK ? ` k/${plan.splitK.parts}` : "";
  return `${t.TM}x${t.TN}x${t.TK}/${t.RM}x${t.RN} ${plan.sharedBuffers}buf${split}`;
}

/** Every configuration of one GEMM; the 4096^3 case also cold and shape-generic. */
async function sweepMatmul(spec: MatmulSpec, first: boolean): Promise<void> {
  const flop = 2 * spec.M * spec.N * spec.K;
  const base = planMatmul(spec, limits);
  const kernel = base.label.replace(/ split\d+$/, "");
  console.log(`\n${kernel} (${(flop / 1e9).toFixed(1)} GFLOP)`);
  const sizes = base.bindingBytes;
  const io = {
    a: randomBuffer(sizes.a),
    b: randomBuffer(sizes.b),
    c: scratchBuffer(sizes.c),
    bias: randomBuffer(Math.max(16, sizes.bias)),
    sum: scratchBuffer(Math.max(16, 4 * (spec.sumK === "a" ? spec.M : spec.N))),
  };
  const configs: [string, MatmulSpec, MatmulTile | undefined][] = [["plan", spec, undefined]];
  const square = spec.M === spec.N && spec.N === spec.K && !spec.transA && !spec.transB;
  if (square) configs.push(["plan dynamicM", { ...spec, dynamicM: true }, undefined]);
  for (const [name, tile] of quick ? QUICK_TILES : TILES) configs.push([name, spec, tile]);
  if (spec.splitK === "auto") {
    // Other split counts with the planner's tile.
    const parts = base.splitK?.parts ?? 1;
    for (const p of (quick ? [1, 3] : [1, 2, 4, 8, 16]).filter((q) => q !== parts)) {
      configs.push([`plan k/${p}`, { ...spec, splitK: p }, base.tile]);
    }
  }
  try {
    for (const [name, cfgSpec, tile] of configs) {
      if (elapsed() > budgetS) {
        console.log(`  (budget of ${budgetS} s spent: the rest is skipped)`);
        break;
      }
      let r: Runnable | null = null;
      try {
        const plan = planMatmul(cfgSpec, limits, tile);
        const c0 = performance.now();
        r = await prepare(cfgSpec, plan, io);
        const compileS = (performance.now() - c0) / 1e3;
        if (first && name === "plan") {
          // As `deno task bench gpu` measures it: right after compiling, single submits.
          const cold = await timeSubmits(r, 20);
          const w0 = performance.now();
          while (performance.now() - w0 < 1500) await timePass(r, 10);
          const warm = await timeSubmits(r, 20);
          const tf = (ms: number) => (flop / (ms / 1e3) / 1e12).toFixed(1);
          console.log(
            `  single submits, wall clock: cold ${cold.toFixed(3)} ms (${tf(cold)} TFLOP/s), ` +
              `after 1.5 s of load ${warm.toFixed(3)} ms (${tf(warm)} TFLOP/s)`,
          );
          rows.push({ kernel, config: "plan cold submits", ms: cold, tflops: flop / cold / 1e9 });
          rows.push({ kernel, config: "plan warm submits", ms: warm, tflops: flop / warm / 1e9 });
        }
        // Warm by time, not by count: the GPU's clocks drop while the host compiles or fills
        // buffers, and an H200 needed about a second of load to reach full speed.
        const w1 = performance.now();
        do await timePass(r, 2); while (performance.now() - w1 < (quick ? 0 : 250));
        const ms = await timePass(r, iters);
        const tflops = flop / (ms / 1e3) / 1e12;
        rows.push({ kernel, config: `${name}: ${tileName(plan)}`, ms, tflops });
        console.log(
          `  ${name.padEnd(16)} ${tileName(plan).padEnd(26)} ${ms.toFixed(3).padStart(8)} ms ` +
            `${tflops.toFixed(1).padStart(6)} TFLOP/s  (compile ${compileS.toFixed(1)} s)`,
        );
      } catch (e) {
        const msg = (e as Error).message.split("\n")[0].slice(0, 120);
        rows.push({ kernel, config: name, ms: null, note: msg });
        console.log(`  ${name.padEnd(16)} skipped: ${msg}`);
      } finally {
        r?.release();
      }
      save();
    }
  } finally {
    for (const b of Object.values(io)) b.destroy();
  }
}

if (quick) {
  await sweepLayerNorm(601, 40, [1, 3, 8]);
} else {
  await sweepLayerNorm(18944, 512, [1, 16, 32, 64, 128, 256]);
  await sweepLayerNorm(18944, 768, [1, 43, 86]);
}
// Before the matmuls, whose tail the budget may cut: a few seconds on a GPU.
await sweepAttentionBackward({
  device,
  limits,
  quick,
  iters,
  overBudget: () => elapsed() > budgetS,
  timePass,
  record: (row) => {
    rows.push(row);
    save();
  },
});
for (const [i, spec] of CASES.entries()) await sweepMatmul(spec, i === 0);
console.log(`\nkernel_sweep: ${elapsed().toFixed(1)} s`);
if (values.json) console.log(`wrote ${values.json}`);
