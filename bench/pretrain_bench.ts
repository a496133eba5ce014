/**
 * Stage-2 pretraining throughput: one joint-loss step of the world-action model (forward with
 * the target Q head, Eq. 10 loss, backward, fused AdamW with global-norm clipping) on random
 * token segments of 8 timesteps (296 tokens), as `deno task pretrain` runs it. Reports
 * ms/step, steps/s and tokens/s (B x 296 per step).
 *
 *   deno task bench pretrain [-- --quick] [-- --configs tiny,40M --batches 64,512 --steps 20]
 *
 * Anchor (H100, PyTorch eager, same architecture, batch 64, fp32): JOWA-40M 46.5 ms/step.
 */
import { parseArgs } from "node:util";
import { describeAdapter, initRuntime, readAll, type Tensor, tidy } from "../mod.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { type ConfigName, worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { worldBatchArrays } from "../train/world_batch.ts";
import { worldActionStep } from "../train/world_step.ts";
import { randomSegmentBatch } from "./_bench_data.ts";

const HELP = `pretrain_bench — stage-2 (joint loss) training steps/s and tokens/s

  --quick          tiny config, batch 8, 5 timed steps (for CPU adapters such as lavapipe)
  --configs LIST   world-action configs (default tiny,40M)
  --batches LIST   segments per step (default 64,512)
  --steps N        timed steps per case (default 20)
  --help           this text`;

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    configs: { type: "string" },
    batches: { type: "string" },
    steps: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const list = (v: string | undefined, d: string) => (v ?? d).split(",").map((s) => s.trim());
const configs = list(values.configs, values.quick ? "tiny" : "tiny,40M") as ConfigName[];
const batches = list(values.batches, values.quick ? "8" : "64,512").map(Number);
const steps = Number(values.steps ?? (values.quick ? 5 : 20));
for (const c of configs) {
  if (!["tiny", "40M", "70M", "150M"].includes(c)) {
    console.error(`error: unknown config '${c}'`);
    Deno.exit(2);
  }
}
if (batches.some((b) => !Number.isInteger(b) || b < 1) || !Number.isInteger(steps) || steps < 1) {
  console.error("error: --batches and --steps take positive integers");
  Deno.exit(2);
}

const rt = await initRuntime();
console.log(`adapter: ${describeAdapter(rt.ctx)}`);

console.log("\nconfig  batch  ms/step  steps/s  tokens/s");
for (const name of configs) {
  const cfg = worldActionConfig(name);
  const model = new WorldActionModel(cfg);
  const opt = new AdamW(model.parameters(), { lr: 5e-5, weightDecay: 0.01, maxGradNorm: 1 });
  const L = cfg.timesteps;
  for (const B of batches) {
    const arrays = [0, 1].map((k) => worldBatchArrays(randomSegmentBatch(B, L, cfg.obsVocab, k)));
    let last: Tensor | null = null;
    const step = (k: number) => {
      last?.dispose();
      last = tidy(() =>
        worldActionStep(model, opt, arrays[k % 2], { joint: true, stepSeed: k }).total
      );
      opt.zeroGrad();
    };
    try {
      for (let k = 0; k < 2; k++) step(k); // compile and warm the pool
      await rt.sync();
      const t0 = performance.now();
      for (let k = 0; k < steps; k++) {
        step(k);
        await rt.flush();
      }
      const [loss] = await readAll([last!]);
      const ms = (performance.now() - t0) / steps;
      const tokens = B * L * (cfg.obsTokens + 1);
      console.log(
        `${name.padEnd(6)}  ${String(B).padStart(5)}  ${ms.toFixed(1).padStart(7)}  ` +
          `${(1000 / ms).toFixed(2).padStart(7)}  ${
            Math.round((tokens * 1000) / ms).toString().padStart(8)
          }` +
          (Number.isFinite(loss[0]) ? "" : "  (non-finite loss!)"),
      );
    } catch (e) {
      console.log(
        `${name.padEnd(6)}  ${String(B).padStart(5)}  failed: ${
          (e as Error).message.split("\n")[0]
        }`,
      );
    }
    (last as Tensor | null)?.dispose();
    await rt.trim();
  }
  opt.dispose();
}
