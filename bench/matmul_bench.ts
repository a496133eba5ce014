/**
 * Matmul throughput of the generated WGSL kernels (kernels/codegen/matmul/plan.ts).
 *
 * Each case records `--iters` dispatches in one compute pass and one submit after a warmup,
 * timed by wall clock around onSubmittedWorkDone, and by GPU timestamps when the device has
 * "timestamp-query".
 *
 *   deno run -A bench/matmul_bench.ts                 # squares 256..4096 + JOWA shapes
 *   deno run -A bench/matmul_bench.ts --quick         # small squares (CPU adapters)
 *   deno run -A bench/matmul_bench.ts --sizes 1024,18944x2048x512 --trans nn,nt
 *
 * @module
 */

import { parseArgs } from "node:util";
import { describeAdapter, gpu } from "../kernels/core/device.ts";
import { type MatmulSpec, planMatmul } from "../kernels/codegen/matmul/plan.ts";
import { bindMatmul, compileMatmul, encodeMatmul } from "../tests/helpers/matmul_pipeline.ts";

const HELP = `matmul_bench: GFLOP/s of the generated f32 matmul kernels.

Options:
  --sizes LIST   comma list of N (square) or MxNxK, e.g. 1024,18944x2048x512
                 (default: 256,512,1024,2048,4096 and the JOWA training shapes)
  --trans LIST   transpose combos: nn (A·B), nt (A·B^T), tn (A^T·B), tt (default all four)
  --iters N      dispatches per timed submit (default 20; 3 with --quick)
  --split MODE   split-K: off, auto, or a number of parts; "both" (default) runs each case
                 plain and, where the auto planner splits it, split as well
  --quick        small squares 64,128,256 only, for CPU adapters such as lavapipe
  --help         this text
`;

/** JOWA (64 envs x 296 tokens = 18944 rows): forward and both backward products of each. */
const JOWA_SHAPES = [
  "18944x2048x512", // MLP up
  "18944x512x2048", // MLP down, and dX of MLP up (with B^T)
  "512x2048x18944", // dW of MLP up (A^T·dY)
  "18944x1536x512", // QKV
  "512x1536x18944", // dW of QKV
  "18944x512x512", // attention output projection
  "512x512x18944", // its dW
];
const SQUARES = ["256", "512", "1024", "2048", "4096"];
const QUICK = ["64", "128", "256"];

function parseShape(s: string): [number, number, number] {
  const parts = s.split("x").map(Number);
  const dims = parts.length === 1 ? [parts[0], parts[0], parts[0]] : parts;
  if (dims.length !== 3 || dims.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new Error(`bad size "${s}" (want N or MxNxK)`);
  }
  return dims as [number, number, number];
}

/** Fills a buffer with pseudo-random values (zeros would flatter the GPU's power budget). */
function fillRandom(device: GPUDevice, buffer: GPUBuffer, bytes: number): void {
  const chunk = new Float32Array(Math.min(bytes / 4, 1 << 22));
  for (let i = 0; i < chunk.length; i++) chunk[i] = Math.sin(i * 12.9898) * 0.5;
  for (let off = 0; off < bytes; off += chunk.byteLength) {
    const n = Math.min(chunk.byteLength, bytes - off);
    device.queue.writeBuffer(buffer, off, chunk, 0, n / 4);
  }
}

interface Timing {
  wallMs: number;
  gpuMs: number | null;
}

