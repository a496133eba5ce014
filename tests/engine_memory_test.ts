/**
 * Memory discipline of a training loop: a small MLP (Linear -> gelu -> Linear,
 * cross-entropy) trained with AdamW inside `tidy()` holds exactly as many pool bytes after
 * step 200 as after step 10, and actually learns (memorizes a fixed random labelling).
 */
import assert from "node:assert/strict";
import { backward } from "../kernels/core/autograd.ts";
import { Module } from "../kernels/nn/module.ts";
import { InitRng, Linear } from "../kernels/nn/layers.ts";
import { crossEntropy, gelu } from "../kernels/ops/mod.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { initRuntime, runtime } from "../kernels/core/runtime.ts";
import { type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { randArray, rng } from "./helpers/reference.ts";

await initRuntime();

class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(dIn: number, hidden: number, classes: number, seed: number) {
    super();
    const r = new InitRng(seed);
    this.fc1 = this.child("fc1", new Linear(dIn, hidden, r, { std: 0.5 }));
    this.fc2 = this.child("fc2", new Linear(hidden, classes, r, { std: 0.2 }));
  }

  forward(x: Tensor): Tensor {
    return this.fc2.forward(gelu(this.fc1.forward(x)));
  }
}

const THRESHOLD = 0.02;

Deno.test(`memory: MLP + AdamW, 200 steps in tidy(): bytes in use flat from step 10, loss < ${THRESHOLD} on 32 randomly labelled points`, async () => {
  const [N, D, H, C] = [32, 8, 32, 4];
  const labels = rng(5);
  const x = tensor(Float32Array.from(randArray(N * D, 3)), [N, D]);
  const y = tensor(Array.from({ length: N }, () => Math.floor(labels() * C)), [N], "i32");
  const model = new Mlp(D, H, C, 11);
  const opt = new AdamW(model.namedParameters(), {
    lr: 0.02,
    weightDecay: 0.01,
    maxGradNorm: 1,
    noDecay: (n) => n.endsWith(".bias"),
  });
  const pool = runtime().pool;
  const losses: number[] = [];
  let at10: ReturnType<typeof pool.stats> | null = null;
  let at20: ReturnType<typeof pool.stats> | null = null;
  for (let step = 1; step <= 200; step++) {
    const loss = tidy(() => {
      const l = crossEntropy(model.forward(x), y);
      backward(l);
      opt.update();
      return l;
    });
    opt.zeroGrad();
    if (step === 1 || step % 10 === 0) losses.push(await loss.item());
    loss.dispose();
    if (step === 10) at10 = pool.stats();
    if (step === 20) at20 = pool.stats();
  }
  const at200 = pool.stats();
  assert.equal(at200.bytesInUse, at10!.bytesInUse, "bytes in use grew after step 10");
  assert.equal(at200.buffersInUse, at10!.buffersInUse, "live buffers grew after step 10");
  // Uploads (AdamW's hyper-parameters) need a buffer no unsubmitted command uses, so the
  // pool grows with the steps recorded per submit: 9 before the read at step 10, 10 in each
  // later window. From then on it must not grow at all.
  assert.equal(at200.bytesAllocated, at20!.bytesAllocated, "the pool allocated more after step 20");
  const first = losses[0];
  const last = losses[losses.length - 1];
  assert.ok(first > 1, `initial loss ${first} should be near ln(4)`);
  assert.ok(
    last < THRESHOLD,
    `final loss ${last} (losses every 10 steps: ${losses.map((l) => l.toFixed(3))})`,
  );
  opt.dispose();
  for (const t of [x, y, ...model.parameters()]) t.dispose();
});
