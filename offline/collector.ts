/**
 * Data collection: run a behaviour policy in the emulator and write whole episodes to
 * per-game stores (`<out>/<Game>/`) through the dataset writer.
 *
 * A stop asked for (abort signal, Ctrl-C) closes the stores: complete, shorter. A fault (a
 * crashed emulator bridge, a write error) must not pass a short store off as complete: the
 * rows so far are committed to the journal and the store stays incomplete, and the next run
 * with the same options resumes it (new reset seeds per resumed segment, so no episode is
 * collected twice).
 * @module
 */
import { join } from "node:path";
import { DataError } from "./fs_util.ts";
import { FILES } from "./layout.ts";
import { type FrameStoreWriter, openStoreWriter, type StoreWriter } from "./writer.ts";
import { ensureWritableDir } from "../util/writable.ts";
import { epsilonGreedy, type PolicyFn, uniformPolicy } from "../envs/policies.ts";
import type { PreprocessOptions } from "../envs/preprocess_config.ts";
import { EnvError } from "../envs/python_env.ts";
import { AtariVectorEnv } from "../envs/vector_env.ts";

/** Options for {@link collect}. */
export interface CollectOptions
  extends Omit<PreprocessOptions, "terminalOnLifeLoss" | "height" | "width"> {
  /** Dataset root; each game goes to `<out>/<Game>/`. */
  out: string;
  /** Games (scores.json names or ALE ROM ids). */
  games: string[];
  /** Transitions (rows) to collect per game. */
  steps: number;
  /** Parallel environments per game (default 8). */
  envsPerGame?: number;
  /** Bridge processes (default 1). */
  numProcesses?: number;
  /** Base seed: environment k is reset with seed + k; actions use it too (default 0). */
  seed?: number;
  /** Policy to follow epsilon-greedily; default: uniform over valid actions. */
  policy?: PolicyFn;
  /** Exploration rate around `policy` (default 0.001, the paper's evaluation epsilon). */
  epsilon?: number;
  /** Replace complete stores already in `out` (default false). */
  overwrite?: boolean;
  /** Start interrupted stores over instead of resuming them (default false: resume). */
  restart?: boolean;
  /** ROM directory (see VectorEnvOptions.romDir). */
  romDir?: string;
  /** Python interpreter. */
  python?: string;
  /** Stop early when aborted: in-progress episodes are written as truncated. */
  signal?: AbortSignal;
  /** Called after every step with transitions recorded so far and the total asked for. */
  onProgress?: (done: number, total: number) => void;
}

/** Per-game outcome of {@link collect}. */
export interface CollectedGame {
  /** Game display name (store directory name). */
  game: string;
  /** Store directory. */
  dir: string;
  /** Episodes written (including truncated ones). */
  episodes: number;
  /** Rows written. */
  transitions: number;
  /** Returns of the episodes that ended by game over. */
  returns: number[];
}

/** Result of {@link collect}. */
export interface CollectSummary {
  /** One entry per game, in the order asked. */
  games: CollectedGame[];
  /** True when stopped by `signal` before reaching `steps`. */
  interrupted: boolean;
}

/** What a collection journals with its stores: a resume must use the same options. */
interface CollectState {
  identity: Record<string, unknown>;
  /** 0 for the first run, +1 per resume: offsets the seeds so episodes are not repeated. */
  segment: number;
}

/** Growable per-environment episode buffer. */
class EpisodeBuffer {
  frames: Uint8Array;
  actions: number[] = [];
  rewards: number[] = [];
  terminals: number[] = [];

  constructor(readonly frameBytes: number) {
    this.frames = new Uint8Array(frameBytes * 256);
  }

  get length(): number {
    return this.actions.length;
  }

  push(frame: Uint8Array, action: number, reward: number, terminal: number): void {
    const t = this.actions.length;
    if ((t + 1) * this.frameBytes > this.frames.length) {
      const grown = new Uint8Array(this.frames.length * 2);
      grown.set(this.frames);
      this.frames = grown;
    }
    this.frames.set(frame, t * this.frameBytes);
    this.actions.push(action);
    this.rewards.push(reward);
    this.terminals.push(terminal);
  }

