/**
 * Two recordings of a step are compared buffer for buffer (kernels/core/capture.ts), so which
 * of the step's tensors share a pooled buffer must depend on the step alone. It used to depend
 * on what else was free: while recording, the pool handed out its lowest-id free buffer, which
 * in the first recording was often a buffer left free from before (fresh) and in the second,
 * where the first recording's buffers are pinned, one the step itself had just freed (shared).
 * The two recordings then differed (JOWA-150M stage 1: "two recordings differ (dispatch 290
 * 'matmul 2x768x16 tA sumA')") and the step ran eagerly for good.
 *
 * Here the tiny stage-1 step (world loss, observation tokens made on the GPU) runs with spare
 * free buffers of the lowest ids released just before its first recording: the situation
 * above, reproduced on purpose. Strict capture throws on a fallback; replays equal the eager
 * step bit for bit.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { BufferPool, type PooledBuffer } from "../kernels/core/buffer_pool.ts";
import { keep, readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { capture } from "../kernels/core/capture.ts";
import { add, mul, sumAll } from "../kernels/ops/mod.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import type { SegmentBatch } from "../offline/mod.ts";
import { worldBatchArrays } from "../train/world_batch.ts";
import { worldActionStep, type WorldLossParts } from "../train/world_step.ts";
import type { WorldBatchArrays } from "../train/world_batch.ts";
import { captureWorldActionStep } from "../train/captured_world_step.ts";
import { mulberry32, stepSeed } from "../util/rng.ts";
import { assertSameWeightsAndMoments, tinyTrainee } from "./helpers/capture_training.ts";

const rt = await initRuntime();

/** The tiny model (init seed 5, dropout on) and its AdamW. */
const tinyModel = (L: number) => tinyTrainee(L, 5);

/** A frame-form batch's arrays (no host tokens) plus its tokens, as the tokenizer gives them. */
function stage1Batch(B: number, L: number, P: number, vocab: number, seed: number) {
  const r = mulberry32(seed);
  const b = {
    index: 0,
    batchSize: B,
    segmentLength: L,
    form: "frames",
    actions: Int32Array.from({ length: B * L }, () => Math.floor(r() * 18)),
    rewards: Float32Array.from({ length: B * L }, () => [0, 1, -1][Math.floor(r() * 3)]),
    terminals: new Uint8Array(B * L),
    mask: new Uint8Array(B * L).fill(1),
    taskIds: Int32Array.from({ length: B }, () => Math.floor(r() * 60)),
    gameIndex: new Int32Array(B),
    starts: new Float64Array(B),
  } as unknown as SegmentBatch;
  const a = worldBatchArrays(b);
  const tokens = Int32Array.from({ length: B * L * P }, () => Math.floor(r() * vocab));
  return { a: { ...a, P }, tokens };
}

Deno.test("capture: the pool reuses a recording step's own freed buffers before other free ones", () => {
  const pool = new BufferPool(rt.device, rt.ctx.limits.maxBufferSize);
  const [o1, o2] = [pool.acquire(1024), pool.acquire(1024)]; // ids 1, 2: outside any arena
  pool.release(o1);
  pool.beginArena();
  const t1 = pool.acquire(1024); // the free outside buffer joins the arena
  const t2 = pool.acquire(1024); // a new buffer, id 3
  assert.equal(t1, o1);
  pool.release(o2); // freed outside the step (a lower id than t2)
  pool.release(t2);
  // The lowest free id is o2's; the step's own freed buffer t2 comes back instead.
  assert.equal(pool.acquire(1024), t2);
  assert.equal(pool.acquire(1024), o2); // then the others, as usual
  const arena = pool.endArena();
  assert.deepEqual([...arena].map((b) => b.id), [o1.id, t2.id, o2.id]);
  pool.unpin(arena);
  for (const b of [o1, o2, t2]) b.buffer.destroy();
});

Deno.test("capture: a step that frees a buffer it held from before (a gradient) replays", async () => {
  // The 150M stage-1 pattern: a buffer held across calls (a parameter's gradient) is freed
  // inside the step (zeroGrad) after the step freed a temporary (a dropout mask), then the step
  // allocates (the new gradient). Call 2 used to take the old gradient's buffer (lower id) and
  // call 3, where that buffer is call 2's and pinned, the temporary's: different buffers.
  const n = 7000; // a size class nothing else in this file uses
  const make = (replay: boolean) => {
    let grad: Tensor | null = null;
    const step = capture((x: Float32Array) => {
      const t = tensor(x, [n]);
      mul(t, t).dispose(); // a temporary freed mid-step
      grad?.dispose();
      grad = keep(add(t, t));
      return sumAll(mul(grad, t));
    }, { name: "grad-like", replay, strict: true });
    return { step, grad: () => grad! };
  };
  const replayed = make(true), eager = make(false);
  for (let k = 0; k < 6; k++) {
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + k));
    const r = tidy(() => replayed.step(x)), e = tidy(() => eager.step(x));
    const [vr, ve, gr, ge] = await readAll([r, e, replayed.grad(), eager.grad()]);
    [r, e].forEach((t) => t.dispose());
    assert.deepEqual(vr, ve, `call ${k}: output differs`);
    assert.deepEqual(gr, ge, `call ${k}: the held buffer differs`);
  }
  assert.equal(replayed.step.stats().replays, 3, JSON.stringify(replayed.step.stats()));
  replayed.step.dispose();
  [replayed, eager].forEach((s) => s.grad().dispose());
});

