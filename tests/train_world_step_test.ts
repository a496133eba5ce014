/**
 * The production loss of a pretraining step (`worldActionLosses`, train/world_step.ts) on the
 * tiny world-action model against a float64 reference of the authors' `compute_loss`
 * (tests/helpers/cpu_jowa_loss.ts over the CPU forward of tests/helpers/cpu_wam.ts), and its
 * gradients at sampled entries of every parameter against central finite differences of that
 * reference. The batch has right padding after a terminal and a terminal at the last step.
 */
import { backward } from "../kernels/core/autograd.ts";
import { copyTensor } from "../kernels/nn/module.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import type { SegmentBatch } from "../offline/mod.ts";
import { defaultValidActions, worldBatchArrays } from "../train/world_batch.ts";
import { PAPER_WEIGHTS, worldActionLosses } from "../train/world_step.ts";
import type { Params } from "./helpers/cpu_gpt.ts";
import { cpuWamForward } from "./helpers/cpu_wam.ts";
import { cpuJowaLoss, type CpuSegmentBatch } from "./helpers/cpu_jowa_loss.ts";
import { assertClose, rng } from "./helpers/reference.ts";

await initRuntime();

Deno.test("pretraining step loss = the authors' stage-2 loss (float64), gradients by finite differences", async () => {
  const L = 3, B = 3;
  const cfg = worldActionConfig("tiny", { timesteps: L, dropout: 0, qDropout: 0, seed: 5 });
  const model = new WorldActionModel(cfg);
  const r = rng(8);
  const state = await model.stateDict();
  for (const v of state.values()) {
    for (let i = 0; i < v.data.length; i++) v.data[i] += 0.1 * (r() - 0.5);
  }
  model.loadStateDict(state);
  // A target head different from the online one (a* must come from the target).
  const target = new Map<string, Float64Array>();
  for (const [name, t] of model.targetTensors()) {
    const online = state.get(name.replace(/^target_q\./, "head_q."))!.data;
    const vals = Float32Array.from(online, (v) => v + 0.05 * (r() - 0.5));
    copyTensor(tensor(vals, t.shape), t);
    target.set(name, Float64Array.from(vals));
  }
  const P = cfg.obsTokens;
  const tasks = [3, 49, 37];
  // Item 0 full; item 1 terminal at t=1, then padding; item 2 terminal at the last step.
  const mask = Uint8Array.of(1, 1, 1, 1, 1, 0, 1, 1, 1);
  const ends = Uint8Array.of(0, 0, 0, 0, 1, 0, 0, 0, 1);
  const actions = Int32Array.from({ length: B * L }, (_, k) => {
    const valid = defaultValidActions(tasks[Math.floor(k / L)]);
    return mask[k] ? valid[Math.floor(r() * valid.length)] : 0;
  });
  const batch: SegmentBatch = {
    index: 0,
    batchSize: B,
    segmentLength: L,
    form: "tokens",
    tokens: Uint16Array.from(
      { length: B * L * P },
      (_, i) => (mask[Math.floor(i / P)] ? Math.floor(r() * cfg.obsVocab) : 3),
    ),
    actions,
    rewards: Float32Array.from({ length: B * L }, (_, k) => (mask[k] ? [0, 1, -1, 0.5][k % 4] : 0)),
    terminals: ends,
    mask,
    taskIds: Int32Array.from(tasks),
    gameIndex: new Int32Array(B),
    starts: new Float64Array(B),
  } as SegmentBatch;
  const a = worldBatchArrays(batch);
  const gpu = tidy(() => {
    const p = worldActionLosses(model, a, { joint: true, stepSeed: 1 });
    backward(p.total);
    return [p.total, p.obs, p.reward, p.end, p.td!, p.cql!];
  });
  const named = model.namedParameters();
  const vals = await readAll([...gpu, ...named.map(([, p]) => p.grad!)]);

  const params: Params = new Map([...state].map(([n, v]) => [n, Float64Array.from(v.data)]));
  for (const [n, v] of target) params.set(n, v);
  const tokens = Int32Array.from({ length: B * L * (P + 1) }, (_, i) => {
    const k = Math.floor(i / (P + 1)), o = i % (P + 1);
    return o === P ? actions[k] : batch.tokens![k * P + o];
  });
  const cpuBatch: CpuSegmentBatch = {
    B,
    L,
    P,
    obsTokens: batch.tokens!,
    actions,
    rewards: batch.rewards,
    ends,
    mask,
    valid: tasks.flatMap((t) => {
      const row = new Array(cfg.actions).fill(0);
      for (const v of defaultValidActions(t)) row[v] = 1;
      return row;
    }),
  };
  const lossCfg = {
    V: cfg.obsVocab,
    A: cfg.actions,
    atoms: cfg.atoms,
    vMin: cfg.vMin,
    vMax: cfg.vMax,
    ...PAPER_WEIGHTS,
  };
  const T = L * (P + 1), ti = Int32Array.from(tasks);
  // The target head reads detached features: its distributions are constants of the loss.
  const targetProbs = cpuWamForward(params, cfg, tokens, ti, B, T, "target_q").qLogProbs
    .map(Math.exp);
  const cpuLoss = () => {
    const on = cpuWamForward(params, cfg, tokens, ti, B, T);
    return cpuJowaLoss(
      {
        obsLogits: on.obsLogits,
        rewardLogits: on.rewardLogits,
        endLogits: on.endLogits,
        probs: on.qLogProbs.map(Math.exp),
        targetProbs,
      },
      cpuBatch,
      lossCfg,
    );
  };
  const want = cpuLoss();
  const tol = { atol: 2e-5, rtol: 1e-4 };
  assertClose(vals[1], [want.obs], { ...tol, what: "observation CE" });
  assertClose(vals[2], [want.reward], { ...tol, what: "reward CE" });
  assertClose(vals[3], [want.end], { ...tol, what: "termination CE" });
  assertClose(vals[4], [want.td], { ...tol, what: "TD" });
  assertClose(vals[5], [want.cql], { ...tol, what: "CQL" });
  assertClose(vals[0], [want.total], { ...tol, what: "total" });

  const pick = rng(13);
  named.forEach(([name, p], k) => {
    const grad = vals[gpu.length + k];
    const data = params.get(name)!;
    const isEmbed = name.startsWith("embed.") && name !== "embed.position.weight";
    const rows = name === "embed.obs.weight"
      ? [...batch.tokens!]
      : name === "embed.action.weight"
      ? [...actions]
      : name.startsWith("embed.task")
      ? tasks
      : null;
    const d = p.shape[p.rank - 1];
    for (let e = 0; e < 2; e++) {
      const i = isEmbed && rows
        ? rows[Math.floor(pick() * rows.length)] * d + Math.floor(pick() * d)
        : Math.floor(pick() * p.size);
      const saved = data[i];
      const eps = 1e-6;
      data[i] = saved + eps;
      const up = cpuLoss().total;
      data[i] = saved - eps;
      const down = cpuLoss().total;
      data[i] = saved;
      assertClose([grad[i]], [(up - down) / (2 * eps)], {
        atol: 3e-5,
        rtol: 3e-3,
        what: `d loss / d ${name}[${i}]`,
      });
    }
  });
  for (const t of gpu) t.dispose();
  for (const [, p] of named) p.grad?.dispose();
});
