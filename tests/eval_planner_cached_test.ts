/**
 * The planner on the real (tiny, randomly initialised) world-action model: KV-cache
 * branching (eval/wam_planning_model.ts) against recomputing every child's full context
 * (tests/helpers/wam_uncached_model.ts).
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { maskedArgmax } from "../kernels/ops/mod.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { beamSearch, type BeamSearchOptions } from "../eval/beam_search.ts";
import type { PlanningModel } from "../eval/planning_model.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { UncachedPlanningModel } from "./helpers/wam_uncached_model.ts";

await initRuntime();

// A 4-timestep context keeps the uncached path (a full forward per imagined token) quick.
const cfg = worldActionConfig("tiny", { seed: 3, timesteps: 4 });
const model = new WorldActionModel(cfg);
const cached = new WamPlanningModel(model);
const uncached = new UncachedPlanningModel(model);

/** N random contexts of `steps` timesteps (the last one only its observation). */
function contexts(N: number, steps: number, seed: number) {
  let s = seed;
  const rnd = (n: number) => (s = (s * 1103515245 + 12345) % 2147483648) % n;
  const t = steps * 37 - 1;
  const toks = Int32Array.from({ length: N * t }, (_, i) => {
    const off = (i % t) % 37;
    return off === 36 ? rnd(4) : rnd(cfg.obsVocab);
  });
  const valid = Array.from(
    { length: N },
    (_, n) => Array.from({ length: 18 }, (_, a) => (a < 4 + 3 * n ? 1 : 0)),
  );
  return {
    tokens: tensor(toks, [N, t], "i32"),
    tasks: tensor(Int32Array.from({ length: N }, (_, n) => [39, 3, 49][n % 3]), [N], "i32"),
    valid: tensor(valid.flat(), [N, 18]),
  };
}

async function plan(
  m: PlanningModel,
  N: number,
  steps: number,
  opts: BeamSearchOptions,
  seed: number,
) {
  const outs = tidy(() => {
    const p = beamSearch(m, contexts(N, steps, seed), opts);
    return [p.actions, p.values!, p.paths!];
  });
  const got = await readAll(outs);
  outs.forEach((t) => t.dispose());
  return got;
}

Deno.test("planner on the tiny world-action model: KV-cache branching equals recomputing full contexts", async () => {
  for (const [steps, K, N] of [[2, 2, 2]]) {
    const opts = { horizon: 2, beamWidth: K, keepPaths: true };
    const [a1, v1, p1] = await plan(cached, N, steps, opts, 7 + steps);
    const [a2, v2, p2] = await plan(uncached, N, steps, opts, 7 + steps);
    assert.deepEqual(Array.from(a1), Array.from(a2), `actions (${steps} steps, K ${K})`);
    for (let i = 0; i < v1.length; i++) {
      assert.ok(Math.abs(v1[i] - v2[i]) < 1e-4, `value ${i}: ${v1[i]} vs ${v2[i]}`);
    }
    assert.deepEqual(Array.from(p1), Array.from(p2), "imagined observation tokens");
    assert.equal(p1.length, N * 2 * 36);
  }
});

Deno.test("planner on the tiny world-action model: batched environments decide as each alone", async () => {
  const opts = { horizon: 2, beamWidth: 2, keepPaths: true };
  const [a, v, p] = await plan(cached, 2, 2, opts, 21);
  const c = contexts(2, 2, 21);
  const rows = await readAll([c.tokens, c.tasks, c.valid]);
  [c.tokens, c.tasks, c.valid].forEach((t) => t.dispose());
  const t = c.tokens.shape[1];
  for (let i = 0; i < 2; i++) {
    const outs = tidy(() => {
      const r = beamSearch(cached, {
        tokens: tensor(rows[0].subarray(i * t, (i + 1) * t), [1, t], "i32"),
        tasks: tensor(rows[1].subarray(i, i + 1), [1], "i32"),
        valid: tensor(rows[2].subarray(i * 18, (i + 1) * 18), [1, 18]),
      }, opts);
      return [r.actions, r.values!, r.paths!];
    });
    const [a1, v1, p1] = await readAll(outs);
    outs.forEach((x) => x.dispose());
    assert.equal(a1[0], a[i], `env ${i}`);
    assert.ok(Math.abs(v1[0] - v[i]) < 1e-4);
    assert.deepEqual(Array.from(p1), Array.from(p.subarray(i * 72, (i + 1) * 72)));
  }
});

Deno.test("planner on the tiny world-action model: K = 1 equals the greedy Q policy", async () => {
  const [a] = await plan(cached, 3, 2, { horizon: 2, beamWidth: 1, keepPaths: true }, 5);
  const g = tidy(() => {
    const c = contexts(3, 2, 5);
    const { state, q } = cached.prefill(c.tokens, c.tasks);
    state.dispose();
    return maskedArgmax(q, c.valid);
  }) as Tensor;
  assert.deepEqual(Array.from(a), Array.from(await g.read()));
  g.dispose();
});
