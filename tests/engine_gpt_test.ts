/**
 * Integration: a 2-layer GPT on the engine. Its loss and one step's gradients match a float64
 * CPU reference of the same network; it learns a toy task with AdamW.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { backward } from "../kernels/core/autograd.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { Gpt } from "../models/world_action/transformer.ts";
import { cpuGptLoss, type Params } from "./helpers/cpu_gpt.ts";
import { assertClose, rng } from "./helpers/reference.ts";

await initRuntime();

const cfg = { vocab: 11, context: 8, layers: 2, d: 16, heads: 2, dropout: 0, seed: 3 };

function batch(seed: number, B: number, T: number) {
  const r = rng(seed);
  const ids = Int32Array.from({ length: B * T }, () => Math.floor(r() * cfg.vocab));
  const targets = Int32Array.from({ length: B * T }, () => Math.floor(r() * cfg.vocab));
  const mask = Float32Array.from({ length: B * T }, () => (r() < 0.7 ? 1 : 0));
  mask[0] = 1;
  return { ids, targets, mask };
}

Deno.test("GPT loss and gradients match a float64 CPU reference (finite differences)", async () => {
  const model = new Gpt(cfg);
  // Give biases and norms non-trivial values so their gradients are exercised.
  const state = await model.stateDict();
  const r = rng(11);
  for (const v of state.values()) {
    for (let i = 0; i < v.data.length; i++) v.data[i] += 0.05 * (r() - 0.5);
  }
  model.loadStateDict(state);
  const B = 2;
  const T = 7;
  const { ids, targets, mask } = batch(5, B, T);
  const loss = tidy(() => {
    const l = model.loss(
      tensor(ids, [B, T], "i32"),
      tensor(targets, [B, T], "i32"),
      tensor(mask, [B, T]),
    );
    backward(l);
    return l;
  });
  const named = model.namedParameters();
  const vals = await readAll([loss, ...named.map(([, p]) => p.grad!)]);
  const params: Params = new Map([...state].map(([n, v]) => [n, Float64Array.from(v.data)]));
  const ref = cpuGptLoss(params, cfg, ids, targets, mask, B, T);
  assertClose([vals[0][0]], [ref], { atol: 1e-5, rtol: 1e-5, what: "loss" });
  // Central differences of the float64 reference at a few entries of every parameter.
  const pick = rng(17);
  named.forEach(([name, p], k) => {
    const grad = vals[k + 1];
    const data = params.get(name)!;
    const entries = Array.from({ length: Math.min(4, p.size) }, () => Math.floor(pick() * p.size));
    for (const i of entries) {
      const saved = data[i];
      const eps = 1e-6;
      data[i] = saved + eps;
      const up = cpuGptLoss(params, cfg, ids, targets, mask, B, T);
      data[i] = saved - eps;
      const down = cpuGptLoss(params, cfg, ids, targets, mask, B, T);
      data[i] = saved;
      assertClose([grad[i]], [(up - down) / (2 * eps)], {
        atol: 2e-5,
        rtol: 2e-3,
        what: `d loss / d ${name}[${i}]`,
      });
    }
  });
  loss.dispose();
  for (const [, p] of named) p.grad?.dispose();
});

Deno.test("GPT learns to copy the previous token: loss < 0.05 within 150 AdamW steps", async () => {
  const model = new Gpt({ ...cfg, seed: 1 });
  const opt = new AdamW(model.parameters(), { lr: 1e-2, maxGradNorm: 1 });
  const B = 16;
  const T = 8;
  let last = Infinity;
  for (let step = 0; step < 150; step++) {
    const { ids } = batch(100 + step, B, T);
    // Target at t is the token at t - 1 (needs attention to look one step back).
    const targets = Int32Array.from(ids, (_, i) => (i % T === 0 ? 0 : ids[i - 1]));
    const mask = Float32Array.from(ids, (_, i) => (i % T === 0 ? 0 : 1));
    const loss = tidy(() => {
      const l = model.loss(
        tensor(ids, [B, T], "i32"),
        tensor(targets, [B, T], "i32"),
        tensor(mask, [B, T]),
        step,
      );
      opt.zeroGrad();
      backward(l);
      opt.update();
      return l;
    });
    if (step % 50 === 49) last = await loss.item();
    loss.dispose();
  }
  assert.ok(last < 0.05, `final loss ${last}`);
});