/** Runs `iters` dispatches of one spec in one pass and returns the time per dispatch. */
async function timeSpec(spec: MatmulSpec, iters: number): Promise<Timing & { tile: string }> {
  const ctx = await gpu();
  const { device } = ctx;
  const plan = planMatmul(spec, ctx.limits);
  const t = plan.tile;
  const split = plan.splitK ? ` k/${plan.splitK.parts}` : "";
  const tile = `${t.TM}x${t.TN}x${t.TK}/${t.RM}x${t.RN}${split}`;
  const maxBinding = ctx.limits.maxStorageBufferBindingSize;
  const biggest = Math.max(plan.bindingBytes.a, plan.bindingBytes.b, plan.bindingBytes.c);
  if (biggest > maxBinding) throw new Error(`needs a ${biggest}-byte binding (max ${maxBinding})`);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
  const make = (bytes: number) => {
    const buffer = device.createBuffer({ size: Math.max(16, bytes), usage });
    fillRandom(device, buffer, bytes);
    return buffer;
  };
  const buffers = {
    a: make(plan.bindingBytes.a),
    b: make(plan.bindingBytes.b),
    c: device.createBuffer({ size: plan.bindingBytes.c, usage }),
    scratch: device.createBuffer({ size: Math.max(16, plan.splitK?.scratchBytes ?? 0), usage }),
  };
  const hasTimestamps = device.features.has("timestamp-query");
  const querySet = hasTimestamps ? device.createQuerySet({ type: "timestamp", count: 2 }) : null;
  const resolve = hasTimestamps
    ? device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    })
    : null;
  const readback = hasTimestamps
    ? device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
    : null;
  try {
    const compiled = await compileMatmul(device, plan);
    const bindGroups = bindMatmul(device, compiled, buffers);
    const submit = async (n: number, timed: boolean) => {
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass(
        timed && querySet
          ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }
          : {},
      );
      for (let i = 0; i < n; i++) encodeMatmul(pass, compiled, bindGroups);
      pass.end();
      if (timed && querySet && resolve && readback) {
        encoder.resolveQuerySet(querySet, 0, 2, resolve, 0);
        encoder.copyBufferToBuffer(resolve, 0, readback, 0, 16);
      }
      const t0 = performance.now();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      return performance.now() - t0;
    };
    // Warmup: the first submit pays for pipeline creation inside the driver.
    await submit(Math.min(2, iters), false);
    const wall = await submit(iters, true);
    let gpuMs: number | null = null;
    if (readback) {
      await readback.mapAsync(GPUMapMode.READ);
      const [begin, end] = new BigUint64Array(readback.getMappedRange());
      gpuMs = Number(end - begin) / 1e6 / iters;
      readback.unmap();
    }
    return { wallMs: wall / iters, gpuMs, tile };
  } finally {
    for (const b of Object.values(buffers)) b.destroy();
    resolve?.destroy();
    readback?.destroy();
    querySet?.destroy();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      sizes: { type: "string" },
      trans: { type: "string", default: "nn,nt,tn,tt" },
      iters: { type: "string" },
      quick: { type: "boolean", default: false },
      split: { type: "string", default: "both" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const sizes = values.sizes?.split(",") ?? (values.quick ? QUICK : [...SQUARES, ...JOWA_SHAPES]);
  const iters = Number(values.iters ?? (values.quick ? 3 : 20));
  if (!Number.isInteger(iters) || iters < 1) throw new Error(`bad --iters ${values.iters}`);
  const combos = values.trans.split(",");
  const splitMode = values.split;
  if (!/^(off|auto|both|\d+)$/.test(splitMode)) throw new Error(`bad --split ${splitMode}`);
  for (const c of combos) if (!/^[nt][nt]$/.test(c)) throw new Error(`bad --trans entry "${c}"`);

  const shapes = sizes.map(parseShape); // fail on a typo before touching the GPU
  const ctx = await gpu();
  console.log(`adapter: ${describeAdapter(ctx)}`);
  console.log(`timestamps: ${ctx.device.features.has("timestamp-query") ? "yes" : "no"}`);
  console.log(`iters per submit: ${iters}`);
  const header = "shape (MxNxK)         trans  tile                ms/disp  GFLOP/s";
  console.log(`${header}  (gpu timestamps GFLOP/s)`);
  for (const [M, N, K] of shapes) {
    for (const combo of combos) {
      const transA = combo[0] === "t", transB = combo[1] === "t";
      const spec: MatmulSpec = {
        batch: 1,
        M,
        N,
        K,
        transA,
        transB,
        aBatchStride: M * K,
        bBatchStride: K * N,
      };
      const variants: MatmulSpec[] = [];
      if (splitMode === "both") {
        variants.push(spec);
        if (planMatmul({ ...spec, splitK: "auto" }, ctx.limits).splitK) {
          variants.push({ ...spec, splitK: "auto" });
        }
      } else if (splitMode === "off") variants.push(spec);
      else if (splitMode === "auto") variants.push({ ...spec, splitK: "auto" });
      else variants.push({ ...spec, splitK: Number(splitMode) });
      const name = `${M}x${N}x${K}`.padEnd(22) + combo.padEnd(7);
      for (const v of variants) {
        try {
          const t = await timeSpec(v, iters);
          const gflop = (2 * M * N * K) / 1e9;
          const wall = (gflop / (t.wallMs / 1e3)).toFixed(1);
          const ts = t.gpuMs === null ? "" : `  (${(gflop / (t.gpuMs / 1e3)).toFixed(1)})`;
          const ms = t.wallMs.toFixed(3).padStart(7);
          console.log(`${name}${t.tile.padEnd(20)}${ms}  ${wall.padStart(7)}${ts}`);
        } catch (e) {
          console.log(`${name}skipped: ${(e as Error).message}`);
        }
      }
    }
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`matmul_bench: ${(e as Error).message}\n\n${HELP}`);
    Deno.exit(2);
  }
}
