/**
 * The data-parallel training step with its local part replayed (train/captured_grads.ts):
 * forward and backward captured, the gradient exchange of train/data_parallel.ts (here over a
 * size-1 communicator: readback, all-reduce, upload) and the AdamW update eager in between.
 * Against the same flow with forward and backward run eagerly: losses, weights and moments
 * equal bit for bit, in stage 1 (tokens on the GPU), stage 2 and fine-tuning's mixed-batch
 * step, dropout on.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import type { SegmentBatch } from "../offline/mod.ts";
import { worldBatchArrays } from "../train/world_batch.ts";
import { PAPER_WEIGHTS, worldActionStep } from "../train/world_step.ts";
import { captureComboGrads, captureWorldActionGrads } from "../train/captured_grads.ts";
import { type MixedBatch, mixedBatch } from "../train/finetune_batch.ts";
import { comboStep } from "../train/finetune_losses.ts";
import { DataParallel } from "../train/data_parallel.ts";
import { SingleComm } from "../distributed/single.ts";
import { mulberry32, stepSeed } from "../util/rng.ts";
import { assertSameWeightsAndMoments, tinyTrainee } from "./helpers/capture_training.ts";

await initRuntime();

/** The tiny model (init seed 6, dropout on) and its AdamW. */
const tinyModel = (L: number) => tinyTrainee(L, 6);

function segments(B: number, L: number, P: number, vocab: number, seed: number) {
  const r = mulberry32(seed);
  return {
    index: 0,
    batchSize: B,
    segmentLength: L,
    form: "tokens",
    tokens: Uint16Array.from({ length: B * L * P }, () => Math.floor(r() * vocab)),
    actions: Int32Array.from({ length: B * L }, () => Math.floor(r() * 18)),
    rewards: Float32Array.from({ length: B * L }, () => [0, 1, -1][Math.floor(r() * 3)]),
    terminals: Uint8Array.from({ length: B * L }, (_, k) => (k === L - 1 ? 1 : 0)),
    mask: new Uint8Array(B * L).fill(1),
    taskIds: Int32Array.from({ length: B }, () => Math.floor(r() * 60)),
    gameIndex: new Int32Array(B),
    starts: new Float64Array(B),
  } as SegmentBatch;
}

/** Fine-tuning's mixed batch: the real segments, then 2 synthetic ones. */
function mixed(real: SegmentBatch, P: number, vocab: number, seed: number): MixedBatch {
  const r = mulberry32(seed), S = 2, L = real.segmentLength;
  return mixedBatch(real, {
    count: S,
    L,
    P,
    tokens: Int32Array.from({ length: S * L * P }, () => Math.floor(r() * vocab)),
    actions: Int32Array.from({ length: S * L }, () => Math.floor(r() * 18)),
    rewards: Float32Array.from({ length: S * L }, () => [0, 1, -1][Math.floor(r() * 3)]),
    taskIds: new Int32Array(S).fill(real.taskIds[0]),
  });
}

type Parts = Record<string, Tensor | undefined>;

for (const kind of ["stage 1", "stage 2", "fine-tuning's mixed batch"] as const) {
  Deno.test(`data parallel (size 1): replayed forward/backward equal eager, ${kind}`, async () => {
    const L = 2, B = 2, joint = kind !== "stage 1", combo = kind.startsWith("fine");
    const eager = tinyModel(L), replayed = tinyModel(L);
    const weights = PAPER_WEIGHTS;
    const worldGrads = captureWorldActionGrads(replayed.model, replayed.opt, {
      joint,
      strict: true,
    });
    const comboGrads = captureComboGrads(replayed.model, replayed.opt, { weights, strict: true });
    const P = eager.cfg.obsTokens, V = eager.cfg.obsVocab;
    // One data-parallel step: local forward/backward, the exchange, the update.
    const dpStep = async (
      m: ReturnType<typeof tinyModel>,
      dp: DataParallel,
      run: () => Parts,
    ): Promise<Float32Array[]> => {
      const scalars = tidy(() => {
        const p = run();
        return { total: p.total!, obs: p.obs!, reward: p.reward! } as Record<string, Tensor>;
      });
      assert.equal(await dp.averageGradients(m.opt.params, scalars, false), false);
      tidy(() => m.opt.update());
      m.opt.zeroGrad();
      const vals = Object.values(scalars);
      const got = await readAll(vals) as Float32Array[];
      vals.forEach((t) => t.dispose());
      return got;
    };
    const dpE = new DataParallel(new SingleComm()), dpR = new DataParallel(new SingleComm());
    for (let k = 0; k < 7; k++) {
      const seg = segments(B, L, P, V, 40 + k);
      const a = worldBatchArrays(seg), mb = mixed(seg, P, V, 90 + k);
      const seed = stepSeed(5, k);
      // Stage 1 trains on tokens made on the GPU (the tokenizer's), stage 2 on the batch's.
      const ids = joint ? undefined : tensor(a.obsTokens!, [B, L, P], "i32");
      const e = await dpStep(
        eager,
        dpE,
        () =>
          (combo
            ? comboStep(eager.model, eager.opt, mb, { weights, stepSeed: seed, update: false })
            : worldActionStep(eager.model, eager.opt, a, {
              joint,
              stepSeed: seed,
              obsTokens: ids,
              update: false,
            })) as unknown as Parts,
      );
      const r = await dpStep(
        replayed,
        dpR,
        () => (combo ? comboGrads(mb, seed) : worldGrads(a, seed, ids)) as unknown as Parts,
      );
      ids?.dispose();
      e.forEach((v, i) => assert.deepEqual(r[i], v, `step ${k}: loss ${i}`));
    }
    const stats = (combo ? comboGrads : worldGrads).stats();
    assert.equal(stats.replays, 4, JSON.stringify(stats));
    assert.equal(eager.opt.step, replayed.opt.step);
    await assertSameWeightsAndMoments(eager, replayed);
    [worldGrads, comboGrads].forEach((s) => s.dispose());
    [eager, replayed].forEach((m) => m.opt.dispose());
  });
}
