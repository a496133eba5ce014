/**
 * Fused (flash-style) attention vs an unfused path (naive WGSL: S = QK^T, softmax, O = PV and
 * the matching backward through a materialized [BH, T, T] matrix), forward and
 * forward+backward, for JOWA-40M's causal transformer attention (B=64, H=8, T=296, D=64) and
 * the tokenizer's full spatial attention (B=256, 144 positions, D=64, one head).
 *
 *   deno run -A bench/attention_bench.ts            # full sizes (a real GPU)
 *   deno run -A bench/attention_bench.ts --quick    # small batch, for lavapipe
 *   deno run -A bench/attention_bench.ts --tiles=forward:64x16,rows:2,dkdv:64x16,cols:2,dq:64x16,dqrows:2,split:2
 *                                                   # tile overrides, for tuning on a GPU
 *
 * @module
 */

import { describeAdapter, gpu } from "../kernels/core/device.ts";
import {
  type AttentionSpec,
  type AttentionTiles,
  type KernelPlan,
  planAttentionBackward,
  planAttentionForward,
} from "../kernels/codegen/attention/plan.ts";
import {
  type CompiledPlan,
  compilePlan,
  encodePlan,
  paramsBuffer,
  readBack,
  storageBuffer,
} from "../tests/helpers/attention_dispatch.ts";

const quick = Deno.args.includes("--quick");
const tiles = parseTiles(Deno.args.find((a) => a.startsWith("--tiles="))?.slice(8));

/** "forward:64x16,rows:2,dkdv:64x16,cols:2,dq:64x16,dqrows:2,split:2" -> AttentionTiles. */
function parseTiles(arg: string | undefined): AttentionTiles | undefined {
  if (!arg) return undefined;
  const out: AttentionTiles = {};
  for (const part of arg.split(",")) {
    const [key, val] = part.split(":");
    if (key === "split") out.split = Number(val);
    else if (key === "rows") out.forwardRows = Number(val);
    else if (key === "cols") out.dkdvCols = Number(val);
    else if (key === "dqrows") out.dqRows = Number(val);
    else if (key === "forward" || key === "dkdv" || key === "dq") {
      const [a, b] = val.split("x").map(Number);
      out[key] = [a, b];
    } else throw new Error(`--tiles: unknown key ${key}`);
  }
  return out;
}

// ---- the naive unfused path -------------------------------------------------------------

/** C[b, m, n] = alpha * sum_k A[b, m, k] B[b, k, n]; trans flags say A is [K, M], B is [N, K]. */
function naiveMatmul(
  batch: number,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  alpha: number,
  maxWg: number,
): KernelPlan {
  const a = transA ? `A[ab + k * ${M}u + m]` : `A[ab + m * ${K}u + k]`;
  const b = transB ? `B[bb + n * ${K}u + k]` : `B[bb + k * ${N}u + n]`;
  const total = batch * Math.ceil(M / 8) * Math.ceil(N / 8);
  const gx = Math.min(total, maxWg);
  const tilesN = Math.ceil(N / 8), tilesM = Math.ceil(M / 8);
  return {
    code: `@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
  let lin = wg.x + wg.y * ${gx}u;
  let bt = lin / ${tilesM * tilesN}u;
  let tile = lin % ${tilesM * tilesN}u;
  let m = (tile / ${tilesN}u) * 8u + l.y;
  let n = (tile % ${tilesN}u) * 8u + l.x;
  if (bt >= ${batch}u || m >= ${M}u || n >= ${N}u) { return; }
  let ab = bt * ${M * K}u;
  let bb = bt * ${K * N}u;
  var acc = 0.0;
  for (var k = 0u; k < ${K}u; k++) { acc += ${a} * ${b}; }
  C[bt * ${M * N}u + m * ${N}u + n] = acc * ${alpha};
}`,
    workgroups: [gx, Math.ceil(total / gx), 1],
    label: `naive matmul ${batch}x${M}x${N}x${K}`,
    bindings: ["A", "B", "C"],
    bindingBytes: {},
  };
}

/** In-place masked softmax over rows of [rows, T] (one thread per row). */
function naiveSoftmax(rows: number, T: number, causal: boolean, maxWg: number): KernelPlan {
  const total = Math.ceil(rows / 64);
  const gx = Math.min(total, maxWg);
  const lim = causal ? "i" : `${T - 1}u`;
  return {
    code: `@group(0) @binding(0) var<storage, read_write> P: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let row = (wg.x + wg.y * ${gx}u) * 64u + l;
  if (row >= ${rows}u) { return; }
  let i = row % ${T}u;
  let base = row * ${T}u;
  var mx = -1e30;
  for (var j = 0u; j <= ${lim}; j++) { mx = max(mx, P[base + j]); }
  var sum = 0.0;
  for (var j = 0u; j < ${T}u; j++) {
    let e = select(0.0, exp(P[base + j] - mx), j <= ${lim});
    P[base + j] = e;
    sum += e;
  }
  for (var j = 0u; j <= ${lim}; j++) { P[base + j] = P[base + j] / sum; }
}`,
    workgroups: [gx, Math.ceil(total / gx), 1],
    label: "naive softmax",
    bindings: ["P"],
    bindingBytes: {},
  };
}

