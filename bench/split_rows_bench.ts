/**
 * Split-rows bench: GPU time of the shape-generic inference GEMMs of a JOWA-150M planning step
 * with 16 environments (64 or 256 rows) under the split-rows kernel
 * (kernels/codegen/matmul/split_rows.ts, what the planner now picks for 17..1024 rows and a
 * long K) next to the plain tiled kernel the bucket used before (`chooseTile` for M = 256,
 * forced as a tile override). Both read M at run time, as evaluation runs them. Also checks
 * that the two agree (max |difference| relative to max |C|).
 *
 * With `--sweep`, also other split-rows shapes (tile, depth TK, k-groups S) that fit the
 * device, to recalibrate `splitRowsTile` / `chooseSplitRows` from measurements.
 *
 * Each configuration is compiled, warmed, then `--iters` dispatches are recorded in one
 * compute pass whose beginning and end are timestamped (wall clock around the submit when the
 * adapter lacks "timestamp-query").
 *
 *   deno task bench split_rows [--quick] [--sweep] [--iters N]
 *
 * @module
 */
import { benchArgs } from "./_cli.ts";
import { describeAdapter } from "../kernels/core/device.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import {
  chooseTile,
  dynamicMBucket,
  type MatmulPlan,
  type MatmulSpec,
  planMatmul,
} from "../kernels/codegen/matmul/plan.ts";
import { compileChecked } from "../tests/helpers/matmul_pipeline.ts";
import { generateSplitRows } from "../kernels/codegen/matmul/split_rows.ts";

const HELP = `split_rows — shape-generic inference GEMMs: split-rows kernel vs the plain tiles

  deno task bench split_rows [--quick] [--sweep] [--iters N]

  --quick      small shapes (checks that it runs on a CPU adapter)
  --sweep      also other split-rows tiles and k-group counts
  --iters N    dispatches per timed pass (default 50; 2 with --quick)
  --help       this text`;

const values = benchArgs("split_rows", HELP, {
  quick: { type: "boolean", default: false },
  sweep: { type: "boolean", default: false },
  iters: { type: "string" },
  help: { type: "boolean", default: false },
});
const iters = Number(values.iters ?? (values.quick ? 2 : 50));
if (!Number.isInteger(iters) || iters < 1) {
  console.error(`split_rows: --iters must be a positive integer, got ${values.iters}`);
  Deno.exit(2);
}

const rt = await initRuntime();
const device = rt.device;
const limits = rt.ctx.limits;
const querySet = device.features.has("timestamp-query")
  ? device.createQuerySet({ type: "timestamp", count: 2 })
  : null;
console.log(`adapter: ${describeAdapter(rt.ctx)}; timestamps ${querySet ? "yes" : "no"}`);

/** [M, N, K, residual] of the planning step (fc2, qkv, fc1, proj), all B^T + bias. */
const SHAPES: [number, number, number, boolean][] = values.quick
  ? [[40, 36, 300, true], [17, 50, 520, false]]
  : [
    [256, 768, 3072, true],
    [64, 768, 3072, true],
    [256, 2304, 768, false],
    [256, 3072, 768, false],
    [64, 3072, 768, false],
    [64, 768, 768, true],
  ];

const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
function buffer(floats: number, seed: number): GPUBuffer {
  const b = device.createBuffer({ size: Math.max(16, 4 * floats), usage });
  const data = new Float32Array(floats).map((_, i) => Math.sin(i * 12.9898 + seed) * 0.5);
  device.queue.writeBuffer(b, 0, data);
  return b;
}

async function read(b: GPUBuffer, floats: number): Promise<Float32Array> {
  const r = device.createBuffer({
    size: b.size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(b, 0, r, 0, b.size);
  device.queue.submit([enc.finish()]);
  await r.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(r.getMappedRange().slice(0, 4 * floats));
  r.unmap();
  r.destroy();
  return out;
}

/** ms per call of `n` dispatches of `plan` in one pass. */
async function time(plan: MatmulPlan, bufs: GPUBuffer[], n: number): Promise<number> {
  const pipeline = await compileChecked(device, plan.code, plan.label);
  const bg = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const resolve = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const once = async (count: number) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass(
      querySet
        ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }
        : {},
    );
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bg);
    for (let i = 0; i < count; i++) pass.dispatchWorkgroups(...plan.workgroups);
    pass.end();
    if (querySet) enc.resolveQuerySet(querySet, 0, 2, resolve, 0);
    const w0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    const wall = (performance.now() - w0) / count;
    if (!querySet) return wall;
    const [begin, end] = new BigUint64Array((await read(resolve, 4)).buffer);
    return Number(end - begin) / 1e6 / count;
  };
  await once(Math.min(n, 5));
  const ms = await once(n);
  resolve.destroy();
  return ms;
}

