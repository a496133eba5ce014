/**
 * Loss parity with the authors' code: their `JOWAModel.compute_loss` (stage 2: world + C51 TD
 * + CQL, supervised_weight 0.1, cql_weight 0.1, dropout off) on the fixture batch and weights
 * (tests/fixtures/jowa, made by THEIR classes) against our production step loss
 * (`worldActionLosses`, train/world_step.ts) on the same weights (`loadAuthorsWorldModel`):
 * the world, TD and CQL values within 1e-4, and the gradients of their 14 sampled
 * parameters. The batch has right padding after a terminal (row 1, t = 4) and a terminal at
 * the last position (row 2, t = 7); their observation targets include frame 0's tokens 1..35.
 */
import assert from "node:assert/strict";
import { backward } from "../kernels/core/autograd.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tidy } from "../kernels/core/tensor.ts";
import type { SegmentBatch } from "../offline/mod.ts";
import { defaultValidActions, worldBatchArrays } from "../train/world_batch.ts";
import { worldActionLosses } from "../train/world_step.ts";
import { assertClose } from "./helpers/reference.ts";
import { fixtureWorldModel, jowaMeta, readNpy } from "./helpers/jowa_fixtures.ts";

await initRuntime();

const meta = jowaMeta() as ReturnType<typeof jowaMeta> & {
  loss_values: Record<string, number>;
  grads: Record<string, string>;
  critic_train: { gamma: number; cql_weight: number; supervised_weight: number };
};
const model = await fixtureWorldModel();
model.eval(); // as their fixture: every dropout off

const tokens = readNpy("loss_obs_tokens.npy");
const [B, L] = tokens.shape;
const validRows = readNpy("loss_valid_action_mask.npy").data;
const tasks = Int32Array.from(readNpy("loss_tasks.npy").data);
const A = 18;
const batch: SegmentBatch = {
  index: 0,
  batchSize: B,
  segmentLength: L,
  form: "tokens",
  tokens: Uint16Array.from(tokens.data),
  actions: Int32Array.from(readNpy("loss_actions.npy").data),
  rewards: Float32Array.from(readNpy("loss_rewards.npy").data),
  terminals: Uint8Array.from(readNpy("loss_ends.npy").data),
  mask: Uint8Array.from(readNpy("loss_mask_padding.npy").data),
  taskIds: tasks,
  gameIndex: new Int32Array(B),
  starts: new Float64Array(B),
} as SegmentBatch;
/** Their action_masks[envs] as action lists. */
const theirValid = (i: number) =>
  Array.from({ length: A }, (_, a) => a).filter((a) => validRows[i * A + a]);

/** Their parameter -> our parameter(s) and how their tensor is laid out over ours. */
type Map1 =
  | { ours: string; rows?: [number, number] } // rows [from, to) of our tensor's first axis
  | { members: string }; // their [num_q, ...] stacked; ours head_q.{e}.<members>
const d = model.cfg.d;
const MAP: Record<string, Map1> = {
  "embedder.embedding_tables.1.weight": { ours: "embed.obs.weight" },
  "embedder.embedding_tables.0.weight": { ours: "embed.action.weight" },
  "task_emb.embedding_tables.1.weight": { ours: "embed.task_obs.weight" },
  "transformer.blocks.0.attn.query.weight": { ours: "blocks.0.attn.qkv.weight", rows: [0, d] },
  "transformer.blocks.1.attn.value.bias": { ours: "blocks.1.attn.qkv.bias", rows: [2 * d, 3 * d] },
  "transformer.blocks.1.mlp.0.bias": { ours: "blocks.1.mlp.fc1.bias" },
  "transformer.blocks.0.ln1.weight": { ours: "blocks.0.ln1.weight" },
  "transformer.ln_f.bias": { ours: "ln_f.bias" },
  "head_observations.head_module.2.weight": { ours: "head_obs.fc2.weight" },
  "head_rewards.head_module.0.weight": { ours: "head_reward.fc1.weight" },
  "head_rewards.head_module.0.bias": { ours: "head_reward.fc1.bias" },
  "head_q.head_module.params.0": { members: "hidden.0.linear.weight" },
  "head_q.head_module.params.6": { members: "hidden.1.norm.weight" },
  "head_q.head_module.params.9": { members: "out.bias" },
};

