/**
 * A minimal training loop over synthetic segment batches for the learning tests: the same
 * step as the pretrainer (train/world_step.ts), losses read back only at the end of each
 * chunk of steps, and helpers to read Q values and predictions from the model.
 *
 * @module
 */
import { noGrad } from "../../kernels/core/autograd.ts";
import { AdamW } from "../../kernels/nn/optim.ts";
import { readAll, type Tensor, tensor, tidy } from "../../kernels/core/tensor.ts";
import { argmax, concat, reshape } from "../../kernels/ops/mod.ts";
import { runtime } from "../../kernels/core/runtime.ts";
import { nextObservationRows, type WorldActionModel } from "../../models/world_action/model.ts";
import type { SegmentBatch } from "../../offline/mod.ts";
import { worldBatchArrays } from "../../train/world_batch.ts";
import { type JointWeights, worldActionStep } from "../../train/world_step.ts";
import { stepSeed } from "../../util/rng.ts";

/** Options of {@link trainSynthetic}. */
export interface SyntheticTrainOptions {
  steps: number;
  lr: number;
  /** Learning rate of the last step (linear decay from `lr`; default constant). */
  lrEnd?: number;
  joint: boolean;
  weights: JointWeights;
  /** Target hard copy every this many steps (joint only). */
  targetEvery: number;
  valid: readonly number[];
  batch: (step: number) => SegmentBatch;
}

/** Train; returns the total loss of the last step. */
export async function trainSynthetic(
  model: WorldActionModel,
  o: SyntheticTrainOptions,
): Promise<number> {
  const opt = new AdamW(model.parameters(), { lr: o.lr, weightDecay: 0.01, maxGradNorm: 1 });
  let last: Tensor | null = null;
  for (let step = 1; step <= o.steps; step++) {
    opt.lr = o.lr + ((o.lrEnd ?? o.lr) - o.lr) * (step - 1) / Math.max(1, o.steps - 1);
    const arrays = worldBatchArrays(o.batch(step), { validActions: () => o.valid });
    last?.dispose();
    last = tidy(() =>
      worldActionStep(model, opt, arrays, {
        joint: o.joint,
        stepSeed: stepSeed(0, step),
        weights: o.weights,
      }).total
    );
    opt.zeroGrad();
    if (o.joint && step % o.targetEvery === 0) model.updateTarget();
    await runtime().flush();
  }
  const [v] = await readAll([last!]);
  last!.dispose();
  opt.dispose();
  return v[0];
}

/** Q values [B][A] at the first timestep of each segment (evaluation mode). */
export async function readQ(model: WorldActionModel, b: SegmentBatch): Promise<number[][]> {
  const a = worldBatchArrays(b);
  model.eval();
  const q = noGrad(() =>
    tidy(() => {
      const out = model.forward(
        interleaved(a.B, a.L, a.P, a.obsTokens!, a.stepActions),
        tensor(a.taskIds, [a.B], "i32"),
      );
      return out.q!.values;
    })
  );
  model.train();
  const [v] = await readAll([q]);
  q.dispose();
  const A = model.cfg.actions, L = a.L;
  return Array.from(
    { length: a.B },
    (_, i) => Array.from(v.subarray((i * L) * A, (i * L + 1) * A)),
  );
}

/**
 * Argmax predictions of the world heads (evaluation mode): next-observation tokens
 * [B][(L-1)*P] and reward classes [B][L].
 */
export async function readPredictions(
  model: WorldActionModel,
  b: SegmentBatch,
): Promise<{ obs: Int32Array; reward: Int32Array }> {
  const a = worldBatchArrays(b);
  model.eval();
  const [obs, rew] = noGrad(() =>
    tidy(() => {
      const out = model.forward(
        interleaved(a.B, a.L, a.P, a.obsTokens!, a.stepActions),
        tensor(a.taskIds, [a.B], "i32"),
        { obsRows: nextObservationRows(model.cfg, a.L) },
      );
      return [argmax(out.obsLogits!, 2), argmax(out.rewardLogits!, 2)];
    })
  );
  model.train();
  const [o, r] = await readAll([obs, rew]);
  obs.dispose();
  rew.dispose();
  return { obs: o as Int32Array, reward: r as Int32Array };
}

function interleaved(
  B: number,
  L: number,
  P: number,
  obs: Int32Array,
  actions: Int32Array,
): Tensor {
  return reshape(
    concat([tensor(obs, [B, L, P], "i32"), tensor(actions, [B, L, 1], "i32")], 2),
    [B, L * (P + 1)],
  );
}
