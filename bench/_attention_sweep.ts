/**
 * The attention-backward part of `deno task bench kernel_sweep`: GPU time of the dK/dV and dQ
 * kernels of the JOWA-40M training step (batch 64 x 8 heads = BH512, T=296, D=64, causal,
 * dropout 0.1, packed qkv) under the planner's tiles ("plan") and a few alternatives, with
 * lse and O from a real forward pass (random lse would overflow exp2).
 *
 * TFLOP/s count the multiply-adds each kernel does on visible (i, j) pairs: dK/dV 8·D per
 * pair (S, dP, dV, dK), dQ 6·D (S, dP, dQ); the FlashAttention-2 floor of the whole backward
 * is 10·D per pair (20.2 vs 14.4 GFLOP here) at about 50 TFLOP/s f32.
 *
 * @module
 */
import {
  type AttentionSpec,
  type AttentionTiles,
  planAttentionBackward,
  planAttentionForward,
} from "../kernels/codegen/attention/plan.ts";
import {
  type CompiledPlan,
  compilePlan,
  encodePlan,
  paramsBuffer,
  storageBuffer,
} from "../tests/helpers/attention_dispatch.ts";

/** What the sweep script lends this part. */
export interface AttentionSweepHost {
  device: GPUDevice;
  limits: {
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupsPerDimension: number;
  };
  quick: boolean;
  iters: number;
  /** True once the sweep's time budget is spent. */
  overBudget(): boolean;
  /** ms per call of `encode` recorded `n` times in one timestamped pass. */
  timePass(r: { encode(pass: GPUComputePassEncoder): void }, n: number): Promise<number>;
  record(
    row: { kernel: string; config: string; ms: number | null; tflops?: number; note?: string },
  ): void;
}

/** Alternatives to the planner's choice (workgroup bytes at D=64 in the comments). */
const CONFIGS: [string, AttentionTiles | undefined, { prefetch?: boolean }][] = [
  ["plan", undefined, {}], // dK/dV 32x16, dQ 32x16: 30208 / 28288 B, 64 threads, prefetch
  ["plan, no prefetch", undefined, { prefetch: false }],
  ["dkdv 32x32 / dq 32x32", { dkdv: [32, 32], dq: [32, 32] }, {}], // 43008 / 39040 B
  // 128 threads, 2 keys / rows each
  ["dkdv 32x16 r2 / dq 32x16 r2", { dkdv: [32, 16], dkdvCols: 2, dq: [32, 16], dqRows: 2 }, {}],
  ["dkdv 16x16 / dq 64x16", { dkdv: [16, 16], dq: [64, 16] }, {}], // 19456 / 47872 B
  // Smaller dQ blocks waste less on the causal diagonal (one warp per workgroup).
  ["dkdv 32x16 / dq 16x16", { dkdv: [32, 16], dq: [16, 16] }, {}], // 30208 / 18496 B
];

/** Sweep the backward kernels; prints one line per configuration. */
export async function sweepAttentionBackward(host: AttentionSweepHost): Promise<void> {
  const { device, quick } = host;
  const [B, H, T, D] = quick ? [2, 2, 37, 64] : [64, 8, 296, 64];
  const spec: AttentionSpec = {
    batchHeads: B * H,
    heads: H,
    Tq: T,
    S: T,
    D,
    causal: true,
    dropout: 0.1,
    layout: "packed_qkv",
  };
  const pairs = B * H * T * (T + 1) / 2;
  const fwd = planAttentionForward(spec, host.limits);
  const kernel = fwd.label.replace("forward", "backward");
  console.log(
    `\n${kernel} (dK/dV ${(8 * D * pairs / 1e9).toFixed(1)} GFLOP, dQ ` +
      `${(6 * D * pairs / 1e9).toFixed(1)} GFLOP)`,
  );
  const fill = (n: number, seed: number) =>
    Float32Array.from({ length: n }, (_, i) => Math.sin((i + seed) * 12.9898) * 0.5);
  const rowsQkv = B * T * 3 * H * D, rows = B * T * H * D;
  const bufs: Record<string, GPUBuffer> = {
    qkv: storageBuffer(device, fill(rowsQkv, 1)),
    dO: storageBuffer(device, fill(rows, 2)),
    o: storageBuffer(device, rows * 4),
    lse: storageBuffer(device, B * H * T * 4),
    delta: storageBuffer(device, B * H * T * 4),
    dqkv: storageBuffer(device, rowsQkv * 4),
    params: paramsBuffer(device, 7, 0.1),
  };
  try {
    const once = (plans: CompiledPlan[]) => {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      for (const c of plans) encodePlan(device, pass, c, bufs);
      pass.end();
      device.queue.submit([enc.finish()]);
    };
    // O, lse and delta (written by the dQ kernel) as training has them.
    const dqPlan = await compilePlan(device, planAttentionBackward(spec, host.limits)[0]);
    once([await compilePlan(device, fwd), dqPlan]);
    await device.queue.onSubmittedWorkDone();
    for (const [name, tiles, options] of CONFIGS) {
      if (host.overBudget()) {
        console.log("  (budget spent: the rest is skipped)");
        break;
      }
      try {
        const plans = planAttentionBackward({ ...spec, tiles }, host.limits, options);
        const [dq, dkdv] = await Promise.all(plans.map((p) => compilePlan(device, p)));
        const out: string[] = [];
        for (const [c, flop] of [[dkdv, 8 * D * pairs], [dq, 6 * D * pairs]] as const) {
          const r = { encode: (pass: GPUComputePassEncoder) => encodePlan(device, pass, c, bufs) };
          const w0 = performance.now();
          do await host.timePass(r, 2); while (!quick && performance.now() - w0 < 250);
          const ms = await host.timePass(r, host.iters);
          const tflops = flop / (ms / 1e3) / 1e12;
          const what = c === dkdv ? "dK/dV" : "dQ";
          host.record({ kernel, config: `${name}: ${what}`, ms, tflops });
          out.push(`${what} ${ms.toFixed(3)} ms (${tflops.toFixed(1)} TFLOP/s)`);
        }
        console.log(`  ${name.padEnd(28)} ${out.join("   ")}`);
      } catch (e) {
        const msg = (e as Error).message.split("\n")[0].slice(0, 120);
        host.record({ kernel, config: name, ms: null, note: msg });
        console.log(`  ${name.padEnd(28)} skipped: ${msg}`);
      }
    }
  } finally {
    for (const b of Object.values(bufs)) b.destroy();
  }
}
