/**
 * The training forward's block stack with fused dropout + residual add + layer norm
 * (models/world_action/transformer.ts `forwardStack`) against the unfused composition it
 * replaces (dropout, Block.forward, lnF.forward) on the tiny world-action model in training
 * mode: heads' outputs and every parameter's gradient equal (same masks, same sums, the joint
 * backward rule sums the stream's gradients across chained seams; bit for bit on lavapipe), and the dispatch counts drop by 4 per block (+1 for the embedding
 * dropout) in each direction (at least, backward).
 */
import assert from "node:assert/strict";
import { backward } from "../kernels/core/autograd.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { add, dropout, mul, sumAll } from "../kernels/ops/mod.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel, type WorldActionOutputs } from "../models/world_action/model.ts";
import { SeedStream } from "../util/rng.ts";
import { assertClose, randArray } from "./helpers/reference.ts";

const rt = await initRuntime();

Deno.test("world-action forward: fused residual seams equal the unfused blocks", async () => {
  const cfg = worldActionConfig("tiny", { timesteps: 2, seed: 5 });
  const model = new WorldActionModel(cfg).train();
  assert.ok(cfg.dropout > 0, "the check needs active dropout");
  const B = 2, T = 2 * (cfg.obsTokens + 1);
  const ids = Int32Array.from(
    { length: B * T },
    (_, i) => i % (cfg.obsTokens + 1) === cfg.obsTokens ? i % cfg.actions : (i * 31) % 50,
  );
  const tokens = tensor(ids, [B, T], "i32");
  const tasks = tensor([3, 11], [B], "i32");
  const stepSeed = 12345;

  const loss = (o: WorldActionOutputs) => {
    const parts = [o.obsLogits!, o.rewardLogits!, o.endLogits!, o.q!.values];
    return parts.map((t, k) =>
      sumAll(mul(t, tensor(Float32Array.from(randArray(t.size, 40 + k)), t.shape)))
    ).reduce((a, b) => add(a, b));
  };
  const run = async (fused: boolean) => {
    for (const p of model.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
    const r = tidy(() => {
      const d0 = rt.dispatchCount;
      let out: WorldActionOutputs;
      if (fused) out = model.forward(tokens, tasks, { stepSeed });
      else {
        // The composition forwardStack replaces (model.forward before the fusion).
        const seeds = new SeedStream(stepSeed);
        let x = dropout(model.embed(tokens, tasks, 0), cfg.dropout, seeds.nextSeed());
        for (const b of model.blocks) x = b.forward(x, seeds);
        out = model.heads(model.lnF.forward(x), 0, seeds, {});
      }
      const forward = rt.dispatchCount - d0;
      const l = loss(out);
      const d1 = rt.dispatchCount;
      backward(l);
      return { l, obs: out.obsLogits!, q: out.q!.values, forward, back: rt.dispatchCount - d1 };
    });
    const named = model.namedParameters();
    const vals = await readAll([r.l, r.obs, r.q, ...named.map(([, p]) => p.grad!)]);
    r.l.dispose();
    r.obs.dispose();
    r.q.dispose();
    return { ...r, vals, names: named.map(([n]) => n) };
  };
  // The first forward builds cached constants (copies, index tables): count warm calls.
  await run(true);
  const f = await run(true);
  const u = await run(false);
  // Bit for bit on lavapipe; NVIDIA's compiler contracts the fused backward's residual sum
  // into an FMA (an ulp per seam), hence the tolerance; a wrong mask or a lost gradient term
  // moves values by orders of magnitude more.
  const close = (i: number, what: string) =>
    assertClose(f.vals[i], u.vals[i], { atol: 1e-6, rtol: 1e-4, what });
  close(0, "loss");
  close(1, "observation logits");
  close(2, "Q values");
  f.names.forEach((n, i) => close(3 + i, `gradient of ${n}`));
  const saved = 4 * cfg.layers + 1;
  assert.equal(u.forward - f.forward, saved, "forward dispatches saved");
  // At least: layer norm's own weight/bias gradient may take two passes where ours takes one.
  assert.ok(u.back - f.back >= saved, `backward dispatches saved: ${u.back - f.back}`);
  for (const p of model.parameters()) p.grad?.dispose();
  const extra: Tensor[] = [tokens, tasks];
  extra.forEach((t) => t.dispose());
});
