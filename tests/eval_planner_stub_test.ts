/** Beam-search planner on hand-built tabular world models (eval/beam_search.ts). */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { maskedArgmax } from "../kernels/ops/mod.ts";
import { beamSearch, type BeamSearchOptions } from "../eval/beam_search.ts";
import { randomMdp, StubPlanningModel, type TabularMdp } from "./helpers/eval_stub_model.ts";
import { referencePlan } from "./helpers/eval_beam_reference.ts";

await initRuntime();

const A = 18;

/** Contexts whose last token is the root node; tasks are unused by the stub. */
function inputs(roots: number[], valid: number[][]) {
  const N = roots.length;
  const t = 5;
  const toks = new Int32Array(N * t);
  roots.forEach((r, i) => (toks[i * t + t - 1] = r));
  return {
    tokens: tensor(toks, [N, t], "i32"),
    tasks: tensor(new Int32Array(N), [N], "i32"),
    valid: tensor(valid.flat(), [N, A]),
  };
}

async function plan(
  model: StubPlanningModel,
  roots: number[],
  valid: number[][],
  opts: BeamSearchOptions,
) {
  const out = tidy(() => {
    const p = beamSearch(model, inputs(roots, valid), opts);
    return [p.actions, p.values, p.paths].filter((t): t is Tensor => t !== null);
  });
  const got = await readAll(out);
  out.forEach((t) => t.dispose());
  return got;
}

async function greedy(model: StubPlanningModel, roots: number[], valid: number[][]) {
  const a = tidy(() => {
    const inp = inputs(roots, valid);
    const { state, q } = model.prefill(inp.tokens, inp.tasks);
    state.dispose();
    return maskedArgmax(q, inp.valid);
  });
  const [got] = await readAll([a]);
  a.dispose();
  return Array.from(got);
}

function mask(actions: number[]): number[] {
  const m = new Array(A).fill(0);
  for (const a of actions) m[a] = 1;
  return m;
}

/**
 * Root 0, valid actions {0, 2, 5}; invalid action 7 has the highest Q everywhere.
 * 0 -> node 1 (reward 0): Q(1) looks good (1.0) but every action from 1 gives reward 0.
 * 2 -> node 2 (reward 0): Q(2) looks worse (0.5) but action 5 from 2 gives reward +1.
 * 5 -> node 3 (reward 0): nothing.
 * Greedy and H = 1 choose 0; H = 2 sees the reward two steps ahead and chooses 2.
 */
function lookaheadMdp(): TabularMdp {
  const S = 6;
  const mdp: TabularMdp = {
    states: S,
    actions: A,
    next: new Int32Array(S * A).fill(5),
    reward: new Float32Array(S * A),
    q: new Float32Array(S * A),
  };
  const set = (s: number, a: number, next: number, r: number) => {
    mdp.next[s * A + a] = next;
    mdp.reward[s * A + a] = r;
  };
  for (let s = 0; s < S; s++) mdp.q[s * A + 7] = 100; // invalid: must never be chosen
  mdp.q.set([1.0, 0, 0.9, 0, 0, 0.1], 0 * A);
  mdp.q.set([1.0, 0, 1.0, 0, 0, 1.0], 1 * A);
  mdp.q.set([0.5, 0, 0.4, 0, 0, 0.45], 2 * A);
  set(0, 0, 1, 0);
  set(0, 2, 2, 0);
  set(0, 5, 3, 0);
  set(2, 5, 4, 1);
  return mdp;
}

