/**
 * Planning-synthesized segments (train/synthesis.ts) with a tiny world-action model of fixed
 * (seeded) weights: every synthetic segment equals what the planner decides — the best of the
 * K^H paths scored by an independent brute force over the uncached full-context model
 * (tests/helpers/wam_uncached_model.ts; with H = K = 2 the beam keeps every depth-0 child, so
 * the beam's choice is the best of all 4 paths) — and what the world model predicts for the
 * chosen actions (imagined rewards and greedy observation tokens). Also: the mixed batch of
 * fine-tuning holds exactly the preset's real/synthetic split, and the replay buffer is bounded.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor } from "../kernels/core/tensor.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { taskIdOf } from "../atari/task_ids.ts";
import { defaultValidActions } from "../train/world_batch.ts";
import { synthesisRows, synthesize, type SyntheticSegments } from "../train/synthesis.ts";
import { SyntheticBuffer } from "../train/synthetic_buffer.ts";
import { mixedBatch } from "../train/finetune_batch.ts";
import { BASE_CONFIG, FINETUNE_PRESETS } from "../train/finetune_options.ts";
import type { SegmentBatch } from "../offline/mod.ts";
import { UncachedPlanningModel } from "./helpers/wam_uncached_model.ts";
import { rng } from "./helpers/reference.ts";

await initRuntime();

const V = 16, L = 4, H = 2, K = 2, C = L - H, P = 36, A = 18, GAMMA = 0.99;
const N = 2;
const task = taskIdOf("Pong");
const validIds = defaultValidActions(task);
const valid = new Float32Array(N * A);
for (let i = 0; i < N; i++) for (const a of validIds) valid[i * A + a] = 1;

function contexts(seed: number) {
  const r = rng(seed);
  return {
    obs: Int32Array.from({ length: N * C * P }, () => Math.floor(r() * V)),
    actions: Int32Array.from({ length: N * (C - 1) }, () => validIds[Math.floor(r() * 6)]),
    rewards: Float32Array.from({ length: N * (C - 1) }, (_, i) => [0, 1, -1][i % 3]),
  };
}

/** Top-k valid actions by q, descending, lower id first on ties. */
function topValid(q: ArrayLike<number>, k: number): number[] {
  return [...validIds].sort((a, b) => (q[b] - q[a]) || (a - b)).slice(0, k);
}

/** Brute force over the K^H paths with the uncached model; the synthetic segments it implies. */
async function bruteForce(model: WorldActionModel, ctx: ReturnType<typeof contexts>) {
  const m = new UncachedPlanningModel(model);
  const tok = new Int32Array(N * (C * (P + 1) - 1));
  const T = C * (P + 1) - 1;
  for (let i = 0; i < N; i++) {
    let o = i * T;
    for (let s = 0; s < C; s++) {
      tok.set(ctx.obs.subarray((i * C + s) * P, (i * C + s + 1) * P), o);
      o += P;
      if (s < C - 1) tok[o++] = ctx.actions[i * (C - 1) + s];
    }
  }
  const root = m.prefill(
    tensor(tok, [N, T], "i32"),
    tensor(new Int32Array(N).fill(task), [N], "i32"),
  );
  const [q0] = await readAll([root.q]) as Float32Array[];
  // Depth 0: the K best root actions of each env.
  const a0 = Array.from({ length: N }, (_, i) => topValid(q0.subarray(i * A, (i + 1) * A), K));
  const s1 = m.branch(root.state, tensor(a0.flatMap((_, i) => Array(K).fill(i)), [N * K], "i32"));
  const im1 = m.imagine(s1, tensor(a0.flat(), [N * K], "i32"));
  const [r1, o1, q1] = await readAll([im1.reward, im1.obs, im1.q]);
  const a1 = Array.from({ length: N * K }, (_, j) => topValid(q1.subarray(j * A, (j + 1) * A), K));
  const s2 = m.branch(s1, tensor(a1.flatMap((_, j) => Array(K).fill(j)), [N * K * K], "i32"));
  const im2 = m.imagine(s2, tensor(a1.flat(), [N * K * K], "i32"));
  const [r2, o2, q2] = await readAll([im2.reward, im2.obs, im2.q]);
  const want: SyntheticSegments = {
    count: N,
    L,
    P,
    tokens: new Int32Array(N * L * P),
    actions: new Int32Array(N * L),
    rewards: new Float32Array(N * L),
    taskIds: new Int32Array(N).fill(task),
  };
  for (let i = 0; i < N; i++) {
    let best = -Infinity, bj = -1, bl = -1;
    for (let j = i * K; j < (i + 1) * K; j++) {
      for (let l = j * K; l < (j + 1) * K; l++) {
        const leaf = q2.subarray(l * A, (l + 1) * A);
        const v = Math.max(...validIds.map((a) => leaf[a]));
        const score = r1[j] + GAMMA * r2[l] + GAMMA * GAMMA * v;
        if (score > best) [best, bj, bl] = [score, j, l];
      }
    }
    want.tokens.set(ctx.obs.subarray(i * C * P, (i + 1) * C * P), i * L * P);
    want.tokens.set(o1.subarray(bj * P, (bj + 1) * P), (i * L + C) * P);
    want.tokens.set(o2.subarray(bl * P, (bl + 1) * P), (i * L + C + 1) * P);
    const acts = [
      ...ctx.actions.subarray(i * (C - 1), (i + 1) * (C - 1)),
      a0[i][bj - i * K],
      a1[bj][bl - bj * K],
    ];
    const rews = [...ctx.rewards.subarray(i * (C - 1), (i + 1) * (C - 1)), r1[bj], r2[bl]];
    acts.push(acts.at(-1)!); // the last step repeats the path's last action and reward
    rews.push(rews.at(-1)!);
    want.actions.set(acts, i * L);
    want.rewards.set(rews, i * L);
  }
  for (const s of [root.state, s1, s2]) s.dispose();
  return want;
}

