/**
 * `deno task eval`: evaluate a JOWA checkpoint on Atari games with the paper's protocol and
 * planner, writing results.json, results.md (beside the paper's JOWA-150M figures) and
 * optional GIF recordings into the output directory. `--help` lists the options.
 *
 * @module
 */
import { describeAdapter } from "../kernels/core/device.ts";
import { EnvError } from "../envs/python_env.ts";
import { SafetensorsError } from "../models/safetensors/mod.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { StepProgress } from "../util/progress.ts";
import { PlanningAgent } from "./agent.ts";
import { CheckpointError, loadCheckpoint, resolveCheckpoint } from "../checkpoint/loader.ts";
import { type EvalOptions, parseEvalArgs, USAGE, UsageError } from "./eval_options.ts";
import { runGame } from "./episode_runner.ts";
import { writeRecording } from "./recording.ts";
import { type GameRecord, gameRecord, writeResults } from "./results_writer.ts";
import { gameReference } from "../atari/scores.ts";
import { evalTaskId } from "../atari/task_proxy.ts";
import { WamPlanningModel } from "./wam_planning_model.ts";
import * as path from "node:path";

/**
 * The paper's beam width for a game (scores.json, T16); for games without one (the held-out
 * games) its rule: 2 with fewer than 10 valid actions, else 3.
 */
export function defaultBeamWidth(game: string): number {
  const ref = gameReference(game);
  return ref.beamWidth ?? (ref.validActions < 10 ? 2 : 3);
}

/** Run an evaluation; returns the output directory. */
export async function evaluate(opts: EvalOptions): Promise<string> {
  resolveCheckpoint(opts.checkpoint, opts.tokenizer); // fail fast, before the GPU starts
  const rt = await initRuntime();
  const adapter = describeAdapter(rt.ctx);
  const log = (s: string) => {
    if (!opts.quiet) console.error(s);
  };
  log(`adapter: ${adapter}`);
  const ckpt = await loadCheckpoint(opts.checkpoint, opts.tokenizer);
  const cfg = ckpt.worldAction.cfg;
  log(`checkpoint: ${ckpt.files.worldAction} (world-action ${cfg.name}, ${cfg.layers} layers)`);
  const horizon = opts.plan ? opts.horizon : 0;
  if (horizon >= cfg.timesteps) {
    throw new UsageError(`--horizon ${horizon} must be below the context of ${cfg.timesteps}`);
  }
  const model = new WamPlanningModel(ckpt.worldAction);
  const games: GameRecord[] = [];
  for (const game of opts.games) {
    const beamWidth = opts.plan ? opts.beamWidth ?? defaultBeamWidth(game) : 1;
    const taskId = evalTaskId(game, opts.taskProxy);
    const agent = new PlanningAgent(model, ckpt.tokenizer, {
      horizon,
      beamWidth,
      gamma: opts.gamma,
    });
    const bar = new StepProgress({
      label: `${game} (H ${agent.horizon}, K ${agent.beamWidth})`,
      total: opts.episodes,
      unit: "episodes",
      enabled: !opts.quiet,
    });
    const run = await runGame(agent, {
      game,
      taskId,
      episodes: opts.episodes,
      numEnvs: opts.envs ?? undefined,
      numProcesses: opts.processes ?? undefined,
      maxFrames: opts.maxFrames,
      epsilon: opts.epsilon,
      seed: opts.seed,
      record: opts.record,
      recordSteps: opts.recordSteps,
      onStep: (s) => {
        const mean = s.returns.length ? s.returns.reduce((a, b) => a + b, 0) / s.returns.length : 0;
        bar.update(s.finished, { step: s.steps, "mean return": mean });
      },
    });
    bar.finish();
    for (const rec of run.recordings) {
      const file = await writeRecording(
        path.join(opts.out, "recordings"),
        game,
        rec,
        agent.horizon,
      );
      if (file) log(`recording: ${file}`);
    }
    const g = gameRecord(run, taskId, agent.beamWidth, agent.horizon);
    games.push(g);
    const mean = g.returns.reduce((a, b) => a + b, 0) / g.returns.length;
    log(
      `${game}: mean return ${mean.toFixed(1)} over ${g.returns.length} episodes, ` +
        `${g.agentStepsPerSecond.toFixed(1)} agent steps/s`,
    );
  }
  const label = opts.label ??
    `JOWA ${cfg.name} evaluation (${opts.plan ? `planning H = ${horizon}` : "no planning"})`;
  const { json, markdown, results } = await writeResults(opts.out, {
    createdAt: new Date().toISOString(),
    adapter,
    checkpoint: ckpt.files,
    settings: {
      episodes: opts.episodes,
      envs: opts.envs ?? opts.episodes,
      plan: opts.plan,
      horizon,
      beamWidth: opts.beamWidth ?? "per game",
      epsilon: opts.epsilon,
      gamma: opts.gamma,
      maxFrames: opts.maxFrames,
      seed: opts.seed,
      taskProxy: opts.taskProxy,
      stickyActions: 0,
      frameSkip: 4,
      terminal: "game over",
    },
    games,
  }, { label, reps: opts.bootstrapReps, seed: opts.seed });
  const iqm = results.hns.iqmOfGameMeans;
  log(
    `IQM HNS (game means) ${iqm.point.toFixed(3)} [${iqm.lower.toFixed(3)}, ${
      iqm.upper.toFixed(3)
    }]`,
  );
  log(`results: ${json}, ${markdown}`);
  return opts.out;
}

if (import.meta.main) {
  let opts: EvalOptions | null;
  try {
    opts = parseEvalArgs(Deno.args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`error: ${e.message}\nrun with --help for the options`);
    Deno.exit(2);
  }
  if (!opts) {
    console.log(USAGE);
    Deno.exit(0);
  }
  try {
    await evaluate(opts);
  } catch (e) {
    // Problems the user can fix print as one line, without a stack trace.
    if (
      e instanceof CheckpointError || e instanceof UsageError || e instanceof SafetensorsError ||
      e instanceof EnvError
    ) {
      console.error(`error: ${e.message}`);
      Deno.exit(e instanceof UsageError ? 2 : 1);
    }
    throw e;
  }
}
