/**
 * Model level: the tiny world-action model's head outputs, a scalar loss touching every head
 * (obs/reward/termination cross-entropies + weighted Q log-probabilities and Q values), and
 * its gradients at sampled entries of EVERY parameter against a float64 CPU reference
 * (tests/helpers/cpu_wam.ts) with central finite differences. Training mode with dropout 0,
 * so the training path (fused attention forward/backward, Q-head dropout sites) runs.
 */
import { backward } from "../kernels/core/autograd.ts";
import { add, crossEntropy, mul, sumAll } from "../kernels/ops/mod.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import type { Params } from "./helpers/cpu_gpt.ts";
import { cpuWamForward, cpuWamLoss } from "./helpers/cpu_wam.ts";
import { assertClose, rng } from "./helpers/reference.ts";

await initRuntime();

Deno.test("world-action model: heads, loss and FD gradients of every parameter match float64", async () => {
  const cfg = worldActionConfig("tiny", { timesteps: 2, dropout: 0, qDropout: 0, seed: 7 });
  const model = new WorldActionModel(cfg);
  const state = await model.stateDict();
  const r = rng(21);
  for (const v of state.values()) {
    for (let i = 0; i < v.data.length; i++) v.data[i] += 0.1 * (r() - 0.5);
  }
  model.loadStateDict(state);
  const B = 2;
  const T = 2 * (cfg.obsTokens + 1);
  const tokens = Int32Array.from(
    { length: B * T },
    (_, i) => i % T % 37 === 36 ? Math.floor(r() * cfg.actions) : Math.floor(r() * cfg.obsVocab),
  );
  const tasks = Int32Array.from([3, 41]);
  const nObs = 2 * 36;
  const targets = {
    obs: Int32Array.from({ length: B * nObs }, () => Math.floor(r() * cfg.obsVocab)),
    reward: Int32Array.from({ length: B * 2 }, () => Math.floor(r() * 3)),
    end: Int32Array.from({ length: B * 2 }, () => Math.floor(r() * 2)),
    wLogP: Float64Array.from(
      { length: B * 2 * cfg.actions * cfg.atoms },
      () => Math.fround(0.02 * (r() - 0.5)),
    ),
    wQ: Float64Array.from({ length: B * 2 * cfg.actions }, () => Math.fround(r() - 0.5)),
  };
  const gpu = tidy(() => {
    const out = model.forward(tensor(tokens, [B, T], "i32"), tensor(tasks, [B], "i32"), {
      stepSeed: 5,
    });
    const q = out.q!;
    const loss = add(
      add(
        add(
          crossEntropy(out.obsLogits!, tensor(targets.obs, [B, nObs], "i32")),
          crossEntropy(out.rewardLogits!, tensor(targets.reward, [B, 2], "i32")),
        ),
        crossEntropy(out.endLogits!, tensor(targets.end, [B, 2], "i32")),
      ),
      add(
        sumAll(mul(q.logProbs, tensor(Float32Array.from(targets.wLogP), q.logProbs.shape))),
        sumAll(mul(q.values, tensor(Float32Array.from(targets.wQ), q.values.shape))),
      ),
    );
    backward(loss);
    return [loss, out.obsLogits!, out.rewardLogits!, out.endLogits!, q.logProbs, q.values];
  });
  const named = model.namedParameters();
  const vals = await readAll([...gpu, ...named.map(([, p]) => p.grad!)]);
  const params: Params = new Map([...state].map(([n, v]) => [n, Float64Array.from(v.data)]));
  const ref = cpuWamForward(params, cfg, tokens, tasks, B, T);
  const tol = { atol: 2e-5, rtol: 1e-4 };
  assertClose(vals[1], ref.obsLogits, { ...tol, what: "obs logits" });
  assertClose(vals[2], ref.rewardLogits, { ...tol, what: "reward logits" });
  assertClose(vals[3], ref.endLogits, { ...tol, what: "termination logits" });
  assertClose(vals[4], ref.qLogProbs, { ...tol, what: "Q log-probabilities" });
  assertClose(vals[5], ref.qValues, { atol: 1e-4, rtol: 1e-4, what: "Q values" });
  const lossOf = () => cpuWamLoss(cpuWamForward(params, cfg, tokens, tasks, B, T), cfg, targets);
  assertClose([vals[0][0]], [lossOf()], { atol: 1e-5, rtol: 1e-5, what: "loss" });
  // Entries to probe: embedding rows that were used, any entry elsewhere.
  const pick = rng(33);
  const usedRows = (name: string): number[] | null => {
    if (name === "embed.obs.weight") return [...tokens].filter((_, i) => i % T % 37 !== 36);
    if (name === "embed.action.weight") return [...tokens].filter((_, i) => i % T % 37 === 36);
    if (name.startsWith("embed.task")) return [...tasks];
    return null;
  };
  named.forEach(([name, p], k) => {
    const grad = vals[gpu.length + k];
    const data = params.get(name)!;
    const rows = usedRows(name);
    const d = p.shape[p.rank - 1];
    for (let e = 0; e < 3; e++) {
      const i = rows
        ? rows[Math.floor(pick() * rows.length)] * d + Math.floor(pick() * d)
        : Math.floor(pick() * p.size);
      const saved = data[i];
      const eps = 1e-6;
      data[i] = saved + eps;
      const up = lossOf();
      data[i] = saved - eps;
      const down = lossOf();
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