/**
 * Hold every free buffer of `bytes`' size class (acquire until the pool makes a new one), so
 * the step finds none free but those it frees itself: the situation of the 150M step.
 */
function drain(bytes: number, held: PooledBuffer[]): void {
  for (;;) {
    const before = rt.pool.stats().bytesAllocated;
    held.push(rt.pool.acquire(bytes));
    if (rt.pool.stats().bytesAllocated !== before) return;
  }
}

Deno.test("capture: a stage-1 step with GPU tokens replays (strict) and equals eager bit for bit", async () => {
  const L = 2, B = 2;
  const eager = tinyModel(L);
  const replayed = tinyModel(L);
  const step = captureWorldActionStep(replayed.model, replayed.opt, { joint: false, strict: true });
  const P = eager.cfg.obsTokens;
  const batches = Array.from(
    { length: 6 },
    (_, k) => stage1Batch(B, L, P, eager.cfg.obsVocab, 300 + k),
  );
  const held: PooledBuffer[] = [];
  const run = async (
    f: (a: WorldBatchArrays, seed: number, ids: Tensor) => WorldLossParts,
    before?: (k: number) => void,
  ) => {
    const losses: Float32Array[][] = [];
    for (let k = 0; k < batches.length; k++) {
      before?.(k);
      const ids = tensor(batches[k].tokens, [B, L, P], "i32");
      const r = tidy(() => {
        const p = f(batches[k].a, stepSeed(11, k), ids);
        return [p.total, p.obs, p.reward, p.end];
      });
      losses.push(await readAll(r) as Float32Array[]);
      [...r, ids].forEach((t) => t.dispose());
    }
    return losses;
  };
  // Calls 2 and 3 record: the small buffers free then are the previous step's gradients only
  // (freed by its zeroGrad; in call 3 they are call 2's, pinned), not leftovers of other work.
  const lr = await run(
    (a, seed, ids) => step(a, seed, ids),
    (k) => (k === 1 || k === 2) && [256, 512].forEach((b) => drain(b, held)),
  );
  held.splice(0).forEach((b) => rt.pool.release(b));
  const stats = step.stats();
  assert.equal(stats.replays, 3, JSON.stringify(stats));
  const le = await run((a, seed, ids) =>
    worldActionStep(eager.model, eager.opt, a, { joint: false, stepSeed: seed, obsTokens: ids })
  );
  le.forEach((v, k) => assert.deepEqual(lr[k], v, `step ${k}: losses differ`));
  await assertSameWeightsAndMoments(eager, replayed);
  step.dispose();
  [eager, replayed].forEach((m) => m.opt.dispose());
});

Deno.test("capture: the JOWA-150M stage-1 step replays (dry run: recorded, not executed)", async () => {
  // The config whose two recordings differed (at the ends head's bias gradient); a short
  // window keeps it quick. Dry run: executing a 150M step takes minutes on a CPU adapter.
  const cfg = worldActionConfig("150M", { timesteps: 2 });
  const model = new WorldActionModel(cfg);
  model.train(true);
  const opt = new AdamW(model.namedParameters(), { lr: 1e-4, maxGradNorm: 1 });
  const step = captureWorldActionStep(model, opt, { joint: false, strict: true });
  rt.dryRun = true;
  try {
    for (let k = 0; k < 4; k++) {
      const { a, tokens } = stage1Batch(2, cfg.timesteps, cfg.obsTokens, cfg.obsVocab, 900 + k);
      const ids = tensor(tokens, [2, cfg.timesteps, cfg.obsTokens], "i32");
      const loss = tidy(() => step(a, stepSeed(13, k), ids).total);
      await readAll([loss]);
      [loss, ids].forEach((t) => t.dispose());
    }
  } finally {
    rt.dryRun = false;
  }
  assert.equal(step.stats().replays, 1, JSON.stringify(step.stats()));
  step.dispose();
  opt.dispose();
  model.parameters().forEach((p) => p.dispose());
});
