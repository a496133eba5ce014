/**
 * The planner and tokenizer encode under capture and replay (eval/captured_planner.ts,
 * models/tokenizer/captured_encode.ts) against the eager ones, on the tiny world-action model
 * and tokenizer: an episode-like run of the evaluation agent (windows growing to the full
 * length, then sliding; actions fed back; the number of environments changing) decides the
 * same actions and observation tokens with replay on and off, and the replayed steps are
 * really replayed (capture stats, no pipeline or bind group made, few uploads).
 */
import assert from "node:assert/strict";
import { counterDelta, initRuntime } from "../kernels/core/runtime.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
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

Deno.test("eval options: replay by default, --no-replay keeps the planner and encode eager", () => {
  assert.equal(parseEvalArgs(["--checkpoint", "c"])!.replay, true);
  assert.equal(parseEvalArgs(["--checkpoint", "c", "--no-replay"])!.replay, false);
  assert.match(USAGE, /--no-replay/);
});
