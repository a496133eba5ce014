/**
 * The planner and tokenizer encode under capture and replay (eval/captured_planner.ts,
 * models/tokenizer/captured_encode.ts) against the eager ones, on the tiny world-action model
 * and tokenizer: an episode-like run of the evaluation agent (windows growing to the full
 * length, then sliding; actions fed back; the number of environments changing) decides the
 * same actions and observation tokens with replay on and off, and the replayed steps are
 * really replayed (capture stats, no pipeline or bind group made, few uploads). The same
 * with the compact decode layer (the GPU default; this CPU adapter's default is the
 * 5-dispatch one), whose first kernel takes the greedy tokens.
 */
import assert from "node:assert/strict";
import { counterDelta, initRuntime } from "../kernels/core/runtime.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { decodeDefaults } from "../models/world_action/kv_cache.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { beamSearch } from "../eval/beam_search.ts";
import { capturePlanner } from "../eval/captured_planner.ts";
import { Tokenizer } from "../models/tokenizer/model.ts";
import { TINY_TOKENIZER } from "../models/tokenizer/config.ts";
import { type AgentDecision, PlanningAgent } from "../eval/agent.ts";
import { EnvHistory } from "../eval/context_history.ts";
import { replayedTokenizer } from "../eval/replayed_tokenizer.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { mulberry32 } from "../util/rng.ts";
import { parseEvalArgs, USAGE } from "../eval/eval_options.ts";

const rt = await initRuntime();

// L = 3 with H = 1: windows of 1, 2, then 2 observations (sliding) — replays from step 4 on.
const cfg = worldActionConfig("tiny", { seed: 3, timesteps: 3 });
const model = new WamPlanningModel(new WorldActionModel(cfg));
const tok = new Tokenizer({ ...TINY_TOKENIZER, seed: 4 });
const FRAME = TINY_TOKENIZER.inChannels * TINY_TOKENIZER.resolution ** 2;

/**
 * `steps` agent steps over `envs` environments (the last one idles after `stopAt` steps, so
 * the batch shrinks); random frames, the agent's actions fed back into the histories.
 */
async function episode(replay: boolean, envs: number, steps: number, stopAt: number) {
  const ft = replayedTokenizer(tok, replay);
  const agent = new PlanningAgent(model, ft, { horizon: 1, beamWidth: 2, replay });
  const histories = Array.from({ length: envs }, () => new EnvHistory(agent.window));
  const valid = Array.from(
    { length: envs },
    (_, e) => Array.from({ length: 18 }, (_, a) => (a < 4 + 3 * e ? 1 : 0)),
  );
  const rng = mulberry32(11);
  const log: AgentDecision[][] = [];
  const counts = [];
  for (let s = 0; s < steps; s++) {
    const live = Array.from({ length: envs }, (_, e) => e).filter((e) =>
      e < envs - 1 || s < stopAt
    );
    const frames = Uint8Array.from({ length: live.length * FRAME }, () => Math.floor(rng() * 256));
    const before = rt.counters();
    const d = await agent.decide(
      frames,
      live.map((e) => ({ history: histories[e], task: [39, 3][e % 2], valid: valid[e] })),
    );
    counts.push(counterDelta(before, rt.counters()));
    live.forEach((e, j) => histories[e].push(d[j].tokens, d[j].action));
    log.push(d);
  }
  const stats = agent.replayStats();
  agent.dispose();
  ft.dispose();
  return { log, stats, counts };
}

