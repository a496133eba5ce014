/**
 * Runs a game's evaluation episodes with many environments in parallel (by default all of
 * them at once): no sticky actions, frame skip 4 with max-pooling, terminal on game over,
 * a frame cap, epsilon-greedy exploration (epsilon 0.001, uniform over the valid actions).
 *
 * Environments auto-reset; an environment whose episode ends starts the next episode still
 * to run, or idles (its frames are ignored and it steps with NOOP) when none is left.
 *
 * @module
 */
import { AtariVectorEnv } from "../envs/vector_env.ts";
import { mulberry32 } from "../envs/policies.ts";
import { romId } from "../atari/games.ts";
import type { PlanningAgent } from "./agent.ts";
import { EnvHistory } from "./context_history.ts";

/** A recorded episode: real frames and the planner's imagined frames at each step. */
export interface EpisodeRecording {
  episode: number;
  /** Real frames, one 84 x 84 byte array per step. */
  frames: Uint8Array[];
  /** Imagined frames per step: [H * 84 * 84] in [-1, 1] (empty without planning). */
  imagined: (Float32Array | null)[];
  /** Actions taken. */
  actions: number[];
  return: number;
}

/** Settings of one game's evaluation. */
export interface GameRunOptions {
  game: string;
  taskId: number;
  episodes: number;
  /** Parallel environments (default: episodes). */
  numEnvs?: number;
  /** Bridge processes (default: min(envs, 4)). */
  numProcesses?: number;
  /** Emulator-frame cap per episode (default 108 000). */
  maxFrames?: number;
  /** Exploration rate (default 0.001). */
  epsilon?: number;
  seed?: number;
  /** Record the first `record` episodes (default 0). */
  record?: number;
  /** Steps kept per recording (default 1000). */
  recordSteps?: number;
  /** Python interpreter for the emulator bridge. */
  python?: string;
  /** Called after every environment step. */
  onStep?: (s: { steps: number; finished: number; returns: number[] }) => void;
}

/** What a game's evaluation produced. */
export interface GameRun {
  game: string;
  returns: number[];
  lengths: number[];
  truncated: boolean[];
  /** Agent steps taken by environments running counted episodes. */
  agentSteps: number;
  /** Environment steps (batched). */
  batchSteps: number;
  seconds: number;
  recordings: EpisodeRecording[];
}

/** Run `opts.episodes` episodes of one game with `agent`. */
export async function runGame(agent: PlanningAgent, opts: GameRunOptions): Promise<GameRun> {
  const episodes = opts.episodes;
  const E = Math.min(opts.numEnvs ?? episodes, episodes);
  const epsilon = opts.epsilon ?? 0.001;
  const seed = opts.seed ?? 0;
  const record = opts.record ?? 0;
  const recordSteps = opts.recordSteps ?? 1000;
  const rng = mulberry32(seed ^ 0x5eed);
  const start = performance.now();
  await using env = await AtariVectorEnv.create({
    game: romId(opts.game),
    numEnvs: E,
    numProcesses: opts.numProcesses ?? Math.min(E, 4),
    autoReset: true,
    maxEpisodeFrames: opts.maxFrames ?? 108_000,
    python: opts.python,
  });
  const A = 18;
  const frameSize = env.obsShape[0] * env.obsShape[1];
  const valid = Array.from(
    { length: E },
    (_, i) => env.validActionMasks.subarray(i * A, i * A + A),
  );
  const validIds = valid.map((m) => [...m.keys()].filter((a) => m[a]));
  const histories = Array.from({ length: E }, () => new EnvHistory(agent.window));
  /** Episode index each environment runs, -1 when idle. */
  const slot = Array.from({ length: E }, (_, i) => i);
  let nextEpisode = E;
  const returns = new Array<number>(episodes).fill(NaN);
  const lengths = new Array<number>(episodes).fill(0);
  const truncated = new Array<boolean>(episodes).fill(false);
  const recs = new Map<number, EpisodeRecording>();
  const recordings: EpisodeRecording[] = [];
  const startRecording = (ep: number) => {
    if (ep < record) {
      recs.set(ep, { episode: ep, frames: [], imagined: [], actions: [], return: 0 });
    }
  };
  for (let i = 0; i < E; i++) startRecording(i);
  const seeds = Array.from({ length: E }, (_, i) => (seed * 7919 + i) % (2 ** 31 - 1));
  let obs = (await env.reset(seeds)).obs;
  let finished = 0;
  let agentSteps = 0;
  let batchSteps = 0;
  while (finished < episodes) {
    const live = slot.flatMap((s, i) => (s >= 0 ? [i] : []));
    const frames = new Uint8Array(live.length * frameSize);
    live.forEach((i, j) =>
      frames.set(obs.subarray(i * frameSize, (i + 1) * frameSize), j * frameSize)
    );
    const decisions = await agent.decide(
      frames,
      live.map((i) => ({
        history: histories[i],
        task: opts.taskId,
        valid: valid[i],
        record: recs.has(slot[i]),
      })),
    );
    const actions = new Array<number>(E).fill(0);
    live.forEach((i, j) => {
      const d = decisions[j];
      let a = d.action;
      if (rng() < epsilon) a = validIds[i][Math.floor(rng() * validIds[i].length)];
      actions[i] = a;
      histories[i].push(d.tokens, a);
      const rec = recs.get(slot[i]);
      if (rec && rec.frames.length < recordSteps) {
        rec.frames.push(frames.slice(j * frameSize, (j + 1) * frameSize));
        rec.imagined.push(d.imagined);
        rec.actions.push(a);
      }
    });
    const step = await env.step(actions);
    obs = step.obs;
    batchSteps++;
    agentSteps += live.length;
    for (const ep of step.episodes) {
      const s = slot[ep.env];
      if (s < 0) continue;
      returns[s] = ep.return;
      lengths[s] = ep.length;
      truncated[s] = ep.truncated;
      finished++;
      const rec = recs.get(s);
      if (rec) {
        rec.return = ep.return;
        recordings.push(rec);
        recs.delete(s);
      }
      histories[ep.env].clear();
      slot[ep.env] = nextEpisode < episodes ? nextEpisode++ : -1;
      if (slot[ep.env] >= 0) startRecording(slot[ep.env]);
    }
    opts.onStep?.({ steps: batchSteps, finished, returns: returns.filter((r) => !isNaN(r)) });
  }
  return {
    game: opts.game,
    returns,
    lengths,
    truncated,
    agentSteps,
    batchSteps,
    seconds: (performance.now() - start) / 1000,
    recordings: recordings.sort((a, b) => a.episode - b.episode),
  };
}
