/**
 * Shared setup of the capture/replay training tests (engine_capture*_test.ts,
 * train_dp_replay_test.ts): the tiny world-action model in training mode with its AdamW, and
 * the bit-for-bit comparison of two such models after training.
 *
 * @module
 */
import assert from "node:assert/strict";
import { readAll } from "../../kernels/core/tensor.ts";
import { AdamW } from "../../kernels/nn/optim.ts";
import { type WorldActionConfig, worldActionConfig } from "../../models/world_action/configs.ts";
import { WorldActionModel } from "../../models/world_action/model.ts";

/** A tiny model, training mode (dropout 0.1), and its optimizer. */
export interface TinyTrainee {
  cfg: WorldActionConfig;
  model: WorldActionModel;
  opt: AdamW;
}

/** The tiny world-action model of L timesteps (init `seed`, dropout on) and its AdamW. */
export function tinyTrainee(L: number, seed: number): TinyTrainee {
  const cfg = worldActionConfig("tiny", { timesteps: L, dropout: 0.1, qDropout: 0.1, seed });
  const model = new WorldActionModel(cfg);
  model.train(true);
  const opt = new AdamW(model.namedParameters(), { lr: 1e-3, maxGradNorm: 1 });
  return { cfg, model, opt };
}

/** Asserts that two trainees hold the same weights and AdamW moments, bit for bit. */
export async function assertSameWeightsAndMoments(
  eager: TinyTrainee,
  replayed: TinyTrainee,
): Promise<void> {
  const we = await readAll(eager.model.namedParameters().map(([, p]) => p));
  const wr = await readAll(replayed.model.namedParameters().map(([, p]) => p));
  we.forEach((v, i) => assert.deepEqual(wr[i], v, `weight ${i} differs`));
  const me = await readAll(eager.opt.state.flatMap((s) => [s.m, s.v]));
  const mr = await readAll(replayed.opt.state.flatMap((s) => [s.m, s.v]));
  me.forEach((v, i) => assert.deepEqual(mr[i], v, `moment ${i} differs`));
}