Deno.test("planner replay: an episode's decisions and tokens equal the eager planner's bit for bit", async () => {
  const steps = 9;
  const eager = await episode(false, 2, steps, 6);
  const replayed = await episode(true, 2, steps, 6);
  assert.equal(eager.stats.replays, 0);
  // The decisions depend on the inputs (else equal decisions would prove nothing).
  assert.ok(new Set(eager.log.flat().map((d) => d.action)).size > 1, "one action throughout");
  for (let s = 0; s < steps; s++) {
    const a = eager.log[s], b = replayed.log[s];
    assert.equal(a.length, b.length, `step ${s}: environments`);
    for (let i = 0; i < a.length; i++) {
      assert.equal(b[i].action, a[i].action, `step ${s}, env ${i}: action`);
      assert.deepEqual(Array.from(b[i].tokens), Array.from(a[i].tokens), `step ${s}: tokens`);
    }
  }
  // Windows 1, 2, 2, 2, ... with 2 environments: steps 2-3 record, 4-5 replay; then one
  // environment: eager, record, record.
  assert.deepEqual(replayed.stats.fallbacks, []);
  assert.equal(replayed.stats.replays, 2, JSON.stringify(replayed.stats));
  for (const s of [4, 5]) {
    const c = replayed.counts[s];
    assert.equal(c.pipelinesCompiled, 0, `step ${s}: pipelines`);
    assert.equal(c.bindGroupsCreated, 0, `step ${s}: bind groups`);
    // Frames (preprocess), encode staging, planner staging; the readback is no upload.
    assert.ok(c.uploads <= 4, `step ${s}: ${c.uploads} uploads`);
    assert.ok(
      c.uploads < eager.counts[s].uploads,
      `${c.uploads} vs eager ${eager.counts[s].uploads}`,
    );
  }
});

// The default layer on a GPU (`compactLayer: "auto"`); small: 2 environments, H 1, K 2.
Deno.test("planner replay, compact decode layer (greedy tokens in its first kernel) = eager", async () => {
  decodeDefaults.compactLayer = true;
  const labels: string[] = [];
  const dispatch = rt.dispatch.bind(rt);
  rt.dispatch = (k, b) => (labels.push(k.label), dispatch(k, b));
  try {
    await compactReplayEqualsEager();
  } finally {
    rt.dispatch = dispatch;
    decodeDefaults.compactLayer = "auto";
  }
  assert.ok(labels.includes("qkvAttentionProj"), "the compact layer ran");
  assert.ok(!labels.includes("greedyTokensInto"), "greedy tokens inside the first layer");
});

async function compactReplayEqualsEager() {
  const N = 2, O = cfg.obsTokens, A = cfg.actions;
  const opts = { horizon: 1, beamWidth: 2 };
  const inputs = (seed: number) => {
    let s = seed;
    const rnd = (n: number) => (s = (s * 1103515245 + 12345) % 2147483648) % n;
    return {
      toks: Int32Array.from({ length: N * O }, () => rnd(cfg.obsVocab)),
      valid: Float32Array.from(
        { length: N * A },
        (_, i) => (i % A < 5 + 4 * (i >= A ? 1 : 0) ? 1 : 0),
      ),
      tasks: Int32Array.from([39, 3]),
    };
  };
  const plan = capturePlanner(model, { ...opts, strict: true });
  const want = new Map<number, Float32Array[]>();
  // Calls: eager, record, verify, then a replay (kernels/core/capture.ts).
  for (const seed of [3, 3, 3, 5]) {
    const inp = inputs(seed);
    const current = tensor(inp.toks, [N, O], "i32");
    const out = plan({
      current,
      past: new Int32Array(0),
      tasks: inp.tasks,
      valid: inp.valid,
      keepPaths: true,
    });
    const got = await readAll([out.actions, out.values!, out.paths!]);
    current.dispose();
    if (!want.has(seed)) {
      // The eager reference of the same call.
      const eager = tidy(() => {
        const p = beamSearch(model, {
          tokens: tensor(inp.toks, [N, O], "i32"),
          tasks: tensor(inp.tasks, [N], "i32"),
          valid: tensor(inp.valid, [N, A]),
        }, { ...opts, keepPaths: true });
        return [p.actions, p.values!, p.paths!];
      });
      want.set(seed, await readAll(eager) as Float32Array[]);
      eager.forEach((x) => x.dispose());
    }
    want.get(seed)!.forEach((w, k) => assert.deepEqual(got[k], w, `seed ${seed} output ${k}`));
  }
  const stats = plan.stats();
  assert.deepEqual(stats.fallbacks, []);
  assert.ok(stats.replays >= 1, `replays: ${JSON.stringify(stats)}`);
  plan.dispose();
}

Deno.test("eval options: replay by default, --no-replay keeps the planner and encode eager", () => {
  assert.equal(parseEvalArgs(["--checkpoint", "c"])!.replay, true);
  assert.equal(parseEvalArgs(["--checkpoint", "c", "--no-replay"])!.replay, false);
  assert.match(USAGE, /--no-replay/);
});