Deno.test("jowa loss parity: the fixture's valid actions are our minimal sets", () => {
  for (let i = 0; i < B; i++) assert.deepEqual([...defaultValidActions(tasks[i])], theirValid(i));
  assert.deepEqual(Object.keys(MAP).sort(), Object.keys(meta.grads).sort());
});

Deno.test("jowa loss parity: world, TD and CQL values and 14 gradients equal their compute_loss", async () => {
  const a = worldBatchArrays(batch, { validActions: (t) => theirValid(tasks.indexOf(t)) });
  const weights = {
    beta: meta.critic_train.supervised_weight,
    alpha: meta.critic_train.cql_weight,
    gamma: meta.critic_train.gamma,
  };
  const named = new Map(model.namedParameters());
  const parts = tidy(() => {
    const p = worldActionLosses(model, a, { joint: true, stepSeed: 0, weights });
    backward(p.total);
    return [p.obs, p.reward, p.end, p.td!, p.cql!, p.total];
  });
  const ourNames = [
    ...new Set(
      Object.values(MAP).flatMap((m) =>
        "ours" in m
          ? [m.ours]
          : Array.from({ length: model.cfg.qEnsemble }, (_, e) => `head_q.${e}.${m.members}`)
      ),
    ),
  ];
  const vals = await readAll([...parts, ...ourNames.map((n) => named.get(n)!.grad!)]);
  const [obs, reward, end, td, cql, total] = vals.map((v) => v[0]);
  const lv = meta.loss_values;
  const w = weights.beta;
  const tol = { atol: 1e-4, rtol: 1e-4 };
  assertClose([obs * w], [lv.loss_obs], { ...tol, what: "loss_obs (287 targets per segment)" });
  assertClose([reward * w], [lv.loss_rewards], { ...tol, what: "loss_rewards" });
  assertClose([end * w], [lv.loss_ends], { ...tol, what: "loss_ends" });
  assertClose([td], [lv.loss_td_error], { ...tol, what: "loss_td_error" });
  assertClose([cql], [lv.loss_cql_penalty], { ...tol, what: "loss_cql_penalty" });
  assertClose([total], [lv.loss_total], { ...tol, what: "loss_total" });

  const grad = new Map(ourNames.map((n, i) => [n, Float32Array.from(vals[parts.length + i])]));
  for (const [theirs, file] of Object.entries(meta.grads)) {
    const want = readNpy(file);
    const m = MAP[theirs];
    let got: Float32Array;
    if ("ours" in m) {
      const g = grad.get(m.ours)!;
      const row = g.length / named.get(m.ours)!.shape[0];
      got = m.rows ? g.slice(m.rows[0] * row, m.rows[1] * row) : g;
    } else {
      const members = Array.from(
        { length: model.cfg.qEnsemble },
        (_, e) => grad.get(`head_q.${e}.${m.members}`)!,
      );
      got = new Float32Array(members.reduce((n, g) => n + g.length, 0));
      members.forEach((g, e) => got.set(g, e * g.length));
    }
    assert.equal(got.length, want.data.length, `${theirs}: size`);
    const scale = Array.from(want.data).reduce((s, v) => Math.max(s, Math.abs(v)), 0);
    assert.ok(scale > 0, `${theirs}: their gradient is zero (the check would be vacuous)`);
    // 1e-4 relative to the tensor's largest entry (entries near 0 carry f32 noise).
    assertClose(got, want.data, { atol: 1e-4 * scale, rtol: 1e-3, what: `d loss / d ${theirs}` });
  }
  for (const t of parts) t.dispose();
});
