/**
 * KV caches above the adapter's largest storage binding are split into parts of whole
 * environments (models/world_action/_kv_cache_parts.ts). With an artificially low binding
 * limit, the tiny model's planner splits its prefill and branched caches (also a part branched
 * from a part) and decides as with one cache per layer; the one-cache planner itself equals
 * recomputing full contexts (tests/eval_planner_cached_test.ts). A single environment's
 * sequences above the limit are refused with a clear error.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { KvCache } from "../models/world_action/kv_cache.ts";
import { kvCacheLimits } from "../models/world_action/_kv_cache_parts.ts";
import { beamSearch, type BeamSearchOptions } from "../eval/beam_search.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { capturePlanner } from "../eval/captured_planner.ts";

await initRuntime();

// A 4-timestep context (capacity 148): a sequence's layer cache is 37,888 bytes.
const cfg = worldActionConfig("tiny", { seed: 8, timesteps: 4 });
const model = new WorldActionModel(cfg);
const planner = new WamPlanningModel(model);
const N = 4;

function inputs(steps: number, seed: number) {
  let s = seed;
  const rnd = (n: number) => (s = (s * 1103515245 + 12345) % 2147483648) % n;
  const t = steps * 37 - 1;
  const toks = Int32Array.from({ length: N * t }, (_, i) => {
    const off = (i % t) % 37;
    return off === 36 ? rnd(4) : rnd(cfg.obsVocab);
  });
  const valid = Array.from({ length: N * 18 }, (_, i) => (i % 18 < 5 + (i % 3) ? 1 : 0));
  return {
    tokens: tensor(toks, [N, t], "i32"),
    tasks: tensor(Int32Array.from({ length: N }, (_, n) => [39, 3, 49, 7][n]), [N], "i32"),
    valid: tensor(valid, [N, 18]),
  };
}

/** Plan under a binding limit (0: the device's); the parts of every cache made, in order. */
async function plan(limit: number, steps: number, opts: BeamSearchOptions) {
  const parts: number[] = [];
  const create = KvCache.create, branch = KvCache.prototype.branch;
  let depth = 0; // a split cache creates its parts with create: count the outer one only
  KvCache.create = (...a: Parameters<typeof create>) => {
    depth++;
    try {
      const c = create(...a);
      if (depth === 1) parts.push(c.parts?.length ?? 1);
      return c;
    } finally {
      depth--;
    }
  };
  KvCache.prototype.branch = function (this: KvCache, p) {
    const c = branch.call(this, p);
    parts.push(c.parts?.length ?? 1);
    return c;
  };
  kvCacheLimits.maxPartBytes = limit;
  try {
    const outs = tidy(() => {
      const r = beamSearch(planner, inputs(steps, 11 + steps), { ...opts, keepPaths: true });
      return [r.actions, r.values!, r.paths!];
    });
    const got = await readAll(outs);
    outs.forEach((t) => t.dispose());
    return { got, parts };
  } finally {
    kvCacheLimits.maxPartBytes = 0;
    KvCache.create = create;
    KvCache.prototype.branch = branch;
  }
}

async function assertSame(limit: number, steps: number, opts: BeamSearchOptions) {
  const whole = await plan(0, steps, opts);
  const split = await plan(limit, steps, opts);
  assert.ok(whole.parts.every((p) => p === 1), `whole: ${whole.parts}`);
  const [a1, v1, p1] = whole.got, [a2, v2, p2] = split.got;
  assert.deepEqual(Array.from(a2), Array.from(a1), "actions");
  v1.forEach((v, i) => assert.ok(Math.abs(v2[i] - v) < 1e-5, `value ${i}: ${v2[i]} vs ${v}`));
  assert.deepEqual(Array.from(p2), Array.from(p1), "imagined observation tokens");
  return split.parts;
}

Deno.test("KV cache split into parts: branched parts (and parts of parts) plan as one cache", async () => {
  // 200,000 bytes: the prefill (4 sequences) fits; 8 children split 2+2 environments; 16
  // grandchildren (and the depth after) one environment a part, copied from those parts.
  const parts = await assertSame(200_000, 1, { horizon: 3, beamWidth: 2 });
  assert.deepEqual(parts, [1, 2, 4, 4]);
});

Deno.test("KV cache split into parts: a split prefill, then branching across its parts", async () => {
  // 100,000 bytes: the prefill splits 2+2 environments, its 8 children 1+1+1+1 (the last two
  // from the second part: parents shifted to it).
  const parts = await assertSame(100_000, 2, { horizon: 1, beamWidth: 2 });
  assert.deepEqual(parts, [2, 4]);
});

Deno.test("KV cache split into parts: one environment above the limit is refused clearly", async () => {
  await assert.rejects(
    () => plan(100_000, 1, { horizon: 2, beamWidth: 2 }),
    /KV cache: 4 sequences of one environment need 151552 bytes a layer, above the adapter's largest storage binding \(100000 bytes\)/,
  );
});

Deno.test("KV cache split into parts: a replayed planning call equals the eager one bit for bit", async () => {
  const opts = { horizon: 2, beamWidth: 2 };
  kvCacheLimits.maxPartBytes = 200_000; // children 2+2 environments, grandchildren 1 each
  const plan = capturePlanner(planner, { ...opts, strict: true });
  try {
    const O = cfg.obsTokens;
    for (const seed of [4, 4, 4, 4, 6]) {
      const inp = inputs(2, seed); // window: one past timestep and the current observation
      const [toks] = await readAll([inp.tokens]) as unknown as [Int32Array];
      const t = inp.tokens.shape[1], pastLen = t - O;
      const past = new Int32Array(N * pastLen), cur = new Int32Array(N * O);
      for (let n = 0; n < N; n++) {
        past.set(toks.subarray(n * t, n * t + pastLen), n * pastLen);
        cur.set(toks.subarray(n * t + pastLen, (n + 1) * t), n * O);
      }
      const [tasks, valid] = await readAll([inp.tasks, inp.valid]);
      const current = tensor(cur, [N, O], "i32");
      const out = plan({
        current,
        past,
        tasks: Int32Array.from(tasks),
        valid: Float32Array.from(valid),
        keepPaths: true,
      });
      const got = await readAll([out.actions, out.values!, out.paths!]);
      current.dispose();
      const eager = tidy(() => {
        const p = beamSearch(planner, inp, { ...opts, keepPaths: true });
        return [p.actions, p.values!, p.paths!];
      });
      const want = await readAll(eager);
      eager.forEach((x) => x.dispose());
      want.forEach((w, k) => assert.deepEqual(got[k], w, `seed ${seed} output ${k}`));
    }
    assert.equal(plan.stats().replays, 2, JSON.stringify(plan.stats()));
  } finally {
    plan.dispose();
    kvCacheLimits.maxPartBytes = 0;
  }
});