Deno.test("planner: H = 2 finds the action whose reward shows two steps ahead; greedy and H = 1 do not", async () => {
  const model = new StubPlanningModel(lookaheadMdp());
  const valid = [mask([0, 2, 5])];
  assert.deepEqual(await greedy(model, [0], valid), [0]);
  const [h1] = await plan(model, [0], valid, { horizon: 1, beamWidth: 2 });
  assert.deepEqual(Array.from(h1), [0]);
  const [h2, v2] = await plan(model, [0], valid, { horizon: 2, beamWidth: 2 });
  assert.deepEqual(Array.from(h2), [2]);
  // 0 + 0.99 * 1 + 0.99^2 * max Q(4) (= 0)
  assert.ok(Math.abs(v2[0] - 0.99) < 1e-6, `value ${v2[0]}`);
  // K = 1 cannot see it either: the greedy first action is the only one expanded.
  const [k1] = await plan(model, [0], valid, { horizon: 2, beamWidth: 1 });
  assert.deepEqual(Array.from(k1), [0]);
  model.dispose();
});

Deno.test("planner: K = 1 (any H) and H = 0 (any K) equal the greedy policy", async () => {
  const model = new StubPlanningModel(randomMdp(40, A, 7));
  const roots = [0, 3, 9, 17, 25, 39];
  const valid = roots.map((_, i) => mask([...Array(A).keys()].filter((a) => (a + i) % 3 !== 0)));
  const want = await greedy(model, roots, valid);
  for (const horizon of [1, 2, 3]) {
    const [got] = await plan(model, roots, valid, { horizon, beamWidth: 1 });
    assert.deepEqual(Array.from(got), want, `K = 1, H = ${horizon}`);
  }
  const [h0] = await plan(model, roots, valid, { horizon: 0, beamWidth: 4 });
  assert.deepEqual(Array.from(h0), want);
  model.dispose();
});

Deno.test("planner: batched environments decide as each environment alone and as the CPU reference", async () => {
  const mdp = randomMdp(30, A, 11);
  const model = new StubPlanningModel(mdp);
  const roots = [1, 4, 4, 8, 13, 21, 29];
  // Different games: different valid sets, one with fewer valid actions than K (dead children).
  const valid = [
    mask([0, 1, 2, 3, 4, 5]),
    mask([0, 1, 11, 12]),
    mask([...Array(A).keys()]),
    mask([0, 3]),
    mask([0, 1, 2, 3, 4, 11, 12]),
    mask([2, 6, 9, 14, 17]),
    mask([0, 1, 3, 4]),
  ];
  for (const [horizon, beamWidth] of [[1, 2], [2, 2], [2, 3], [3, 3], [2, 4]]) {
    const opts = { horizon, beamWidth, keepPaths: true };
    const [acts, vals, paths] = await plan(model, roots, valid, opts);
    for (let i = 0; i < roots.length; i++) {
      const ref = referencePlan(mdp, roots[i], valid[i], horizon, beamWidth);
      const ctx = `env ${i}, H ${horizon}, K ${beamWidth}`;
      assert.equal(acts[i], ref.action, ctx);
      assert.ok(Math.abs(vals[i] - ref.value) < 1e-5, `${ctx}: ${vals[i]} vs ${ref.value}`);
      const path = Array.from(paths.subarray(i * horizon * 36, (i + 1) * horizon * 36));
      assert.deepEqual(path, ref.path.flatMap((s) => new Array(36).fill(s)), ctx);
      const [alone] = await plan(model, [roots[i]], [valid[i]], opts);
      assert.equal(alone[0], acts[i], `${ctx} alone`);
    }
  }
  model.dispose();
});

Deno.test("planner: K + K^2 (H - 1) imagined children per environment in H batched calls", async () => {
  const model = new StubPlanningModel(randomMdp(20, A, 3));
  const roots = [0, 5, 10];
  const valid = roots.map(() => mask([0, 1, 2, 3, 4]));
  for (const [H, K] of [[2, 2], [3, 3], [2, 4]]) {
    model.imagineCalls = model.imaginedSequences = 0;
    await plan(model, roots, valid, { horizon: H, beamWidth: K });
    assert.equal(model.imagineCalls, H);
    assert.equal(model.imaginedSequences, roots.length * (K + K * K * (H - 1)));
  }
  model.dispose();
});
