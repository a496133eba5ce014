/**
 * A small world-action model decoding with an f16 KV cache against the same decoding with an
 * f32 cache: a prefill, a branch into 2 beams, then 4 single-token steps (an action and 3
 * observation tokens), for each decode layer: the 5-dispatch one (the skinny qkv product's KV
 * epilogue writes the cache, `cachedAttentionProj` reads it) and the compact one
 * (transformer.ts `decodeCompact`: KV write and attention in one kernel). Width 288 (> 256) so the skinny kernels apply; the prefill
 * writes the cache with appendKv and the beam branch gathers it.
 *
 * Tolerances (relative, max norm over all decoded logits of a head): 5e-3, the bound the
 * README states for the f16 products. Measured values are printed.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { setPrecision } from "../kernels/core/precision.ts";
import { readAll, type Tensor, tensor } from "../kernels/core/tensor.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { KvCache, type StepOptions } from "../models/world_action/kv_cache.ts";
import { WorldActionModel, type WorldActionOutputs } from "../models/world_action/model.ts";
import { rng } from "./helpers/reference.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { perturbWeights } from "./helpers/perturb.ts";

const rt = await initRuntime();
const HAS_F16 = rt.ctx.hasF16;
const GPU_TEST = { sanitizeOps: false, sanitizeResources: false };

const cfg = worldActionConfig("tiny", { d: 288, heads: 4, layers: 2, timesteps: 2, seed: 5 });
const model = new WorldActionModel(cfg);
// Larger weights than the init so attention is far from uniform.
await perturbWeights(model, 6);
model.eval();

const E = 2, K = 2;
const r = rng(7);
const prefill = Int32Array.from({ length: E * 36 }, () => Math.floor(r() * cfg.obsVocab));
// Per beam: an action, then 3 observation tokens (the same for both precisions).
const tail = Array.from(
  { length: 4 },
  (_, j) =>
    Int32Array.from(
      { length: E * K },
      () => j === 0 ? Math.floor(r() * cfg.actions) : Math.floor(r() * cfg.obsVocab),
    ),
);

/** Every head's decoded values (obs logits, reward logits, Q values) after the prefill. */
async function decode(dtype: "f32" | "f16", opts: StepOptions) {
  const cache = KvCache.create(cfg, tensor([3, 11], [E], "i32"), 74, dtype);
  assert.equal(cache.dtype, dtype);
  const outs: WorldActionOutputs[] = [model.step(cache, tensor(prefill, [E, 36], "i32"))];
  const beams = cache.branch(tensor([0, 0, 1, 1], [E * K], "i32"));
  assert.equal(beams.dtype, dtype);
  for (const toks of tail) {
    outs.push(model.step(beams, tensor(toks, [E * K, 1], "i32"), opts));
  }
  const heads: Record<string, Tensor[]> = { obs: [], reward: [], q: [] };
  for (const o of outs) {
    if (o.obsLogits) heads.obs.push(o.obsLogits);
    if (o.rewardLogits) heads.reward.push(o.rewardLogits);
    if (o.q) heads.q.push(o.q.values);
  }
  const got: Record<string, number[]> = {};
  for (const [k, ts] of Object.entries(heads)) {
    got[k] = (await readAll(ts)).flatMap((v) => Array.from(v));
  }
  cache.dispose();
  beams.dispose();
  return got;
}

/** max |a - b| / max |b|. */
function relMax(a: number[], b: number[]): number {
  assert.equal(a.length, b.length);
  let d = 0, m = 0;
  a.forEach((v, i) => {
    d = Math.max(d, Math.abs(v - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  });
  return d / m;
}

Deno.test({
  name: "f16 KV cache: decode logits and Q values within 5e-3 of the f32 cache's (each " +
    "decode layer); precision f16 (f16 products too) likewise",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    assert.ok(model.blocks.every((b) => b.decodesCompact(E * K, 74)), "compact layer applies");
    const layers: [string, StepOptions][] = [
      ["5-dispatch", { compactLayer: false }],
      ["compact", { compactLayer: true }],
    ];
    for (const [name, opts] of layers) {
      const ref = await decode("f32", opts);
      assert.equal(ref.q.length, E * 18, "the prefill's Q row");
      const cacheOnly = await decode("f16", opts);
      // Everything under precision f16 (f16 products too): once, on the default layer.
      let all = cacheOnly;
      if (name === "compact") {
        setPrecision("f16", HAS_F16);
        try {
          all = await decode("f16", opts);
        } finally {
          setPrecision("f32", HAS_F16);
        }
      }
      const lines: string[] = [];
      for (const k of Object.keys(ref)) {
        const a = relMax(cacheOnly[k], ref[k]), b = relMax(all[k], ref[k]);
        lines.push(`${k} ${a.toExponential(1)} / ${b.toExponential(1)}`);
        assert.ok(a <= 5e-3 && b <= 5e-3, `${k} (${name}): ${a}, ${b}`);
        // The prefill's Q row is the same: its attention reads the f32 projections, not the
        // cache; every later row reads the f16 cache and moves.
        if (k === "q") assert.equal(a, 0, "the prefill does not read the cache");
        else assert.ok(a > 0, `${k}: the f16 cache changed the values`);
      }
      console.log(`${name}, f16 cache / all f16 vs f32: ${lines.join(", ")}`);
    }
  },
});

Deno.test({
  name: "f16 KV cache: created under precision f16 by default, f32 otherwise; the planner's " +
    "cacheDtype (eval --precision f16)",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: () => {
    const tasks = tensor([0], [1], "i32");
    const c32 = model.newCache(tasks, 8);
    setPrecision("f16", HAS_F16);
    let c16: KvCache;
    try {
      c16 = model.newCache(tasks, 8);
    } finally {
      setPrecision("f32", HAS_F16);
    }
    assert.equal(c32.dtype, "f32");
    assert.equal(c16.dtype, "f16");
    assert.ok(c16.layers.every((l) => l.dtype === "f16"));
    c32.dispose();
    c16.dispose();
    tasks.dispose();
    // The planning adapter's prefill (what `deno task eval --precision f16` plans with).
    for (const dtype of ["f16", "f32"] as const) {
      const planner = new WamPlanningModel(model, { cacheDtype: dtype });
      const { state, q } = planner.prefill(
        tensor(prefill, [E, 36], "i32"),
        tensor([3, 11], [E], "i32"),
      );
      assert.equal(state.cache.dtype, dtype);
      state.dispose();
      q.dispose();
    }
  },
});
