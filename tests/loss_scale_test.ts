/**
 * f16 training's optimizer side (kernels/nn/loss_scale.ts, f16_shadow.ts, optim.ts
 * `mixedPrecision`): a forced f16 overflow skips exactly that step on the GPU (weights and
 * moments unchanged) and halves the scale, good steps grow it, scaled-and-unscaled gradients
 * give the unguarded step's update, the f16 weight copies follow the masters, and a captured
 * (replayed) run equals the eager one bit for bit.
 */
import assert from "node:assert/strict";
import { initRuntime, runtime } from "../kernels/core/runtime.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { backward } from "../kernels/core/autograd.ts";
import { capture } from "../kernels/core/capture.ts";
import { matmul, mul, sumAll } from "../kernels/ops/mod.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { setPrecision } from "../kernels/core/precision.ts";
import { f16ShadowOf } from "../kernels/ops/matmul_f16.ts";
import { mulberry32 } from "../util/rng.ts";

await initRuntime();
const GPU_TEST = { sanitizeOps: false, sanitizeResources: false };
const HAS_F16 = runtime().ctx.hasF16;

const rows = 5, inF = 3, outF = 4;
let lastReplays = 0;

function inputs(overflowAt: number, steps: number): Float32Array[] {
  const r = mulberry32(7);
  return Array.from({ length: steps }, (_, s) => {
    const x = Float32Array.from({ length: rows * inF }, () => r() * 2 - 1);
    if (s === overflowAt) x[4] = 1e6; // beyond f16: the product overflows to inf
    return x;
  });
}

interface Snapshot {
  w: Float32Array;
  b: Float32Array;
  m: Float32Array;
  scale: number;
  counters: Float32Array;
  /** The logged gradient norm (clipStats[0]). */
  norm: number;
}

/** Run `xs` as steps (eager, or captured with `replay`) and snapshot after each. */
async function run(
  xs: Float32Array[],
  mode: { mixed: boolean; replay?: boolean },
): Promise<Snapshot[]> {
  const r = mulberry32(3);
  const w = tensor(Float32Array.from({ length: outF * inF }, () => r() - 0.5), [outF, inF]);
  const b = tensor(new Float32Array(outF), [outF]);
  w.requiresGrad = b.requiresGrad = true;
  const opt = new AdamW([["w", w], ["b", b]], {
    lr: 0.01,
    maxGradNorm: 100,
    mixedPrecision: mode.mixed ? { initScale: 1024, growthInterval: 2 } : false,
  });
  const step = (inp: { x: Float32Array }) =>
    tidy(() => {
      const y = matmul(tensor(inp.x, [rows, inF]), w, { transB: true, bias: b });
      const loss = sumAll(mul(y, y));
      opt.zeroGrad();
      backward(opt.scaleLoss(loss));
      opt.update();
      return loss;
    });
  const stepFn = mode.replay === undefined ? step : capture((i: { x: Float32Array }) => step(i), {
    name: "ls",
    replay: mode.replay,
    strict: true,
  });
  const out: Snapshot[] = [];
  for (const x of xs) {
    stepFn({ x });
    const ls = opt.lossScaler;
    const [wv, bv, mv, sv, cv, nv] = await readAll([
      w,
      b,
      opt.state[0].m,
      ...(ls ? [ls.scale, ls.counters] : [w, w]),
      opt.clipStats,
    ]);
    out.push({
      w: wv as Float32Array,
      b: bv as Float32Array,
      m: mv as Float32Array,
      scale: ls ? sv[0] : 0,
      counters: cv as Float32Array,
      norm: nv[0],
    });
  }
  if (mode.mixed) {
    // The f16 copy follows the master after every update.
    const copy = await f16ShadowOf(w)!.read();
    const last = out.at(-1)!.w;
    copy.forEach((v, i) => assert.equal(v, Math.f16round(last[i]), `copy ${i}`));
  }
  if (stepFn !== step) {
    const c = stepFn as ReturnType<typeof capture>;
    lastReplays = c.stats().replays;
    c.dispose();
  }
  opt.dispose();
  w.dispose();
  b.dispose();
  return out;
}

Deno.test({
  name: "loss scale: a forced overflow skips exactly that step and halves the scale; growth",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    setPrecision("f16", HAS_F16);
    try {
      const xs = inputs(2, 6);
      const s = await run(xs, { mixed: true });
      // Step 0, 1 good (scale doubles after 2 good steps), step 2 overflows, 3-5 good.
      assert.deepEqual(s.map((x) => x.scale), [1024, 2048, 1024, 1024, 2048, 2048]);
      assert.deepEqual(
        s.map((x) => [...x.counters.slice(0, 3)]),
        [[1, 0, 0], [0, 0, 0], [0, 1, 1], [1, 1, 0], [0, 1, 0], [1, 1, 0]],
      );
      // The skipped step left weights, bias and moments exactly as they were.
      assert.deepEqual(s[2].w, s[1].w);
      assert.deepEqual(s[2].b, s[1].b);
      assert.deepEqual(s[2].m, s[1].m);
      // Logged as -1 (finite: the trainers' non-finite guard must not stop the run).
      assert.deepEqual(s.map((x) => x.norm === -1), [false, false, true, false, false, false]);
      assert.ok(s.every((x) => Number.isFinite(x.norm)));
      assert.ok(s[3].w.some((v, i) => v !== s[2].w[i]), "the next step updates again");
      for (const x of s) assert.ok(x.w.every(Number.isFinite));
      // Without the guard the same overflow poisons the weights.
      const unguarded = await run(xs.slice(0, 3), { mixed: false });
      assert.ok(!unguarded[2].w.every(Number.isFinite), "unguarded: inf/NaN weights");
      // Good steps: scaling by a power of two and unscaling gives the unguarded update.
      for (let k = 0; k < 2; k++) {
        unguarded[k].w.forEach((v, i) =>
          assert.ok(Math.abs(v - s[k].w[i]) <= 1e-6 * Math.abs(v) + 1e-9, `step ${k} w ${i}`)
        );
      }
    } finally {
      setPrecision("f32", HAS_F16);
    }
  },
});

Deno.test({
  name: "loss scale: a captured run (overflow during replay) equals the eager run bit for bit",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    setPrecision("f16", HAS_F16);
    try {
      // Calls 1 eager, 2-3 record, 4+ replay: the overflow (index 4) happens in a replay.
      const xs = inputs(4, 7);
      const eager = await run(xs, { mixed: true, replay: false });
      const replayed = await run(xs, { mixed: true, replay: true });
      assert.equal(lastReplays, 4, "calls 4-7 replayed");
      assert.deepEqual(replayed, eager);
      assert.equal(eager[4].counters[2], 1, "step 4 skipped");
      assert.deepEqual(eager[4].w, eager[3].w);
    } finally {
      setPrecision("f32", HAS_F16);
    }
  },
});
