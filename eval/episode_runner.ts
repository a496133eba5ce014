/**
 * Runs a game's evaluation episodes with many environments in parallel (by default all of
 * them at once): no sticky actions, frame skip 4 with max-pooling, terminal on game over,
 * a frame or agent-step cap, epsilon-greedy exploration (epsilon 0.001, uniform over the valid actions).
 *
 * An environment whose episode ends starts the next episode still to run, or idles (its frames
 * are ignored and it steps with NOOP) when none is left. Every episode is reset with its own
 * seed and explores with its own random stream, both functions of (seed, game, episode index)
 * alone (`sharding.ts`): an episode's result does not depend on which environment, process or
 * rank ran it, so a sharded evaluation (`episodeIds`) reproduces a one-process one.
 *
 * @module
 */
import { AtariVectorEnv } from "../envs/vector_env.ts";
import { mulberry32 } from "../envs/policies.ts";
import { episodeExploreSeed, episodeResetSeed } from "./sharding.ts";
import { romId } from "../atari/mod.ts";
import type { PlanningAgent } from "./agent.ts";
import { EnvHistory } from "./context_history.ts";

/** Emulator frames per agent step (the protocol's frame skip). */
export const FRAME_SKIP = 4;

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
  /**
   * The episode indices (in 0..episodes-1) this call runs, e.g. one rank's share of a sharded
   * evaluation (default: all). Seeds and recordings follow these indices.
   */
  episodeIds?: readonly number[];
  /** Parallel environments (default: the number of episodes run). */
  numEnvs?: number;
  /** Bridge processes (default: min(envs, 4)). */
  numProcesses?: number;
  /** Emulator-frame cap per episode (default 108 000; 0 = none). */
  maxFrames?: number;
  /**
   * Agent-step cap per episode, the authors' `max_steps` (their public protocol: 108 000). When
   * set it replaces `maxFrames`: the runner ends an episode after this many agent steps (it
   * counts as truncated) and resets its environment. Counted here, not as frames, because some
   * games (Berzerk) start their episode frame counter above 0.
   */
  maxAgentSteps?: number;
  /** Directory of `<rom>.bin` files instead of ale-py's bundled ROMs (default: ALE_ROMS_DIR). */
  romDir?: string;
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
  /** The episode index of each entry of returns, lengths and truncated. */
  episodeIds: number[];
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
  const ids = [...(opts.episodeIds ?? Array.from({ length: opts.episodes }, (_, i) => i))];
  for (const id of ids) {
    if (!(Number.isInteger(id) && id >= 0 && id < opts.episodes)) {
      throw new Error(`episodeIds: ${id} is not an episode index below ${opts.episodes}`);
    }
  }
  /** Episodes run here; `slot` and the result arrays index `ids`. */
  const episodes = ids.length;
  const E = Math.min(opts.numEnvs ?? episodes, episodes);
  const epsilon = opts.epsilon ?? 0.001;
  const seed = opts.seed ?? 0;
  const record = opts.record ?? 0;
  const recordSteps = opts.recordSteps ?? 1000;
  if (
    opts.maxAgentSteps !== undefined &&
    !(Number.isInteger(opts.maxAgentSteps) && opts.maxAgentSteps > 0)
  ) {
    throw new Error(`maxAgentSteps must be a positive integer, got ${opts.maxAgentSteps}`);
  }
  const maxSteps = opts.maxAgentSteps ?? Infinity;
  const maxFrames = opts.maxAgentSteps !== undefined ? 0 : opts.maxFrames ?? 108_000;
  const start = performance.now();
  const empty = { game: opts.game, episodeIds: ids, agentSteps: 0, batchSteps: 0 };
  if (episodes === 0) {
    return { ...empty, returns: [], lengths: [], truncated: [], seconds: 0, recordings: [] };
  }
  await using env = await AtariVectorEnv.create({
    game: romId(opts.game),
    numEnvs: E,
    numProcesses: opts.numProcesses ?? Math.min(E, 4),
    autoReset: true,
    maxEpisodeFrames: maxFrames,
    frameSkip: FRAME_SKIP,
    romDir: opts.romDir,
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
  /** Position in `ids` of the episode each environment runs, -1 when idle. */
  const slot = Array.from({ length: E }, (_, i) => i);
  const resetSeed = (p: number) => episodeResetSeed(seed, opts.game, ids[p]);
  /** Each environment's running episode's exploration stream. */
  const rngs = slot.map((p) => mulberry32(episodeExploreSeed(seed, opts.game, ids[p])));
  let nextEpisode = E;
  const returns = new Array<number>(episodes).fill(NaN);
  const lengths = new Array<number>(episodes).fill(0);
  const truncated = new Array<boolean>(episodes).fill(false);
  const recs = new Map<number, EpisodeRecording>();
  const recordings: EpisodeRecording[] = [];
  const startRecording = (p: number) => {
    if (ids[p] < record) {
      recs.set(p, { episode: ids[p], frames: [], imagined: [], actions: [], return: 0 });
    }
  };
  for (let i = 0; i < E; i++) startRecording(i);
  let obs = (await env.reset(slot.map(resetSeed))).obs;
  // Agent steps and return of each environment's running episode (for the agent-step cap).
  const epSteps = new Array<number>(E).fill(0);
  const epReturn = new Array<number>(E).fill(0);
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
      const rng = rngs[i];
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
    const ended = new Set<number>();
    // Environments starting their next episode: reset with that episode's seed (an auto-reset
    // would continue the environment's own RNG, which depends on what ran there before).
    const fresh: (number | null)[] = new Array(E).fill(null);
    let anyFresh = false;
    const finish = (i: number, ret: number, length: number, cut: boolean) => {
      const s = slot[i];
      returns[s] = ret;
      lengths[s] = length;
      truncated[s] = cut;
      finished++;
      const rec = recs.get(s);
      if (rec) {
        rec.return = ret;
        recordings.push(rec);
        recs.delete(s);
      }
      histories[i].clear();
      slot[i] = nextEpisode < episodes ? nextEpisode++ : -1;
      if (slot[i] >= 0) {
        startRecording(slot[i]);
        rngs[i] = mulberry32(episodeExploreSeed(seed, opts.game, ids[slot[i]]));
        fresh[i] = resetSeed(slot[i]);
        anyFresh = true;
      }
    };
    for (const ep of step.episodes) {
      ended.add(ep.env);
      epSteps[ep.env] = 0;
      epReturn[ep.env] = 0;
      if (slot[ep.env] >= 0) finish(ep.env, ep.return, ep.length, ep.truncated);
    }
    // The agent-step cap: end the episode here and start the environment's next one.
    for (const i of live) {
      if (ended.has(i)) continue;
      epSteps[i]++;
      epReturn[i] += step.rewards[i];
      if (epSteps[i] < maxSteps) continue;
      // With nothing left to run the environment idles on in its old episode.
      finish(i, epReturn[i], epSteps[i], true);
      epSteps[i] = 0;
      epReturn[i] = 0;
    }
    if (anyFresh) {
      const first = (await env.reset(fresh)).obs;
      fresh.forEach((c, i) => {
        if (c !== null) obs.set(first.subarray(i * frameSize, (i + 1) * frameSize), i * frameSize);
      });
    }
    opts.onStep?.({ steps: batchSteps, finished, returns: returns.filter((r) => !isNaN(r)) });
  }
  return {
    ...empty,
    returns,
    lengths,
    truncated,
    agentSteps,
    batchSteps,
    seconds: (performance.now() - start) / 1000,
    recordings: recordings.sort((a, b) => a.episode - b.episode),
  };
}
