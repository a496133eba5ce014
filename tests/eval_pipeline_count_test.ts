/**
 * Pipelines compiled during an evaluation with staggered episodes (the tiny world-action model
 * and tokenizer, 2 environments whose episodes last 3 and 5 agent steps, planner and encode
 * replayed as `deno task eval` runs them): the agent plans environments grouped by window
 * length, so a step's shapes are its groups (environments, window). A step whose groups were
 * all planned before compiles no pipeline: warm shapes reuse every
 * plan, and replays use the recorded ones.
 *
 * Shape-generic kernels (kernels/ops/dims.ts): after the first agent step of a configuration
 * (model, H, K), group shapes seen for the first time (a new window length or number of
 * environments) compile no pipeline either, the KV-cache decode kernels included
 * (kernels/ops/cached_attention.ts reads N, t and the position at run time). Matmul tiles
 * depend on whether a product has at most 16 rows; the first product of each kind compiles
 * both buckets. The same holds with f16 weight copies and f16 KV caches (`eval --precision
 * f16`: the plain products take ops/matmul_f16.ts, shape-generic in M too; the cache kernels'
 * f16 variants read N, t and the position at run time as the f32 ones do).
 */
import assert from "node:assert/strict";
import { counterDelta, initRuntime } from "../kernels/core/runtime.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { Tokenizer } from "../models/tokenizer/model.ts";
import { TINY_TOKENIZER } from "../models/tokenizer/config.ts";
import { PlanningAgent } from "../eval/agent.ts";
import { EnvHistory } from "../eval/context_history.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { replayedTokenizer } from "../eval/replayed_tokenizer.ts";
import { mulberry32 } from "../util/rng.ts";
import { f16Candidates, F16Shadows } from "../kernels/nn/f16_shadow.ts";

const rt = await initRuntime();

Deno.test("staggered evaluation: a step whose shapes were seen before compiles no pipeline", async () => {
  // L = 3, H = 1: windows of 1 then 2 observations.
  const cfg = worldActionConfig("tiny", { seed: 5, timesteps: 3 });
  const model = new WamPlanningModel(new WorldActionModel(cfg));
  const tok = replayedTokenizer(new Tokenizer({ ...TINY_TOKENIZER, seed: 6 }));
  const agent = new PlanningAgent(model, tok, { horizon: 1, beamWidth: 2, replay: true });
  const frame = TINY_TOKENIZER.inChannels * TINY_TOKENIZER.resolution ** 2;
  const lengths = [3, 5];
  const histories = lengths.map(() => new EnvHistory(agent.window));
  const age = lengths.map(() => 0);
  const valid = Array.from({ length: 18 }, (_, a) => (a < 6 ? 1 : 0));
  const rng = mulberry32(9);
  const seen = new Set<string>();
  const log: string[] = [];
  let checked = 0;
  for (let s = 0; s < 10; s++) {
    // The agent's groups this step: environments by window length.
    const groups = new Map<number, number>();
    for (const h of histories) groups.set(h.window, (groups.get(h.window) ?? 0) + 1);
    const keys = [...groups].map(([w, n]) => `${n}x${w}`);
    const warm = keys.every((k) => seen.has(k));
    const frames = Uint8Array.from({ length: 2 * frame }, () => Math.floor(rng() * 256));
    const before = rt.counters();
    const d = await agent.decide(
      frames,
      histories.map((history) => ({ history, task: 39, valid })),
    );
    const c = counterDelta(before, rt.counters());
    log.push(`step ${s} [${keys}] ${c.pipelinesCompiled} pipelines, ${c.bindGroupsCreated} bg`);
    if (s === 0) assert.ok(c.pipelinesCompiled > 0, "the first step compiles (counter works)");
    if (warm) {
      checked++;
      assert.equal(c.pipelinesCompiled, 0, log.join("\n"));
    }
    keys.forEach((k) => seen.add(k));
    // Each environment's episode ends after its length: its history restarts (staggered).
    d.forEach((x, e) => {
      histories[e].push(x.tokens, x.action);
      if (++age[e] === lengths[e]) {
        histories[e].clear();
        age[e] = 0;
      }
    });
  }
  assert.ok(checked >= 4, `only ${checked} steps had seen shapes:\n${log.join("\n")}`);
  assert.deepEqual(agent.replayStats().fallbacks, []);
  assert.ok(agent.replayStats().replays > 0, JSON.stringify(agent.replayStats()));
  console.log(log.join("\n"));
  agent.dispose();
  tok.dispose();
});