/** dS = scale * P * (dP - rowsum(P * dP)), written over dP. */
function naiveSoftmaxBackward(rows: number, T: number, scale: number, maxWg: number): KernelPlan {
  const total = Math.ceil(rows / 64);
  const gx = Math.min(total, maxWg);
  return {
    code: `@group(0) @binding(0) var<storage, read> P: array<f32>;
@group(0) @binding(1) var<storage, read_write> G: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let row = (wg.x + wg.y * ${gx}u) * 64u + l;
  if (row >= ${rows}u) { return; }
  let base = row * ${T}u;
  var dot = 0.0;
  for (var j = 0u; j < ${T}u; j++) { dot += P[base + j] * G[base + j]; }
  for (var j = 0u; j < ${T}u; j++) { G[base + j] = ${scale} * P[base + j] * (G[base + j] - dot); }
}`,
    workgroups: [gx, Math.ceil(total / gx), 1],
    label: "naive softmax backward",
    bindings: ["P", "G"],
    bindingBytes: {},
  };
}

// ---- timing ----------------------------------------------------------------------------

type Step = { c: CompiledPlan; bufs: Record<string, GPUBuffer> };

/** Median milliseconds of one run of `steps` (each run one command buffer and a wait). */
async function time(device: GPUDevice, steps: Step[], reps: number): Promise<number> {
  const once = async () => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const s of steps) encodePlan(device, pass, s.c, s.bufs);
    pass.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  await once(); // warm-up (pipeline compile on first use, lazy allocations)
  const ms: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await once();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return ms[ms.length >> 1];
}

function randomBuffer(device: GPUDevice, n: number, seed: number): GPUBuffer {
  const a = new Float32Array(n);
  let s = seed;
  for (let x = 0; x < n; x++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[x] = s / 2 ** 31 - 1;
  }
  return storageBuffer(device, a);
}

