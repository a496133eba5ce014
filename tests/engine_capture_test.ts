/**
 * Capture and replay (kernels/core/capture.ts) against the eager engine: the tiny
 * world-action model's training step (dropout on) replayed for 20 steps gives the same losses,
 * weights and optimizer moments bit for bit as the same step run eagerly; a new batch shape is
 * never replayed with the old one; 500 replays keep the pool's bytes in use flat; a warm
 * replay compiles nothing, creates no bind group and uploads at most 4 times.
 */
import assert from "node:assert/strict";
import { counterDelta, initRuntime } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tidy } from "../kernels/core/tensor.ts";
import type { SegmentBatch } from "../offline/mod.ts";
import { defaultValidActions, worldBatchArrays } from "../train/world_batch.ts";
import { worldActionStep } from "../train/world_step.ts";
import { captureWorldActionStep } from "../train/captured_world_step.ts";
import { mulberry32, stepSeed } from "../util/rng.ts";
import { Tokenizer } from "../models/tokenizer/model.ts";
import { TINY_TOKENIZER } from "../models/tokenizer/config.ts";
import { captureEncode } from "../models/tokenizer/captured_encode.ts";
import { assertSameWeightsAndMoments, tinyTrainee } from "./helpers/capture_training.ts";

const rt = await initRuntime();

/** The tiny model (init seed 3, dropout on) and its AdamW. */
const tinyModel = (L: number) => tinyTrainee(L, 3);

/** A random token batch (with padding after a terminal in item 0). */
function batch(B: number, L: number, P: number, vocab: number, seed: number) {
  const r = mulberry32(seed);
  const tasks = Int32Array.from({ length: B }, () => Math.floor(r() * 60));
  const mask = Uint8Array.from({ length: B * L }, (_, k) => (k === L - 1 && L > 1 ? 0 : 1));
  const terminals = Uint8Array.from({ length: B * L }, (_, k) => (k === L - 2 ? 1 : 0));
  const actions = Int32Array.from({ length: B * L }, (_, k) => {
    const valid = defaultValidActions(tasks[Math.floor(k / L)]);
    return mask[k] ? valid[Math.floor(r() * valid.length)] : 0;
  });
  const b = {
    index: 0,
    batchSize: B,
    segmentLength: L,
    form: "tokens",
    tokens: Uint16Array.from({ length: B * L * P }, () => Math.floor(r() * vocab)),
    actions,
    rewards: Float32Array.from({ length: B * L }, () => [0, 1, -1][Math.floor(r() * 3)]),
    terminals,
    mask,
    taskIds: tasks,
    gameIndex: new Int32Array(B),
    starts: new Float64Array(B),
  } as SegmentBatch;
  return worldBatchArrays(b);
}

function lossValues(p: { total: Tensor; obs: Tensor; td?: Tensor; cql?: Tensor }): Tensor[] {
  return [p.total, p.obs, p.td!, p.cql!];
}

Deno.test("capture: 20 replayed training steps equal eager bit for bit (dropout on)", async () => {
  const L = 3, B = 2;
  const eager = tinyModel(L);
  const replayed = tinyModel(L);
  const step = captureWorldActionStep(replayed.model, replayed.opt, { joint: true, strict: true });
  const P = eager.cfg.obsTokens;
  for (let k = 0; k < 20; k++) {
    const a = batch(B, L, P, eager.cfg.obsVocab, 100 + k);
    const seed = stepSeed(7, k);
    const [e, r] = await tidy(() => {
      const pe = worldActionStep(eager.model, eager.opt, a, { joint: true, stepSeed: seed });
      const pr = step(a, seed);
      return [lossValues(pe), lossValues(pr)];
    }) as unknown as [Tensor[], Tensor[]];
    const [ve, vr] = [await readAll(e), await readAll(r)];
    [...e, ...r].forEach((t) => t.dispose());
    ve.forEach((v, i) => assert.deepEqual(vr[i], v, `step ${k}: loss part ${i} differs`));
  }
  const stats = step.stats();
  assert.equal(stats.replays, 17, JSON.stringify(stats));
  assert.equal(eager.opt.step, replayed.opt.step);
  await assertSameWeightsAndMoments(eager, replayed);
  step.dispose();
});

Deno.test("capture: a new batch shape is not replayed with the old one; warm replay counters; memory flat over 500 replays", async () => {
  const L = 2;
  const eager = tinyModel(L);
  const replayed = tinyModel(L);
  const step = captureWorldActionStep(replayed.model, replayed.opt, { joint: true, strict: true });
  const P = eager.cfg.obsTokens, V = eager.cfg.obsVocab;
  const run = async (B: number, k: number) => {
    const a = batch(B, L, P, V, 500 + k);
    const seed = stepSeed(9, k);
    const [e, r] = tidy(() => [
      worldActionStep(eager.model, eager.opt, a, { joint: true, stepSeed: seed }).total,
      step(a, seed).total,
    ]);
    const [ve, vr] = await readAll([e, r]);
    e.dispose();
    r.dispose();
    assert.deepEqual(vr, ve, `B=${B}, step ${k}: replayed loss differs from eager`);
  };
  for (let k = 0; k < 4; k++) await run(2, k); // eager, record, record, replay
  assert.equal(step.stats().replays, 1);
  await run(3, 4); // new shape: eager, never the B=2 replay
  assert.equal(step.stats().replays, 1, "a B=3 batch was replayed with the B=2 capture");
  for (let k = 5; k < 8; k++) await run(3, k); // record, record, replay
  await run(2, 8); // the B=2 capture is still there
  assert.equal(step.stats().replays, 3);

  // Warm replay: no pipeline, no bind group, at most 4 uploads.
  const a = batch(2, L, P, V, 77);
  await rt.sync();
  const before = rt.counters();
  tidy(() => step(a, 1).total);
  const d = counterDelta(before, rt.counters());
  assert.ok(d.dispatches > 100, `dispatches ${d.dispatches}`);
  assert.equal(d.pipelinesCompiled, 0);
  assert.equal(d.bindGroupsCreated, 0);
  assert.ok(d.uploads <= 4, `uploads ${d.uploads}`);

  // 500 replays: the pool's bytes in use stay flat.
  await rt.sync();
  const used = rt.pool.stats().bytesInUse;
  for (let k = 0; k < 500; k++) {
    tidy(() => step(a, k).total);
    if (k % 50 === 49) {
      await rt.sync();
      assert.equal(rt.pool.stats().bytesInUse, used, `after ${k + 1} replays`);
    }
  }
  assert.equal(step.stats().replays, 504);
  step.dispose();
  eager.opt.dispose();
  replayed.opt.dispose();
});

Deno.test("capture: tokenizer encode replayed gives the eager tokens", async () => {
  const tok = new Tokenizer({ ...TINY_TOKENIZER, seed: 4 });
  const encode = captureEncode(tok);
  const per = TINY_TOKENIZER.inChannels * TINY_TOKENIZER.resolution ** 2;
  for (let k = 0; k < 5; k++) {
    const r = mulberry32(40 + k);
    const frames = Uint8Array.from({ length: 2 * per }, () => Math.floor(r() * 256));
    const [e, c] = tidy(() => [tok.encode(frames), encode(frames)]);
    const [ve, vc] = await readAll([e, c]);
    e.dispose();
    c.dispose();
    assert.deepEqual(vc, ve, `call ${k}: tokens differ`);
  }
  assert.equal(encode.stats().replays, 2, JSON.stringify(encode.stats()));
  encode.dispose();
});
