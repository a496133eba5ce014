/**
 * The multi-tensor AdamW (kernels/nn/optim.ts over kernels/nn/adamw_kernels.ts) against the
 * former per-parameter kernels (tests/helpers/adamw_per_param.ts): 20 steps over parameters of
 * awkward sizes (1 to 140,000 elements, more than one chunk, one above 64 partial workgroups),
 * with and without clipping, weight-decay exemptions and a parameter losing its gradient,
 * compared bit for bit (parameters, both moments and the clip statistics). And the dispatch
 * count: ceil(N/31) sum-of-squares chunks + 1 scale + ceil(N/8) AdamW chunks on a device with
 * 32 storage buffers per stage.
 */
import assert from "node:assert/strict";
import { AdamW, type AdamWOptions } from "../kernels/nn/optim.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { keep, readAll, type Tensor, tensor } from "../kernels/core/tensor.ts";
import "../kernels/ops/mod.ts";
import { randArray } from "./helpers/reference.ts";
import { PerParamAdamW } from "./helpers/adamw_per_param.ts";

const rt = await initRuntime();

const SIZES = [1, 3, 255, 256, 257, 2047, 2049, 5000, 140_000, 7, 64, 513, 1, 16_385, 300, 9, 2];

function params(seed: number): Tensor[] {
  return SIZES.map((n, k) => {
    const t = keep(tensor(Float32Array.from(randArray(n, seed + k, -1, 1)), [n]));
    t.requiresGrad = true;
    t.name = k % 5 === 1 ? `b${k}` : `w${k}`;
    return t;
  });
}

function bits(a: ArrayLike<number>): Uint32Array {
  return new Uint32Array(Float32Array.from(a).buffer);
}

async function compare(opts: AdamWOptions, steps: number, dropGradAt?: number): Promise<void> {
  const mine = params(10);
  const theirs = params(10);
  const opt = new AdamW(mine.map((p) => [p.name, p] as const), opts);
  const decay = mine.map((p) => !(opts.noDecay?.(p.name) ?? false));
  const old = new PerParamAdamW(theirs, {
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
    ...opts,
    decay,
  });
  for (let s = 1; s <= steps; s++) {
    if (s === 7) opt.lr = old.opts.lr = opts.lr / 3;
    SIZES.forEach((n, k) => {
      const g = Float32Array.from(randArray(n, 7919 * s + k, -2, 2));
      const none = dropGradAt !== undefined && k === 4 && s >= dropGradAt;
      for (const ps of [mine, theirs]) {
        ps[k].grad?.dispose();
        ps[k].grad = none ? null : keep(tensor(g, [n]));
      }
    });
    opt.update();
    old.update();
    const a = await readAll([...mine, opt.clipStats, ...opt.state.flatMap((t) => [t.m, t.v])]);
    const b = await readAll([...theirs, old.clipStats, ...old.state.flatMap((t) => [t.m, t.v])]);
    a.forEach((x, i) => {
      assert.deepEqual(bits(x), bits(b[i]), `step ${s}: tensor ${i} differs in bits`);
    });
  }
  for (const p of [...mine, ...theirs]) p.grad?.dispose();
  opt.dispose();
  old.dispose();
  for (const p of [...mine, ...theirs]) p.dispose();
}

Deno.test("multi-tensor AdamW: 20 clipped steps bit-identical to per-parameter AdamW", async () => {
  // Gradients in [-2, 2] over ~180k elements: norm ~490, so max 1 clips every step.
  await compare({ lr: 0.01, weightDecay: 0.1, maxGradNorm: 1, noDecay: (n) => n[0] === "b" }, 20);
});

Deno.test("multi-tensor AdamW: unclipped, a parameter losing its gradient, bit-identical", async () => {
  await compare({ lr: 0.003, beta1: 0.8, beta2: 0.95, eps: 1e-6 }, 12, 5);
  await compare({ lr: 0.003, maxGradNorm: 1e6, weightDecay: 0 }, 4, 2);
});

Deno.test("multi-tensor AdamW: ceil(N/31) + 1 + ceil(N/8) dispatches per clipped step", async () => {
  const ps = params(3);
  const opt = new AdamW(ps, { lr: 0.01, maxGradNorm: 1 });
  for (const p of ps) p.grad = keep(tensor(new Float32Array(p.size).fill(0.5), p.shape));
  opt.update();
  await rt.sync();
  const before = rt.dispatchCount;
  opt.update();
  const limit = Math.min(32, rt.ctx.limits.maxStorageBuffersPerShaderStage);
  const n = SIZES.length;
  const expected = Math.ceil(n / (limit - 1)) + 1 + Math.ceil(n / Math.floor(limit / 4));
  assert.equal(rt.dispatchCount - before, expected);
  assert.ok(expected < 2 * n + 1, `${expected} dispatches, per-parameter was ${2 * n + 1}`);
  await rt.sync();
  opt.zeroGrad();
  opt.dispose();
  for (const p of ps) p.dispose();
});