async function benchCase(name: string, B: number, H: number, T: number, causal: boolean) {
  const ctx = await gpu();
  const device = ctx.device;
  const maxWg = ctx.limits.maxComputeWorkgroupsPerDimension;
  const D = 64, BH = B * H, n = BH * T * D;
  const spec: AttentionSpec = { batchHeads: BH, Tq: T, S: T, D, causal, tiles };
  const bufs: Record<string, GPUBuffer> = {
    q: randomBuffer(device, n, 1),
    k: randomBuffer(device, n, 2),
    v: randomBuffer(device, n, 3),
    dO: randomBuffer(device, n, 4),
    o: storageBuffer(device, n * 4),
    lse: storageBuffer(device, BH * T * 4),
    delta: storageBuffer(device, BH * T * 4),
    dQ: storageBuffer(device, n * 4),
    dK: storageBuffer(device, n * 4),
    dV: storageBuffer(device, n * 4),
    params: paramsBuffer(device, 1, 0),
  };
  const fwd = [await compilePlan(device, planAttentionForward(spec, ctx.limits))];
  const bwd = await Promise.all(
    planAttentionBackward(spec, ctx.limits).map((p) => compilePlan(device, p)),
  );
  const fused = (cs: CompiledPlan[]) => cs.map((c) => ({ c, bufs }));

  // Fused with attention dropout p = 0.1 (mask hashed on the fly, regenerated in backward).
  const dspec = { ...spec, dropout: 0.1 };
  const dbufs: Record<string, GPUBuffer> = { ...bufs, params: paramsBuffer(device, 7, 0.1) };
  // Own outputs, so the fused-vs-unfused comparison below still sees the dropout-free run.
  for (const k of ["o", "dQ", "dK", "dV"]) dbufs[k] = storageBuffer(device, n * 4);
  for (const k of ["lse", "delta"]) dbufs[k] = storageBuffer(device, BH * T * 4);
  const dplans = [
    planAttentionForward(dspec, ctx.limits),
    ...planAttentionBackward(dspec, ctx.limits),
  ];
  const dsteps = (await Promise.all(dplans.map((p) => compilePlan(device, p))))
    .map((c) => ({ c, bufs: dbufs }));
  const reps = quick ? 5 : 20;
  const tf = await time(device, fused(fwd), reps);
  const tfb = await time(device, fused([...fwd, ...bwd]), reps);
  const tdf = await time(device, dsteps.slice(0, 1), reps);
  const tdfb = await time(device, dsteps, reps);
  const flops = 4 * BH * T * T * D * (causal ? 0.5 : 1); // QK^T and PV
  const gf = (ms: number, mult: number) => ((mult * flops) / (ms * 1e6)).toFixed(1);
  console.log(
    `${name}: B=${B} H=${H} T=${T} D=${D} ${causal ? "causal" : "full"}\n` +
      `  fused          fwd ${tf.toFixed(2)} ms (${gf(tf, 1)} GFLOP/s)` +
      `   fwd+bwd ${tfb.toFixed(2)} ms (${gf(tfb, 3.5)} GFLOP/s)\n` +
      `  fused drop 0.1 fwd ${tdf.toFixed(2)} ms   fwd+bwd ${tdfb.toFixed(2)} ms`,
  );
  for (const k of ["params", "o", "dQ", "dK", "dV", "lse", "delta"]) dbufs[k].destroy();

  // Unfused: P [BH, T, T] materialized, plus dP for the backward.
  if (BH * T * T * 4 > ctx.limits.maxStorageBufferBindingSize) {
    console.log("  unfused: skipped, [BH, T, T] exceeds maxStorageBufferBindingSize");
    for (const b of Object.values(bufs)) b.destroy();
    return;
  }
  const P = storageBuffer(device, BH * T * T * 4);
  const G = storageBuffer(device, BH * T * T * 4);
  const o2 = storageBuffer(device, n * 4);
  const grads = [0, 1, 2].map(() => storageBuffer(device, n * 4));
  const scale = 1 / Math.sqrt(D);
  const mm = (M: number, N: number, K: number, tA: boolean, tB: boolean, alpha = 1) =>
    compilePlan(device, naiveMatmul(BH, M, N, K, tA, tB, alpha, maxWg));
  const uFwd: Step[] = [
    { c: await mm(T, T, D, false, true, scale), bufs: { A: bufs.q, B: bufs.k, C: P } },
    { c: await compilePlan(device, naiveSoftmax(BH * T, T, causal, maxWg)), bufs: { P } },
    { c: await mm(T, D, T, false, false), bufs: { A: P, B: bufs.v, C: o2 } },
  ];
  const uBwd: Step[] = [
    { c: await mm(T, T, D, false, true), bufs: { A: bufs.dO, B: bufs.v, C: G } },
    {
      c: await compilePlan(device, naiveSoftmaxBackward(BH * T, T, scale, maxWg)),
      bufs: { P, G },
    },
    { c: await mm(T, D, T, false, false), bufs: { A: G, B: bufs.k, C: grads[0] } },
    { c: await mm(T, D, T, true, false), bufs: { A: G, B: bufs.q, C: grads[1] } },
    { c: await mm(T, D, T, true, false), bufs: { A: P, B: bufs.dO, C: grads[2] } },
  ];

  const uf = await time(device, uFwd, reps);
  const ufb = await time(device, [...uFwd, ...uBwd], reps);

  // Sanity: both paths agree (the unfused buffers hold the last run's results).
  const diff = async (a: GPUBuffer, b: GPUBuffer) => {
    const [x, y] = [await readBack(device, a, n), await readBack(device, b, n)];
    let e = 0;
    for (let i = 0; i < n; i++) e = Math.max(e, Math.abs(x[i] - y[i]));
    return e;
  };
  const errs = [
    await diff(bufs.o, o2),
    await diff(bufs.dQ, grads[0]),
    await diff(bufs.dK, grads[1]),
    await diff(bufs.dV, grads[2]),
  ];
  console.log(
    `  unfused        fwd ${uf.toFixed(2)} ms` +
      `   fwd+bwd ${ufb.toFixed(2)} ms   (speedup fwd ${(uf / tf).toFixed(2)}x, ` +
      `fwd+bwd ${(ufb / tfb).toFixed(2)}x)\n` +
      `  max |fused - unfused|: O ${errs[0].toExponential(1)}, dQ ${errs[1].toExponential(1)},` +
      ` dK ${errs[2].toExponential(1)}, dV ${errs[3].toExponential(1)}`,
  );
  for (const b of [...Object.values(bufs), P, G, o2, ...grads]) b.destroy();
}

const ctx = await gpu();
console.log(`adapter: ${describeAdapter(ctx)}${quick ? "  [--quick: reduced batch]" : ""}`);
if (tiles) console.log(`tiles: ${JSON.stringify(tiles)}`);
console.log("GFLOP/s counts QK^T + PV (x3.5 for fwd+bwd), halved for causal.");
await benchCase("JOWA-40M transformer", quick ? 1 : 64, quick ? 2 : 8, 296, true);
await benchCase("tokenizer 12x12 attention", quick ? 8 : 256, 1, 144, false);
