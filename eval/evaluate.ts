/**
 * `deno task eval`: evaluate a JOWA checkpoint on Atari games with the paper's protocol and
 * planner, writing results.json, results.md (beside the paper's JOWA-150M figures) and
 * optional GIF recordings into the output directory. `--help` lists the options.
 *
 * Under an MPI launcher (`mpiexec -n N deno task eval ...`) the (game, episode) pairs are dealt
 * to the ranks (`sharding.ts`) and gathered to rank 0 after each game (`gather_runs.ts`); rank
 * 0 alone writes, and the results equal a one-process run's with the same seed.
 *
 * @module
 */
import {
  describeAdapter,
  GpuUnavailableError,
  requireUsableAdapter,
} from "../kernels/core/device.ts";
import { EnvError } from "../envs/python_env.ts";
import { SafetensorsError } from "../models/safetensors/mod.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { checkF16Support } from "../kernels/core/precision.ts";
import { f16Candidates, F16Shadows } from "../kernels/nn/f16_shadow.ts";
import { StepProgress } from "../util/progress.ts";
import { PlanningAgent } from "./agent.ts";
import { checkCheckpoint, CheckpointError, loadCheckpoint } from "../checkpoint/loader.ts";
import { type EvalOptions, parseEvalArgs, USAGE } from "./eval_options.ts";
import { runCli, UsageError } from "../util/cli.ts";
import { runGame } from "./episode_runner.ts";
import { writeRecording } from "./recording.ts";
import { fallbackDir, type GameRecord, gameRecord, writeResults } from "./results_writer.ts";
import { ensureWritableDir, fsReason, OutputDirError } from "../util/writable.ts";
import { evalTaskId } from "../atari/mod.ts";
import {
  type GameProtocol,
  type ModelSize,
  paperBeamWidth,
  resolveGameProtocol,
  resolveModelSize,
} from "./public_protocol.ts";
import { WamPlanningModel } from "./wam_planning_model.ts";
import { replayedTokenizer } from "./replayed_tokenizer.ts";
import * as path from "node:path";
import { type Comm, DistributedError, initDistributed } from "../distributed/mod.ts";
import { shardEpisodes } from "./sharding.ts";
import { gatherGameRun } from "./gather_runs.ts";

/**
 * The paper's beam width for a game (scores.json, T16); for games without one (the held-out
 * games) its rule: 2 with fewer than 10 valid actions, else 3.
 */
export function defaultBeamWidth(game: string): number {
  return paperBeamWidth(game);
}

/**
 * Run an evaluation; returns the output directory. With a `comm` of several ranks every rank
 * must call it with the same options; only rank 0 writes anything.
 * @throws OutputDirError when `opts.out` cannot be written (checked before any work), or when
 *   writing the results failed at the end: they are then in a fallback directory the message
 *   names.
 */
