/**
 * The engine's warm path: cached plans (no pipeline compiled, no bind group created on a
 * repeated step), plan-key verification, the pool's lowest-id-first reuse, the counters and
 * the dry-run mode used by bench/overhead_bench.ts.
 */
import assert from "node:assert/strict";
import { counterDelta, initRuntime } from "../kernels/core/runtime.ts";
import { planCache, setPlanVerification } from "../kernels/core/plan_cache.ts";
import { keep, readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { backward } from "../kernels/core/autograd.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import {
  add,
  concat,
  crossEntropy,
  gelu,
  layerNorm,
  matmul,
  slice,
  softmax,
  sumAll,
} from "../kernels/ops/mod.ts";

const rt = await initRuntime();

/** A small training step touching the cached ops: matmul, map, norm, softmax, layout, AdamW. */
function makeStep() {
  const w = keep(tensor(Array.from({ length: 8 * 6 }, (_, i) => Math.sin(i) * 0.3), [8, 6]));
  const lnW = keep(tensor(new Array(6).fill(1), [6]));
  const lnB = keep(tensor(new Array(6).fill(0), [6]));
  for (const p of [w, lnW, lnB]) p.requiresGrad = true;
  w.name = "w";
  const opt = new AdamW([w, lnW, lnB], { lr: 1e-2, maxGradNorm: 1 });
  const x = keep(tensor(Array.from({ length: 4 * 8 }, (_, i) => Math.cos(i)), [4, 8]));
  const y = keep(tensor([0, 5, 2, 3], [4], "i32"));
  const step = (): Tensor => {
    const loss = tidy(() => {
      const h = layerNorm(gelu(matmul(x, w)), lnW, lnB);
      const both = concat([slice(h, 1, 0, 3), slice(h, 1, 3, 6)], 1);
      const l = add(crossEntropy(both, y), sumAll(softmax(h)));
      opt.zeroGrad();
      backward(l);
      opt.update();
      return l;
    });
    opt.zeroGrad();
    return loss;
  };
  const dispose = () => {
    for (const t of [w, lnW, lnB, x, y]) t.dispose();
    opt.dispose();
  };
  return { step, dispose, w };
}

Deno.test("a warm training step compiles no pipeline and creates no bind group", async () => {
  const { step, dispose } = makeStep();
  for (let i = 0; i < 3; i++) {
    const l = step();
    await readAll([l]);
    l.dispose();
  }
  await rt.sync();
  const before = rt.counters();
  const loss = step();
  const [v] = await readAll([loss]);
  const d = counterDelta(before, rt.counters());
  loss.dispose();
  dispose();
  assert.ok(Number.isFinite(v[0]));
  assert.ok(d.dispatches > 20, `expected a real step, got ${d.dispatches} dispatches`);
  assert.equal(d.pipelinesCompiled, 0);
  assert.equal(d.bindGroupsCreated, 0);
  assert.equal(d.submits, 1);
  assert.equal(d.passes, 1);
});

Deno.test("a rerun on cached plans (verified against fresh builds) is bit-identical", async () => {
  // Verification rebuilds every plan on each hit and throws when a key misses a field.
  const before = setPlanVerification(true);
  try {
    const { step, dispose, w } = makeStep();
    const losses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const l = step();
      losses.push((await l.read())[0]);
      l.dispose();
    }
    const wv = await w.read();
    dispose();
    const again = makeStep();
    for (let i = 0; i < 3; i++) {
      const l = again.step();
      assert.equal((await l.read())[0], losses[i]);
      l.dispose();
    }
    assert.deepEqual(await again.w.read(), wv);
    again.dispose();
  } finally {
    setPlanVerification(before);
  }
});

Deno.test("plan verification catches a key that maps to two plans", () => {
  const before = setPlanVerification(true);
  try {
    planCache("test|incomplete", () => ({ code: "a" }));
    assert.throws(() => planCache("test|incomplete", () => ({ code: "b" })), /key incomplete/);
    assert.deepEqual(planCache("test|incomplete", () => ({ code: "a" })), { code: "a" });
  } finally {
    setPlanVerification(before);
  }
});

Deno.test("the pool hands out the lowest free id first, whatever the release order", () => {
  const a = rt.pool.acquire(4000);
  const b = rt.pool.acquire(4000);
  const c = rt.pool.acquire(4000);
  rt.pool.release(b);
  rt.pool.release(c);
  rt.pool.release(a);
  const ids = [a.id, b.id, c.id].sort((x, y) => x - y);
  const got = [rt.pool.acquire(4000), rt.pool.acquire(4000), rt.pool.acquire(4000)];
  assert.deepEqual(got.map((g) => g.id), ids);
  for (const g of got) rt.pool.release(g);
});

Deno.test("dry run records and counts but submits nothing; reads give zeros", async () => {
  const x = tensor([1, 2, 3, 4], [4]);
  await rt.sync();
  rt.dryRun = true;
  let y: Tensor;
  let out: Float32Array;
  const before = rt.counters();
  try {
    y = add(x, x);
    out = (await y.read()) as Float32Array;
  } finally {
    rt.dryRun = false;
  }
  const d = counterDelta(before, rt.counters());
  assert.equal(d.dispatches, 1);
  assert.equal(d.submits, 1);
  assert.deepEqual([...out], [0, 0, 0, 0]);
  // The real mode computes it.
  assert.deepEqual([...(await add(x, x).read())], [2, 4, 6, 8]);
  y.dispose();
  x.dispose();
});