/** Other split-rows shapes that fit the device (`--sweep`), as plans with the same bindings. */
function variants(spec: MatmulSpec, base: MatmulPlan): [string, MatmulPlan][] {
  const out: [string, MatmulPlan][] = [];
  const tiles = [[16, 32, 16], [16, 32, 8], [16, 16, 16], [32, 32, 16], [16, 64, 16]];
  for (const [TM, TN, TK] of tiles) {
    const tile = { TM, TN, TK, RM: 4, RN: TN === 64 ? 8 : 4 };
    const T = (TM / tile.RM) * (TN / tile.RN);
    for (const S of [4, 8, 16]) {
      const slot = TM * TN * 4;
      const stage = S * (TM + TN) * TK * 4;
      const P = Math.min(S - 1, Math.floor((limits.maxComputeWorkgroupStorageSize - stage) / slot));
      if (S * T > limits.maxComputeInvocationsPerWorkgroup || P < 1) continue;
      const shape = { S, buffers: 1 as const, P };
      const same = base.splitRows && base.tile.TM === TM && base.tile.TN === TN &&
        base.tile.TK === TK && base.splitRows.S === S;
      if (same) continue;
      const label = `split-rows ${TM}x${TN}x${TK} S${S}`;
      const code = generateSplitRows(spec, tile, shape, { b: spec.N * spec.K }, label);
      const workgroups = [Math.ceil(spec.M / TM) * Math.ceil(spec.N / TN), 1, 1] as [
        number,
        number,
        number,
      ];
      out.push(["variant", { ...base, code, label, tile, workgroups, splitRows: shape }]);
    }
  }
  return out;
}

const grid = (p: MatmulPlan) => p.workgroups[0] * p.workgroups[1] * p.workgroups[2];
for (const [M, N, K, residual] of SHAPES) {
  const spec: MatmulSpec = {
    batch: 1,
    M,
    N,
    K,
    transA: false,
    transB: true,
    aBatchStride: 0,
    bBatchStride: 0,
    bias: true,
    residual,
    dynamicM: true,
  };
  const plain = planMatmul(spec, limits, chooseTile({ ...spec, M: dynamicMBucket(M) }, limits));
  const split = planMatmul(spec, limits);
  const dims = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(dims, 0, Uint32Array.of(M, 0, 0, 0));
  const io = [buffer(M * K, 1), buffer(N * K, 2), buffer(M * N, 3), buffer(N, 4)];
  if (residual) io.push(buffer(M * N, 5));
  const outs: Float32Array[] = [];
  const line: string[] = [`${M}x${N}x${K}`];
  const configs: [string, MatmulPlan][] = [["plain", plain], ["split-rows", split]];
  if (values.sweep) configs.push(...variants(spec, split));
  for (const [name, plan] of configs) {
    const ms = await time(plan, [...io, dims], iters);
    outs.push(await read(io[2], M * N));
    const t = plan.tile;
    const trips = Math.ceil(K / t.TK / (plan.splitRows?.S ?? 1));
    line.push(
      `${name} ${t.TM}x${t.TN}x${t.TK}${plan.splitRows ? ` S${plan.splitRows.S}` : ""}: ` +
        `${grid(plan)} wg, ${trips} slices/thread, ${(ms * 1e3).toFixed(1)} us`,
    );
  }
  let diff = 0, scale = 0;
  for (const out of outs.slice(1)) {
    for (let i = 0; i < M * N; i++) {
      diff = Math.max(diff, Math.abs(outs[0][i] - out[i]));
      scale = Math.max(scale, Math.abs(outs[0][i]));
    }
  }
  line.push(`max |diff| / max |C| ${(diff / scale).toExponential(1)}`);
  console.log(line.join("\n  "));
  io.forEach((b) => b.destroy());
  dims.destroy();
}