Deno.test("synthetic segments equal the planner's best path and the world model's predictions", async () => {
  for (const seed of [1, 2]) {
    const model = new WorldActionModel(
      worldActionConfig("tiny", { obsVocab: V, timesteps: L, seed }),
    );
    const ctx = contexts(seed + 10);
    const got = await synthesize(new WamPlanningModel(model), {
      obs: tensor(ctx.obs, [N, C, P], "i32"),
      actions: ctx.actions,
      rewards: ctx.rewards,
      taskIds: new Int32Array(N).fill(task),
      valid,
    }, { horizon: H, beamWidth: K, gamma: GAMMA });
    const want = await bruteForce(model, ctx);
    assert.equal(got.L, L);
    assert.deepEqual(got.actions, want.actions, `seed ${seed}: actions`);
    assert.deepEqual(got.rewards, want.rewards, `seed ${seed}: rewards`);
    assert.deepEqual(got.tokens, want.tokens, `seed ${seed}: observation tokens`);
    assert.deepEqual(got.taskIds, want.taskIds);
    for (const a of got.actions) assert.ok(validIds.includes(a), `action ${a} is valid for Pong`);
  }
});

Deno.test("synthesis rows: only segments whose last L - H steps are real", () => {
  const mask = Uint8Array.from([1, 1, 1, 1, /**/ 1, 1, 1, 0, /**/ 0, 0, 1, 1, /**/ 1, 0, 1, 1]);
  assert.deepEqual(synthesisRows(mask, 4, 4, 2), [0, 2, 3]);
});

function realBatch(B: number, seed: number): SegmentBatch {
  const r = rng(seed);
  return {
    index: 0,
    batchSize: B,
    segmentLength: L,
    form: "tokens",
    tokens: Uint16Array.from({ length: B * L * P }, () => Math.floor(r() * V)),
    actions: Int32Array.from({ length: B * L }, () => validIds[Math.floor(r() * 6)]),
    rewards: new Float32Array(B * L),
    terminals: new Uint8Array(B * L),
    mask: new Uint8Array(B * L).fill(1),
    taskIds: new Int32Array(B).fill(task),
    gameIndex: new Int32Array(B),
    starts: new Float64Array(B),
  };
}

Deno.test("mixed batches hold exactly the preset's real/synthetic split; buffer is bounded", () => {
  for (const [name, want] of [["paper", [24, 8]], ["public", [16, 16]]] as const) {
    const p = { ...BASE_CONFIG, ...FINETUNE_PRESETS[name] };
    const real = p.batch - p.syntheticBatch;
    assert.deepEqual([real, p.syntheticBatch], want, name);
    const buf = new SyntheticBuffer(5, L, P);
    const src = realBatch(real, 3);
    for (let k = 0; k < 3; k++) {
      buf.add({
        count: 3,
        L,
        P,
        tokens: new Int32Array(3 * L * P).fill(k),
        actions: new Int32Array(3 * L).fill(k),
        rewards: new Float32Array(3 * L),
        taskIds: new Int32Array(3).fill(task),
      });
    }
    assert.equal(buf.size, 5); // 9 added, 5 kept: the oldest (k = 0) are gone
    const syn = buf.sample(p.syntheticBatch, 0, 7);
    assert.ok(syn.actions.every((a) => a === 1 || a === 2), "only the newest 5 are sampled");
    const m = mixedBatch(src, syn);
    assert.equal(m.arrays.B, p.batch);
    assert.equal(m.real, want[0]);
    assert.equal(m.synthetic, want[1]);
    const items = (mask: Float32Array, per: number) =>
      Array.from(
        { length: m.arrays.B },
        (_, i) => mask.subarray(i * per, (i + 1) * per).some((v) => v > 0),
      );
    // COMBO: push-up rows on the real items only, push-down rows on all; world loss real only.
    assert.equal(items(m.positiveMask, L).filter(Boolean).length, want[0]);
    assert.ok(items(m.positiveMask, L).slice(0, want[0]).every(Boolean));
    assert.equal(items(m.negativeMask, L).filter(Boolean).length, p.batch);
    assert.equal(items(m.arrays.stepMask, L).filter(Boolean).length, want[0]);
    assert.equal(items(m.arrays.tdMask, L).filter(Boolean).length, p.batch);
    // Bytes round trip.
    const back = SyntheticBuffer.deserialize(buf.serialize());
    assert.deepEqual([back.size, back.next], [buf.size, buf.next]);
    assert.deepEqual(back.sample(4, 1, 2), buf.sample(4, 1, 2));
  }
});
