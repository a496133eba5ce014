/**
 * The paper-size models' training steps capture on the first try, from a fresh model, as the
 * trainer and `bench gpu` call them (strict capture: a fallback to eager throws).
 *
 * Why at paper size: whether two recordings match depends on which of the step's tensors share
 * a pooled buffer, which grows with the number of tensors. The tiny models never differed, but
 * on an H200 the JOWA-40M step at batch 64 did ("two recordings differ (dispatch 443
 * 'neg.grad')") and ran eagerly; that code differed here in a dry run at batch 8 already
 * ("dispatch 147 'add'"), and the pool's allocation order fixed it (engine_capture_aliasing_test
 * shows the mechanism on the tiny model). The steps are recorded, not executed (dry run: the
 * CPU adapter would take minutes a step), and a dry run records exactly what a real step records.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tidy } from "../kernels/core/tensor.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { worldBatchArrays } from "../train/world_batch.ts";
import { captureWorldActionStep } from "../train/captured_world_step.ts";
import { randomSegmentBatch } from "../bench/_bench_data.ts";

const rt = await initRuntime();

for (const name of ["40M", "150M"] as const) {
  Deno.test({
    name: `JOWA-${name} training steps (B=8, both stages) capture and replay, no fallback`,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const dry = rt.dryRun;
      rt.dryRun = true;
      const cfg = worldActionConfig(name);
      const model = new WorldActionModel(cfg);
      try {
        for (const joint of [true, false]) {
          const opt = new AdamW(model.parameters(), {
            lr: 5e-5,
            weightDecay: 0.01,
            maxGradNorm: 1,
          });
          const arrays = [0, 1].map((k) =>
            worldBatchArrays(randomSegmentBatch(8, cfg.timesteps, cfg.obsVocab, k))
          );
          const step = captureWorldActionStep(model, opt, { joint, strict: true });
          // Call 1 eager, 2 and 3 recorded and compared, 4 and 5 replayed.
          for (let k = 0; k < 5; k++) {
            const loss = tidy(() => step(arrays[k % 2], k).total);
            await readAll([loss]);
            loss.dispose();
          }
          const s = step.stats();
          assert.deepEqual(
            { eager: s.eager, recorded: s.recorded, replays: s.replays, fallbacks: s.fallbacks },
            { eager: 1, recorded: 2, replays: 2, fallbacks: [] },
            `stage ${joint ? 2 : 1}`,
          );
          step.dispose();
          opt.dispose();
        }
      } finally {
        for (const p of model.parameters()) p.dispose();
        rt.dryRun = dry;
      }
    },
  });
}
