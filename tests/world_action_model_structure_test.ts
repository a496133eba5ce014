/**
 * The world-action model's structure: parameters equal the shape spec for every config
 * (counted without allocating), head rows, the target Q head (hard copy, no gradient, not in
 * parameters()), dropout determinism in training mode, and the per-transition obs rows.
 */
import assert from "node:assert/strict";
import { backward } from "../kernels/core/autograd.ts";
import { add, meanAll, sub, sumAll } from "../kernels/ops/mod.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { CONFIGS, contextLength, worldActionConfig } from "../models/world_action/configs.ts";
import { headRows, interleaveTokens } from "../models/world_action/layout.ts";
import { countByPart, countParams, worldActionParamSpec } from "../models/world_action/spec.ts";
import { interleave, nextObservationRows, WorldActionModel } from "../models/world_action/model.ts";
import { assertClose, rng } from "./helpers/reference.ts";

await initRuntime();

Deno.test("spec: parameter counts per config (no GPU allocation) and the tiny model agrees", () => {
  const counts = Object.fromEntries(
    Object.values(CONFIGS).map((c) => [c.name, countParams(worldActionParamSpec(c))]),
  );
  // Well below the names' sizes (the names are the paper's labels; see params_report.ts).
  assert.equal(counts["40M"], 17_416_091);
  assert.ok(counts["150M"] > counts["70M"] && counts["70M"] > counts["40M"]);
  const c = CONFIGS["40M"];
  const parts = countByPart(worldActionParamSpec(c));
  assert.equal(parts.backbone, c.layers * 12 * c.d * c.d + c.layers * 13 * c.d + 2 * c.d);
  assert.equal(
    parts.head_q,
    c.d * 768 + 768 + 2 * 768 + 768 * 768 + 768 + 2 * 768 + 768 * 918 + 918,
  );
  const model = new WorldActionModel(CONFIGS.tiny); // the constructor checks itself too
  assert.equal(model.parameterCount(), countParams(worldActionParamSpec(CONFIGS.tiny)));
  assert.equal(contextLength(CONFIGS.tiny), 296);
});

Deno.test("layout: head rows of a full timestep and of a decoding step", () => {
  const c = CONFIGS.tiny;
  const r = headRows(c, 0, 37);
  assert.deepEqual(r.action, [36]);
  assert.deepEqual(r.q, [35]);
  assert.deepEqual(r.obs, [...Array(35).keys(), 36]);
  assert.deepEqual(headRows(c, 72, 2), { obs: [1], action: [1], q: [0] });
  const rows = nextObservationRows(c, 3);
  assert.equal(rows.length, 72);
  assert.equal(rows[0], 36); // the action of timestep 0 predicts token 0 of observation 1
  assert.equal(rows[36], 73);
  const tok = interleaveTokens(c, Int32Array.from({ length: 72 }, (_, i) => i), [9]);
  assert.equal(tok.length, 73);
  assert.equal(tok[36], 9);
  assert.equal(tok[37], 36);
});

Deno.test("interleave: obs [B, L, 36] and actions [B, L] on the GPU", async () => {
  const c = CONFIGS.tiny;
  const obs = Int32Array.from({ length: 2 * 2 * 36 }, (_, i) => i % 60);
  const acts = Int32Array.from([1, 2, 3, 4]);
  const got = await interleave(tensor(obs, [2, 2, 36], "i32"), tensor(acts, [2, 2], "i32")).read();
  const want = [
    ...interleaveTokens(c, obs.subarray(0, 72), acts.subarray(0, 2)),
    ...interleaveTokens(c, obs.subarray(72), acts.subarray(2)),
  ];
  assert.deepEqual([...got], want);
});

Deno.test("target Q head: a copy at start, unchanged by training, equal again after updateTarget", async () => {
  const cfg = worldActionConfig("tiny", { timesteps: 1, seed: 2 });
  const model = new WorldActionModel(cfg);
  const names = new Set(model.namedParameters().map(([n]) => n));
  assert.ok(model.targetTensors().every(([n]) => n.startsWith("target_q.") && !names.has(n)));
  const tokens = tensor(Int32Array.from({ length: 37 * 2 }, (_, i) => i % 37 === 36 ? 3 : i % 50), [
    2,
    37,
  ], "i32");
  const tasks = tensor([1, 2], [2], "i32");
  model.eval();
  const qs = async () => {
    const out = model.forward(tokens, tasks, { target: true });
    const [a, b] = await readAll([out.q!.values, out.targetQ!.values]);
    return [a, b];
  };
  const [q0, t0] = await qs();
  assertClose(t0, q0, { atol: 0, rtol: 0, what: "target = online at start" });
  // Change the online head only.
  const state = await model.headQ.stateDict();
  const r = rng(3);
  for (const v of state.values()) for (let i = 0; i < v.data.length; i++) v.data[i] += r() - 0.5;
  model.headQ.loadStateDict(state);
  const [q1, t1] = await qs();
  assertClose(t1, t0, { atol: 0, rtol: 0, what: "target unchanged" });
  assert.ok(q1.some((v, i) => Math.abs(v - q0[i]) > 1e-3));
  model.updateTarget();
  const [q2, t2] = await qs();
  assertClose(t2, q2, { atol: 0, rtol: 0, what: "target = online after updateTarget" });
  // No gradient reaches the target head.
  model.train();
  tidy(() => {
    const out = model.forward(tokens, tasks, { target: true });
    backward(add(meanAll(out.q!.values), sumAll(sub(out.targetQ!.values, out.targetQ!.values))));
  });
  assert.ok(model.targetTensors().every(([, t]) => t.grad === null));
  assert.ok(model.headQ.parameters().every((t) => t.grad !== null));
});

Deno.test("training mode: dropout masks follow the step seed; eval is deterministic", async () => {
  const cfg = worldActionConfig("tiny", { timesteps: 1, seed: 4 });
  const model = new WorldActionModel(cfg);
  const tokens = tensor(
    Int32Array.from({ length: 37 }, (_, i) => i % 37 === 36 ? 1 : i),
    [1, 37],
    "i32",
  );
  const tasks = tensor([0], [1], "i32");
  const run = async (
    seed: number,
  ) => (await model.forward(tokens, tasks, { stepSeed: seed }).obsLogits!.read());
  const a = await run(1);
  const b = await run(1);
  const c = await run(2);
  assertClose(b, a, { atol: 0, rtol: 0, what: "same seed" });
  assert.ok(c.some((v, i) => v !== a[i]), "another seed drops other units");
  model.eval();
  const e1 = await run(1);
  const e2 = await run(2);
  assertClose(e2, e1, { atol: 0, rtol: 0, what: "eval" });
});