  async flush(writer: StoreWriter, truncated: boolean): Promise<number> {
    const n = this.length;
    if (n === 0) return 0;
    await writer.addEpisode({
      frames: this.frames.slice(0, n * this.frameBytes),
      actions: Uint8Array.from(this.actions),
      rewards: Float32Array.from(this.rewards),
      terminals: Uint8Array.from(this.terminals),
      truncated,
    });
    this.actions = [];
    this.rewards = [];
    this.terminals = [];
    return n;
  }
}

/**
 * Collects `steps` transitions per game with a behaviour policy and writes them as
 * episodes: row t holds the observation at which actions[t] (a full 0..17 id) was taken,
 * its raw reward, and terminal = 1 only on the game-over step. Episodes cut by the time
 * limit, by reaching `steps`, or by `signal` are marked truncated. Stopped by `signal`, the
 * stores are closed (valid, shorter); on a fault they stay incomplete and resumable, and
 * calling again with the same options continues them up to `steps` rows.
 * @throws OutputDirError before any work when `out` cannot be written.
 */
export async function collect(opts: CollectOptions): Promise<CollectSummary> {
  const perGame = opts.envsPerGame ?? 8;
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(opts.steps) || opts.steps < 1) {
    throw new EnvError(`steps must be a positive integer, got ${opts.steps}`);
  }
  if (!Number.isInteger(perGame) || perGame < 1) {
    throw new EnvError(`envsPerGame must be a positive integer, got ${perGame}`);
  }
  if (opts.games.length === 0) throw new EnvError("no games given");
  if (!Number.isInteger(seed) || seed < 0 || seed > 2 ** 30) {
    throw new EnvError(`seed must be an integer in 0..2^30, got ${seed}`);
  }
  ensureWritableDir(opts.out); // before the bridges start
  const envGames = opts.games.flatMap((g) => Array<string>(perGame).fill(g));
  const env = await AtariVectorEnv.create({
    ...opts,
    game: envGames,
    numProcesses: opts.numProcesses ?? 1,
    autoReset: true,
    terminalOnLifeLoss: false,
    height: 84,
    width: 84,
  });
  const writers: FrameStoreWriter[] = [];
  const names = opts.games.map((_, g) => env.games[g * perGame]);
  const identity = {
    policy: opts.policy ? "epsilon-greedy" : "uniform",
    epsilon: opts.policy ? (opts.epsilon ?? 0.001) : 1,
    seed,
    envs: perGame,
    config: env.config,
  };
  let state: CollectState = { identity, segment: 0 };
  let collecting = false;
  let summary: CollectSummary;
  try {
    if (new Set(names).size !== names.length) throw new EnvError("a game is listed twice");
    for (let g = 0; g < names.length; g++) {
      const e = env.envs[g * perGame];
      writers.push(
        await openStoreWriter(join(opts.out, names[g]), {
          game: names[g],
          minimalActions: e.minimalActions,
          source: {
            kind: "emulator",
            policy: opts.policy ? "epsilon-greedy" : "uniform",
            epsilon: opts.policy ? (opts.epsilon ?? 0.001) : 1,
            seed,
            envs: perGame,
            rom: e.rom,
            romMd5: e.md5,
            ...env.config,
          },
          overwrite: opts.overwrite ?? false,
          resume: !opts.restart,
        }),
      );
    }
    // Resumed stores: same options only; the new segment gets seeds no earlier one used.
    for (const [g, w] of writers.entries()) {
      const st = w.resumeState as CollectState | undefined;
      if (!st && w.episodes === 0) continue;
      if (!st || JSON.stringify(st.identity) !== JSON.stringify(identity)) {
        throw new DataError(
          `${join(opts.out, names[g], FILES.journal)}: interrupted collection used other ` +
            `options (seed, envs, policy or preprocessing); rerun with those or --restart`,
        );
      }
      state = { identity, segment: Math.max(state.segment, st.segment + 1) };
    }
    for (const w of writers) await w.commit(state);
    const base = seed + state.segment * envGames.length;
    const policy = opts.policy
      ? epsilonGreedy(opts.policy, opts.epsilon ?? 0.001, base + 1)
      : uniformPolicy(base);
    collecting = true;
    summary = await run(env, writers, names, perGame, base, policy, opts);
  } catch (e) {
    // A fault: keep every row collected, journaled but not complete, so a rerun resumes.
    for (const w of writers) {
      try {
        if (!collecting) w.abort(); // failed while opening: leave the journals as they were
        else if (w.transitions >= opts.steps) await w.close();
        else {
          await w.commit(state);
          w.abort();
        }
      } catch {
        w.abort();
      }
    }
    if (collecting && e instanceof Error) {
      // On the first line, before any bridge stderr tail.
      const [head, ...tail] = e.message.split("\n");
      e.message = [
        `${head}; the stores in ${opts.out} are kept incomplete: rerun to resume them`,
        ...tail,
      ].join("\n");
    }
    throw e;
  } finally {
    await env.close();
  }
  // Finished or stopped on request: the stores are complete (shorter when stopped).
  for (const w of writers) await w.close();
  return summary;
}

