/**
 * Planning and evaluation throughput (eval/): beam-search latency per environment step
 * (prefill of a full 6-timestep window + H = 2 imagined timesteps, K = 2 and 4, one readback)
 * for the tiny, 40M and 150M world-action configs with random weights, with 1 and 16
 * environments, the greedy policy for reference, and evaluation agent steps per second on
 * Pong (emulator + tokenizer + planner, 16 environments).
 *
 *   deno run -A bench/eval_bench.ts            # tiny, 40M, 150M (a real GPU)
 *   deno run -A bench/eval_bench.ts --quick    # tiny only, fewer repetitions (lavapipe)
 *   deno run -A bench/eval_bench.ts --no-env   # skip the emulator benchmark
 *
 * Target on an H100: <= 30 ms per step for 150M with K = 4 and one environment.
 *
 * @module
 */
import { describeAdapter } from "../kernels/core/device.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { type ConfigName, worldActionConfig } from "../models/world_action/configs.ts";
import { PAPER_TOKENIZER, TINY_TOKENIZER, Tokenizer } from "../models/tokenizer/model.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { PlanningAgent } from "../eval/agent.ts";
import { beamSearch } from "../eval/beam_search.ts";
import { windowTimesteps } from "../eval/context_history.ts";
import { runGame } from "../eval/episode_runner.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";

const args = Deno.args;
if (args.includes("--help") || args.includes("-h")) {
  console.log("deno run -A bench/eval_bench.ts [--quick] [--no-env]");
  Deno.exit(0);
}
const quick = args.includes("--quick");
const withEnv = !args.includes("--no-env");
const rt = await initRuntime();
console.log(`adapter: ${describeAdapter(rt.ctx)}`);

const configs: ConfigName[] = quick ? ["tiny"] : ["tiny", "40M", "150M"];
const envCounts = [1, 16];
const reps = quick ? 3 : 20;
const H = 2;

/** Median ms of `fn` after one warm-up (pipeline compilation). */
async function time(fn: () => Promise<void>): Promise<number> {
  await fn();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

console.log("\nplanning latency per environment step (median ms; prefill + search + readback)");
console.log("| config | envs | greedy | H=2 K=2 | H=2 K=4 |");
console.log("| --- | ---: | ---: | ---: | ---: |");
for (const name of configs) {
  const cfg = worldActionConfig(name);
  const model = new WorldActionModel(cfg);
  const planner = new WamPlanningModel(model);
  const w = windowTimesteps(cfg.timesteps, H);
  const t = w * (cfg.obsTokens + 1) - 1;
  for (const N of envCounts) {
    const toks = Int32Array.from({ length: N * t }, (_, i) => {
      const off = (i % t) % (cfg.obsTokens + 1);
      return off === cfg.obsTokens ? i % 6 : (i * 7919) % cfg.obsVocab;
    });
    const valid = Array.from({ length: N * 18 }, (_, i) => (i % 18 < 9 ? 1 : 0));
    const step = (horizon: number, beamWidth: number) => async () => {
      const a = tidy(() =>
        beamSearch(planner, {
          tokens: tensor(toks, [N, t], "i32"),
          tasks: tensor(new Int32Array(N).fill(39), [N], "i32"),
          valid: tensor(valid, [N, 18]),
        }, { horizon, beamWidth }).actions
      );
      await readAll([a]);
      a.dispose();
    };
    const greedy = await time(step(0, 1));
    const k2 = await time(step(H, 2));
    const k4 = await time(step(H, 4));
    console.log(`| ${name} | ${N} | ${greedy.toFixed(1)} | ${k2.toFixed(1)} | ${k4.toFixed(1)} |`);
  }
  // Free the weights before the next (bigger) config.
  for (const p of model.parameters()) p.dispose();
}

if (withEnv) {
  const name: ConfigName = quick ? "tiny" : "150M";
  const tcfg = quick ? TINY_TOKENIZER : PAPER_TOKENIZER;
  const tokenizer = new Tokenizer(tcfg);
  tokenizer.eval();
  const model = new WorldActionModel(worldActionConfig(name, { obsVocab: tcfg.vocab }));
  const agent = new PlanningAgent(new WamPlanningModel(model), tokenizer, {
    horizon: H,
    beamWidth: 2,
  });
  const maxFrames = quick ? 40 : 800;
  const play = (frames: number) =>
    runGame(agent, { game: "Pong", taskId: 39, episodes: 16, maxFrames: frames, epsilon: 0.001 });
  // Warm-up: the first 7 steps compile the prefill of every window length.
  await play(28);
  const run = await play(maxFrames);
  console.log(
    `\nevaluation on Pong (${name} world-action model, ${quick ? "tiny" : "paper"} tokenizer, ` +
      `16 environments, H=2 K=2, ${
        maxFrames / 4
      } steps each after a warm-up; emulator included): ` +
      `${(run.agentSteps / run.seconds).toFixed(1)} agent steps/s ` +
      `(${(1000 * run.seconds / run.batchSteps).toFixed(0)} ms per batched step)`,
  );
}