for (const f16 of [false, true]) {
  Deno.test({
    name: `staggered evaluation${f16 ? " (eval --precision f16)" : ""}: after the first step, ` +
      "new (environments, window) shapes compile no pipeline",
    ignore: f16 && !rt.ctx.hasF16,
    fn: () => newShapesCompileNothing(f16),
  });
}

/** `f16`: the world-action products read f16 weight copies, as `eval --precision f16`. */
async function newShapesCompileNothing(f16: boolean) {
  // L = 4, H = 1: windows of 1..3 observations; 3 environments whose episodes last 2, 3 and 5
  // agent steps make groups of 1..3 environments at every window length.
  const cfg = worldActionConfig("tiny", { seed: 7, timesteps: 4 });
  const wam = new WorldActionModel(cfg);
  const shadows = f16 ? new F16Shadows(f16Candidates(wam.parameters())) : null;
  // f16 keys and values in the KV caches too, as evaluate.ts plans under --precision f16.
  const model = new WamPlanningModel(wam, { cacheDtype: f16 ? "f16" : "f32" });
  const tok = replayedTokenizer(new Tokenizer({ ...TINY_TOKENIZER, seed: 8 }));
  const agent = new PlanningAgent(model, tok, { horizon: 1, beamWidth: 2, replay: true });
  const frame = TINY_TOKENIZER.inChannels * TINY_TOKENIZER.resolution ** 2;
  const lengths = [2, 3, 5];
  const histories = lengths.map(() => new EnvHistory(agent.window));
  const age = lengths.map(() => 0);
  const valid = Array.from({ length: 18 }, (_, a) => (a < 5 ? 1 : 0));
  const rng = mulberry32(11);
  // Which kernels compile: counted by label (the pipeline descriptor's).
  const labels: string[] = [];
  const create = rt.device.createComputePipeline.bind(rt.device);
  rt.device.createComputePipeline = (d: GPUComputePipelineDescriptor) => {
    labels.push(d.label ?? "?");
    return create(d);
  };
  const seen = new Set<string>();
  const log: string[] = [];
  let newShapes = 0;
  try {
    for (let s = 0; s < 12; s++) {
      const groups = new Map<number, number>();
      for (const h of histories) groups.set(h.window, (groups.get(h.window) ?? 0) + 1);
      const keys = [...groups].map(([w, n]) => `${n}x${w}`);
      const fresh = keys.filter((k) => !seen.has(k));
      const frames = Uint8Array.from({ length: 3 * frame }, () => Math.floor(rng() * 256));
      labels.length = 0;
      const d = await agent.decide(
        frames,
        histories.map((history) => ({ history, task: 12, valid })),
      );
      log.push(`step ${s} [${keys}] new [${fresh}]: ${labels.length} pipelines [${labels}]`);
      if (s === 0) {
        assert.ok(labels.length > 0, "the first step compiles (the hook works)");
        const half = labels.some((l) => l.includes("matmul.f16"));
        assert.equal(half, f16, `f16 products ${f16 ? "ran" : "did not run"}: [${labels}]`);
        const halfCache = labels.some((l) =>
          /^(appendKv|cachedAttention\w*|gatherCache) f16/.test(l)
        );
        assert.equal(halfCache, f16, `f16 KV cache kernels ${f16 ? "ran" : "did not run"}`);
      } else {
        if (fresh.length > 0) newShapes++;
        assert.deepEqual(labels, [], `step ${s} compiled:\n${log.join("\n")}`);
      }
      keys.forEach((k) => seen.add(k));
      d.forEach((x, e) => {
        histories[e].push(x.tokens, x.action);
        if (++age[e] === lengths[e]) {
          histories[e].clear();
          age[e] = 0;
        }
      });
    }
  } finally {
    rt.device.createComputePipeline = create;
  }
  assert.ok(newShapes >= 4, `only ${newShapes} steps met new shapes:\n${log.join("\n")}`);
  // Nothing compiles after step 0, so every shape's recordings agree: no eager fallbacks.
  assert.deepEqual(agent.replayStats().fallbacks, []);
  console.log(log.join("\n"));
  agent.dispose();
  tok.dispose();
  shadows?.dispose();
}
