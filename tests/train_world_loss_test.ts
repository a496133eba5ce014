/**
 * The world loss (Eq. 8) against a float64 reference with finite-difference gradients, and
 * the masks of train/world_batch.ts against the authors' definitions (287 next-token targets
 * per 8-step segment, TD at the terminal last step, CQL at every real step).
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor } from "../kernels/core/tensor.ts";
import { worldLoss } from "../train/losses.ts";
import { worldBatchArrays } from "../train/world_batch.ts";
import type { SegmentBatch } from "../offline/mod.ts";
import { checkOp } from "./helpers/gradcheck.ts";
import { randArray } from "./helpers/reference.ts";

await initRuntime();

function ce(logits: Float64Array, row: number, C: number, target: number): number {
  let m = -Infinity;
  for (let c = 0; c < C; c++) m = Math.max(m, logits[row * C + c]);
  let z = 0;
  for (let c = 0; c < C; c++) z += Math.exp(logits[row * C + c] - m);
  return m + Math.log(z) - logits[row * C + target];
}

Deno.test("world loss: one masked mean per cross-entropy (tokens, reward, termination); gradients", async () => {
  const B = 2, R = 5, L = 3, V = 7;
  const obsT = [1, 6, 0, 2, 2, 3, 5, 5, 1, 0];
  const obsMask = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0];
  const rewT = [1, 2, 0, 1, 0, 2];
  const termT = [0, 0, 1, 0, 0, 0];
  const mask = [1, 1, 1, 1, 0, 0];
  const cpu = ([o, r, t]: Float64Array[]) => {
    let so = 0, no = 0, sr = 0, st = 0, n = 0;
    for (let i = 0; i < B * R; i++) {
      if (!obsMask[i]) continue;
      so += ce(o, i, V, obsT[i]);
      no++;
    }
    for (let i = 0; i < B * L; i++) {
      if (!mask[i]) continue;
      sr += ce(r, i, 3, rewT[i]);
      st += ce(t, i, 2, termT[i]);
      n++;
    }
    return Float64Array.of(so / no + sr / n + st / n);
  };
  await checkOp(
    "worldLoss",
    ([o, r, t]) =>
      worldLoss(o, r, t, {
        obsTokens: tensor(obsT, [B, R], "i32"),
        obsMask: tensor(obsMask, [B, R]),
        rewardClass: tensor(rewT, [B, L], "i32"),
        terminal: tensor(termT, [B, L], "i32"),
        mask: tensor(mask, [B, L]),
      }).world,
    cpu,
    [
      { data: randArray(B * R * V, 1, -2, 2), shape: [B, R, V] },
      { data: randArray(B * L * 3, 2, -2, 2), shape: [B, L, 3] },
      { data: randArray(B * L * 2, 3, -2, 2), shape: [B, L, 2] },
    ],
    { rtol: 1e-4 },
  );
  // The parts sum to the total.
  const parts = worldLoss(
    tensor(Float32Array.from(randArray(B * R * V, 4)), [B, R, V]),
    tensor(Float32Array.from(randArray(B * L * 3, 5)), [B, L, 3]),
    tensor(Float32Array.from(randArray(B * L * 2, 6)), [B, L, 2]),
    {
      obsTokens: tensor(obsT, [B, R], "i32"),
      obsMask: tensor(obsMask, [B, R]),
      rewardClass: tensor(rewT, [B, L], "i32"),
      terminal: tensor(termT, [B, L], "i32"),
      mask: tensor(mask, [B, L]),
    },
  );
  const [o, r, t, w] = await readAll([parts.obs, parts.reward, parts.end, parts.world]);
  assert.ok(Math.abs(o[0] + r[0] + t[0] - w[0]) < 1e-5);
});

/** Segments with L = 8, P = 36: full; terminal at 4 then padding; terminal at the last step. */
function segments(): SegmentBatch {
  const B = 3, L = 8, P = 36;
  const mask = new Uint8Array(B * L).fill(1);
  mask.fill(0, L + 5, 2 * L);
  const terminals = new Uint8Array(B * L);
  terminals[L + 4] = 1;
  terminals[2 * L + 7] = 1;
  return {
    index: 0,
    batchSize: B,
    segmentLength: L,
    form: "tokens",
    tokens: Uint16Array.from({ length: B * L * P }, (_, i) => i % 64),
    actions: Int32Array.from({ length: B * L }, (_, i) => i % 4),
    rewards: Float32Array.from({ length: B * L }, (_, i) => [0, 1, -1, 3][i % 4]),
    terminals,
    mask,
    taskIds: Int32Array.of(3, 49, 37),
    gameIndex: new Int32Array(B),
    starts: new Float64Array(B),
  } as SegmentBatch;
}

Deno.test("world batch: 287 next-token targets, TD at every transition incl. a terminal last step, CQL at every real step", () => {
  const a = worldBatchArrays(segments());
  const L = 8, P = 36, R = L * P - 1;
  assert.equal(R, 287);
  assert.equal(a.obsMask.length, 3 * R);
  const rowSum = (x: Float32Array, i: number, n: number) =>
    x.subarray(i * n, (i + 1) * n).reduce((s, v) => s + v, 0);
  // Full segment: all 287 targets (frame 0's tokens 1..35 included).
  assert.equal(rowSum(a.obsMask, 0, R), 287);
  // Real steps 0..4: 5*36 - 1 targets, the first 179 of the row.
  assert.equal(rowSum(a.obsMask, 1, R), 5 * P - 1);
  assert.equal(a.obsMask[R + 5 * P - 2], 1);
  assert.equal(a.obsMask[R + 5 * P - 1], 0);
  assert.equal(rowSum(a.obsMask, 2, R), 287);
  // TD: full non-terminal row 7 transitions (the last step has no next one); row 1 five
  // (0..3 bootstrapped, 4 terminal); row 2 eight (its last step is terminal).
  assert.deepEqual([0, 1, 2].map((i) => rowSum(a.tdMask, i, L)), [7, 5, 8]);
  assert.equal(a.tdMask[L - 1], 0);
  assert.equal(a.tdMask[2 * L + L - 1], 1);
  assert.equal(a.terminals[2 * L + L - 1], 1);
  // CQL and reward/termination rows: every real step.
  assert.deepEqual([0, 1, 2].map((i) => rowSum(a.stepMask, i, L)), [8, 5, 8]);
  // Rewards are clipped for the TD target; the classes use the sign.
  assert.equal(a.rewards[3], 1);
  assert.equal(a.rewardClass[3], 2);
  // One valid-action row per timestep: Assault (task 3) has 7 actions.
  assert.equal(a.valid.length, 3 * L * 18);
  assert.equal(rowSum(a.valid, 0, 18), 7);
});