async function run(
  env: AtariVectorEnv,
  writers: FrameStoreWriter[],
  names: string[],
  perGame: number,
  seed: number,
  policy: PolicyFn,
  opts: CollectOptions,
): Promise<CollectSummary> {
  const n = env.numEnvs;
  const frameBytes = 84 * 84;
  // Spread each game's quota (what its store still lacks) over its environments.
  const quota = Array.from({ length: n }, (_, i) => {
    const k = i % perGame;
    const left = Math.max(0, opts.steps - writers[Math.floor(i / perGame)].transitions);
    return Math.floor(left / perGame) + (k < left % perGame ? 1 : 0);
  });
  const recorded = new Array<number>(n).fill(0);
  const buffers = Array.from({ length: n }, () => new EpisodeBuffer(frameBytes));
  const games: CollectedGame[] = names.map((game, g) => ({
    game,
    dir: join(opts.out, game),
    episodes: writers[g].episodes,
    transitions: writers[g].transitions,
    returns: [],
  }));
  const total = opts.steps * names.length;
  let done = games.reduce((a, g) => a + Math.min(g.transitions, opts.steps), 0);
  const flush = async (i: number, truncated: boolean) => {
    const g = Math.floor(i / perGame);
    const rows = await buffers[i].flush(writers[g], truncated);
    if (rows > 0) {
      games[g].episodes++;
      games[g].transitions += rows;
    }
  };
  let interrupted = false;
  const loop = async (): Promise<void> => {
    let obs = (await env.reset(Array.from({ length: n }, (_, k) => seed + k))).obs;
    while (recorded.some((r, i) => r < quota[i])) {
      if (opts.signal?.aborted) {
        interrupted = true;
        break;
      }
      const actions = Array.from(
        await policy({ obs, validActionMasks: env.validActionMasks, games: env.games }),
      );
      const s = await env.step(actions);
      const ended = new Map(s.episodes.map((e) => [e.env, e]));
      for (let i = 0; i < n; i++) {
        if (recorded[i] >= quota[i]) continue;
        const ep = ended.get(i);
        const gameOver = ep !== undefined && !ep.truncated;
        buffers[i].push(
          obs.subarray(i * frameBytes, (i + 1) * frameBytes),
          actions[i],
          s.rewards[i],
          gameOver ? 1 : 0,
        );
        recorded[i]++;
        done++;
        if (ep) {
          if (gameOver) games[Math.floor(i / perGame)].returns.push(ep.return);
          await flush(i, ep.truncated);
        } else if (recorded[i] === quota[i]) {
          await flush(i, true); // quota reached mid-episode
        }
      }
      obs = s.obs;
      opts.onProgress?.(done, total);
    }
  };
  try {
    await loop();
  } catch (e) {
    // Rows up to the fault are valid: keep them as truncated episodes.
    for (let i = 0; i < n; i++) await flush(i, true).catch(() => {});
    throw e;
  }
  for (let i = 0; i < n; i++) await flush(i, true);
  return { games, interrupted };
}