export async function evaluate(
  opts: EvalOptions,
  comm: Comm = initDistributed(),
): Promise<string> {
  const root = comm.rank === 0;
  await checkCheckpoint(opts.checkpoint, opts.tokenizer); // files and configs: before the GPU
  // An unwritable --out must fail now, not after the whole evaluation.
  if (root) ensureWritableDir(opts.out, `--out ${opts.out}`);
  const rt = await initRuntime();
  if (opts.precision === "f16") checkF16Support(rt.ctx.hasF16);
  const adapter = describeAdapter(rt.ctx);
  const log = (s: string) => {
    if (!opts.quiet && root) console.error(s);
  };
  log(`adapter: ${adapter}`);
  if (comm.size > 1) log(`sharded over ${comm.size} ranks: ${comm.description}`);
  const shard = shardEpisodes(opts.games, opts.episodes, comm.rank, comm.size);
  const ckpt = await loadCheckpoint(opts.checkpoint, opts.tokenizer);
  const cfg = ckpt.worldAction.cfg;
  log(`checkpoint: ${ckpt.files.worldAction} (world-action ${cfg.name}, ${cfg.layers} layers)`);
  // Every game's settings before the first episode: a game without public settings fails now.
  const size: ModelSize | null = opts.protocol === "public"
    ? resolveModelSize(cfg, opts.modelSize)
    : null;
  const protocols = new Map<string, GameProtocol>(
    opts.games.map((game) => [game, resolveGameProtocol(opts, game, size)]),
  );
  for (const p of protocols.values()) {
    if (p.horizon >= cfg.timesteps) {
      throw new UsageError(`--horizon ${p.horizon} must be below the context of ${cfg.timesteps}`);
    }
  }
  if (size) log(`protocol: public (the authors' JOWA-${size} settings, 108k agent-step cap)`);
  const horizon = Math.max(...[...protocols.values()].map((p) => p.horizon));
  if (opts.precision === "f16") {
    // Plain products of the world-action model read f16 copies of its weights from now on.
    new F16Shadows(f16Candidates(ckpt.worldAction.parameters()));
    log("precision: f16 weights in the world-action products and KV cache (f32 accumulation)");
  }
  const model = new WamPlanningModel(ckpt.worldAction, { cacheDtype: opts.precision });
  // Planner and tokenizer replay their recorded GPU work per shape (--no-replay: eager).
  const replay = opts.replay ?? true;
  const frameTokenizer = replayedTokenizer(ckpt.tokenizer, replay);
  const games: GameRecord[] = [];
  const authors: Record<string, readonly number[]> = {};
  let recordingsDir = path.join(opts.out, "recordings");
  for (const game of opts.games) {
    const proto = protocols.get(game)!;
    if (proto.authorsReturns) authors[game] = proto.authorsReturns;
    const taskId = evalTaskId(game, opts.taskProxy);
    const agent = new PlanningAgent(model, frameTokenizer, {
      horizon: proto.horizon,
      beamWidth: proto.beamWidth,
      gamma: opts.gamma,
      context: proto.context,
      replay,
    });
    const mine = shard.get(game)!;
    const bar = new StepProgress({
      label: `${game} (H ${agent.horizon}, K ${agent.beamWidth}, window ${agent.window})` +
        (comm.size > 1 ? ` rank 0's ${mine.length} of ${opts.episodes}` : ""),
      total: mine.length,
      unit: "episodes",
      enabled: !opts.quiet && root,
    });
    const part = await runGame(agent, {
      game,
      taskId,
      episodes: opts.episodes,
      episodeIds: mine,
      numEnvs: opts.envs ?? undefined,
      numProcesses: opts.processes ?? undefined,
      maxFrames: opts.maxFrames,
      maxAgentSteps: opts.maxAgentSteps ?? undefined,
      romDir: opts.romDir ?? undefined,
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
    agent.dispose(); // the planner's captured buffers (shapes depend on the game's settings)
    const run = await gatherGameRun(comm, part, opts.episodes, opts.record > 0);
    if (!run) continue; // not rank 0: it writes nothing
    for (const rec of run.recordings) {
      let file: string | null;
      try {
        file = await writeRecording(recordingsDir, game, rec, agent.horizon);
      } catch (e) {
        // --out went away mid-run: keep going, recordings go to a fallback directory.
        const alt = path.join(await fallbackDir(), "recordings");
        console.error(`recording: cannot write to ${recordingsDir} (${fsReason(e)}); using ${alt}`);
        recordingsDir = alt;
        file = await writeRecording(recordingsDir, game, rec, agent.horizon);
      }
      if (file) log(`recording: ${file}`);
    }
    const g = { ...gameRecord(run, taskId, agent.beamWidth, agent.horizon), window: agent.window };
    games.push(g);
    const mean = g.returns.reduce((a, b) => a + b, 0) / g.returns.length;
    log(
      `${game}: mean return ${mean.toFixed(1)} over ${g.returns.length} episodes, ` +
        `${g.agentStepsPerSecond.toFixed(1)} agent steps/s`,
    );
  }
  frameTokenizer.dispose();
  if (!root) return opts.out;
  const label = opts.label ??
    `JOWA ${cfg.name} evaluation (${opts.plan ? `planning H = ${horizon}` : "no planning"}${
      size ? `, public protocol, JOWA-${size} settings` : ""
    })`;
  const { json, markdown, results, fallbackReason } = await writeResults(opts.out, {
    createdAt: new Date().toISOString(),
    adapter,
    checkpoint: ckpt.files,
    settings: {
      episodes: opts.episodes,
      envs: opts.envs ?? opts.episodes,
      protocol: opts.protocol,
      ...(size ? { modelSize: size } : {}),
      plan: opts.plan,
      horizon: opts.plan ? opts.horizon ?? "per game" : 0,
      beamWidth: opts.beamWidth ?? "per game",
      context: opts.context ?? (opts.protocol === "public" ? "per game" : "all that fits"),
      epsilon: opts.epsilon,
      gamma: opts.gamma,
      maxFrames: opts.maxFrames,
      maxAgentSteps: opts.maxAgentSteps,
      seed: opts.seed,
      taskProxy: opts.taskProxy,
      stickyActions: 0,
      frameSkip: 4,
      terminal: "game over",
    },
    games,
  }, {
    label,
    reps: opts.bootstrapReps,
    seed: opts.seed,
    authors: size ? { model: `JOWA-${size}`, returns: authors } : undefined,
  });
  const iqm = results.hns.iqmOfGameMeans;
  log(
    `IQM HNS (game means) ${iqm.point.toFixed(3)} [${iqm.lower.toFixed(3)}, ${
      iqm.upper.toFixed(3)
    }]`,
  );
  log(`results: ${json}, ${markdown}`);
  if (fallbackReason) {
    throw new OutputDirError(
      `--out ${opts.out}: could not write the results (${fallbackReason}); ` +
        `they were saved to ${json} and ${markdown}`,
    );
  }
  return opts.out;
}

if (import.meta.main) {
  // Problems the user can fix print as one line, without a stack trace; others are bugs.
  await runCli(async () => {
    const opts = parseEvalArgs(Deno.args);
    if (!opts) {
      console.log(USAGE);
      return 0;
    }
    // Checkpoint problems first, then refuse an OpenGL CPU adapter (far too slow to plan on).
    await checkCheckpoint(opts.checkpoint, opts.tokenizer);
    requireUsableAdapter((await initRuntime()).ctx);
    if (opts.precision === "f16") checkF16Support((await initRuntime()).ctx.hasF16);
    const comm = initDistributed();
    await evaluate(opts, comm);
    // Before exiting: a rank that exits without finalize() aborts the whole job.
    await comm.finalize();
    return 0;
  }, {
    userErrors: [
      CheckpointError,
      SafetensorsError,
      EnvError,
      OutputDirError,
      DistributedError,
      GpuUnavailableError,
    ],
    usageHint: "run with --help for the options",
  });
}
