/**
 * Vectorized Atari environments: N emulators spread over a pool of bridge processes,
 * stepped together with one request per process per step.
 * @module
 */
import { BridgeError, BridgeProcess } from "./bridge_process.ts";
import { gameName, NUM_FULL_ACTIONS, romId, validActionMask } from "../atari/mod.ts";
import {
  type PreprocessConfig,
  type PreprocessOptions,
  resolvePreprocess,
} from "./preprocess_config.ts";
import { ensurePython, EnvError } from "./python_env.ts";

/** Options for {@link AtariVectorEnv.create}. */
export interface VectorEnvOptions extends PreprocessOptions {
  /** One game for every environment, or one game per environment (names or ALE ROM ids). */
  game: string | string[];
  /** Number of environments when `game` is a single name (default 1). */
  numEnvs?: number;
  /** Bridge processes to spread the environments over (default 1, at most numEnvs). */
  numProcesses?: number;
  /** Start a new episode inside step() when one ends (default false). */
  autoReset?: boolean;
  /** Directory of `<rom>.bin` files to use instead of ale-py's bundled ROMs (env ALE_ROMS_DIR). */
  romDir?: string;
  /** Reject actions outside the game's minimal action set (default false: any of 0..17). */
  rejectInvalidActions?: boolean;
  /** Python interpreter (default: see ensurePython). */
  python?: string;
  /** Per-request timeout in milliseconds (default 60 000). */
  timeoutMs?: number;
}

/** An episode that ended (game over or time limit) during a step. */
export interface FinishedEpisode {
  /** Environment index. */
  env: number;
  /** Game display name. */
  game: string;
  /** Sum of raw rewards. */
  return: number;
  /** Agent steps. */
  length: number;
  /** Emulator frames, including reset no-ops. */
  frames: number;
  /** True when cut by the time limit rather than ended by the game. */
  truncated: boolean;
}

/** Result of {@link AtariVectorEnv.reset}. */
export interface ResetResult {
  /** Observations [N, H, W] uint8 grayscale. */
  obs: Uint8Array;
  /** Lives left per environment. */
  lives: Int32Array;
  /** No-op frames applied per environment (-1 where not reset). */
  noops: Int32Array;
}

/** Result of {@link AtariVectorEnv.step}. */
export interface StepResult {
  /** Observations [N, H, W]; with autoReset, the first frame of the new episode where one ended. */
  obs: Uint8Array;
  /** Raw (unclipped) rewards summed over the skipped frames. */
  rewards: Float32Array;
  /** 1 where the game ended (or a life was lost, with terminalOnLifeLoss). */
  terminals: Uint8Array;
  /** 1 where the episode hit the time limit. */
  truncations: Uint8Array;
  /** Lives left (after an auto-reset: of the new episode). */
  lives: Int32Array;
  /** Episodes that finished at this step. */
  episodes: FinishedEpisode[];
}

/** What the bridge reports about each environment. */
export interface EnvDescription {
  /** ALE ROM id. */
  rom: string;
  /** md5 of the ROM file actually loaded (DQN-Replay used older dumps for 11 games). */
  md5: string;
  /** Path of that ROM file. */
  romPath: string;
  /** Full action ids of the game's minimal action set, ALE order. */
  minimalActions: number[];
}

function copyBytes(b: Uint8Array): Uint8Array {
  const c = new Uint8Array(b.length);
  c.set(b);
  return c;
}

/** Batched Atari environments behind ALE bridge processes. Call {@link close} when done. */
export class AtariVectorEnv implements AsyncDisposable {
  /** Number of environments. */
  readonly numEnvs: number;
  /** Game display name per environment. */
  readonly games: string[];
  /** Per-environment ROM id, md5 and minimal action set, as reported by ALE. */
  readonly envs: EnvDescription[];
  /** Resolved preprocessing. */
  readonly config: PreprocessConfig;
  /** [N, 18] 0/1 masks of valid actions. */
  readonly validActionMasks: Uint8Array;
  /** Bridge process ids (for diagnostics). */
  readonly pids: number[];
  #procs: BridgeProcess[];
  #ranges: [number, number][];
  #timeoutMs: number;
  #strict: boolean;
  #autoReset: boolean;
  #closed = false;
  // 1 where an environment must be reset before stepping; checked here so that a
  // refused step never leaves some bridges stepped and others not.
  #needsReset: Uint8Array;
  #everReset: Uint8Array;

  private constructor(
    procs: BridgeProcess[],
    ranges: [number, number][],
    envs: EnvDescription[],
    opts: VectorEnvOptions,
    config: PreprocessConfig,
  ) {
    this.#procs = procs;
    this.#ranges = ranges;
    this.envs = envs;
    this.numEnvs = envs.length;
    this.games = envs.map((e) => gameName(e.rom));
    this.config = config;
    this.#timeoutMs = opts.timeoutMs ?? 60_000;
    this.#strict = opts.rejectInvalidActions ?? false;
    this.#autoReset = opts.autoReset ?? false;
    this.#needsReset = new Uint8Array(envs.length).fill(1);
    this.#everReset = new Uint8Array(envs.length);
    this.pids = procs.map((p) => p.pid);
    this.validActionMasks = new Uint8Array(this.numEnvs * NUM_FULL_ACTIONS);
    envs.forEach((e, i) => this.validActionMasks.set(validActionMask(e.minimalActions), i * 18));
  }

  /** Observation height x width. */
  get obsShape(): [number, number] {
    return [this.config.height, this.config.width];
  }

  /** Starts the bridge processes and loads the games. */
  static async create(opts: VectorEnvOptions): Promise<AtariVectorEnv> {
    const config = resolvePreprocess(opts);
    const games = typeof opts.game === "string"
      ? Array<string>(opts.numEnvs ?? 1).fill(opts.game)
      : [...opts.game];
    if (
      typeof opts.game !== "string" && opts.numEnvs !== undefined && opts.numEnvs !== games.length
    ) {
      throw new EnvError(`numEnvs ${opts.numEnvs} does not match ${games.length} games`);
    }
    const n = games.length;
    if (!Number.isInteger(n) || n < 1) throw new EnvError(`numEnvs must be >= 1, got ${n}`);
    const np = Math.min(opts.numProcesses ?? 1, n);
    if (!Number.isInteger(np) || np < 1) {
      throw new EnvError(`numProcesses must be >= 1, got ${opts.numProcesses}`);
    }
    const python = await ensurePython({ python: opts.python });
    const romDir = opts.romDir ?? Deno.env.get("ALE_ROMS_DIR") ?? null;
    const ranges: [number, number][] = [];
    for (let p = 0; p < np; p++) {
      ranges.push([Math.floor((p * n) / np), Math.floor(((p + 1) * n) / np)]);
    }
    const started = await Promise.allSettled(ranges.map(() => BridgeProcess.start({ python })));
    const procs = started.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
    try {
      const failed = started.find((s) => s.status === "rejected") as PromiseRejectedResult;
      if (failed) throw failed.reason;
      const autoReset = opts.autoReset ?? false;
      const replies = await Promise.all(procs.map((p, i) =>
        p.request({
          op: "init",
          roms: games.slice(ranges[i][0], ranges[i][1]).map(romId),
          romDir,
          config: { ...config, autoReset },
        }, opts.timeoutMs ?? 60_000)
      ));
      const envs = replies.flatMap((r) => r.envs as EnvDescription[]);
      return new AtariVectorEnv(procs, ranges, envs, opts, config);
    } catch (e) {
      await Promise.all(procs.map((p) => p.close()));
      throw e;
    }
  }

  async #all(build: (lo: number, hi: number) => Record<string, unknown>) {
    if (this.#closed) throw new EnvError("environment is closed");
    try {
      return await Promise.all(
        this.#procs.map((p, i) => p.request(build(...this.#ranges[i]), this.#timeoutMs)),
      );
    } catch (e) {
      // A broken bridge leaves the batch unusable: stop every process now.
      if (e instanceof BridgeError) await this.close();
      throw e;
    }
  }

  /**
   * Starts new episodes. `seeds[i]` (integer 0..2^31-2) reseeds environment i; `null`
   * leaves it running (its observation is returned unchanged).
   */
  async reset(seeds: ArrayLike<number | null>): Promise<ResetResult> {
    const n = this.numEnvs;
    if (seeds.length !== n) throw new EnvError(`reset: expected ${n} seeds, got ${seeds.length}`);
    const list = Array.from(seeds);
    list.forEach((s, i) => {
      if (s !== null && !(Number.isInteger(s) && s >= 0 && s < 2 ** 31 - 1)) {
        throw new EnvError(`reset: seed ${s} for environment ${i} is not an integer in 0..2^31-2`);
      }
      if (s === null && !this.#started(i)) {
        throw new EnvError(`reset: environment ${i} has never been reset; give a seed`);
      }
    });
    const replies = await this.#all((lo, hi) => ({ op: "reset", seeds: list.slice(lo, hi) }));
    list.forEach((s, i) => {
      if (s !== null) {
        this.#needsReset[i] = 0;
        this.#everReset[i] = 1;
      }
    });
    const [h, w] = this.obsShape;
    const out: ResetResult = {
      obs: new Uint8Array(n * h * w),
      lives: new Int32Array(n),
      noops: new Int32Array(n),
    };
    replies.forEach((r, i) => {
      const lo = this.#ranges[i][0];
      out.obs.set(r.obs as Uint8Array, lo * h * w);
      out.lives.set(new Int32Array(copyBytes(r.lives as Uint8Array).buffer), lo);
      out.noops.set(new Int32Array(copyBytes(r.noops as Uint8Array).buffer), lo);
    });
    return out;
  }

  #started(i: number): boolean {
    return this.#everReset[i] === 1;
  }

  #checkActions(actions: ArrayLike<number>): Uint8Array {
    const n = this.numEnvs;
    if (actions.length !== n) {
      throw new EnvError(`step: expected ${n} actions, got ${actions.length}`);
    }
    const a = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const v = actions[i];
      if (!Number.isInteger(v) || v < 0 || v >= NUM_FULL_ACTIONS) {
        throw new EnvError(`step: action ${v} for environment ${i} is outside 0..17`);
      }
      if (this.#strict && !this.validActionMasks[i * NUM_FULL_ACTIONS + v]) {
        throw new EnvError(
          `step: action ${v} is not valid in ${this.games[i]} (environment ${i}); valid: ` +
            this.envs[i].minimalActions.join(","),
        );
      }
      a[i] = v;
    }
    const stale = this.#needsReset.indexOf(1);
    if (stale >= 0) {
      throw new EnvError(
        `step: environment ${stale} needs reset() first` +
          (this.#started(stale) ? " (its episode ended; autoReset is off)" : ""),
      );
    }
    return a;
  }

  /** Advances every environment by one agent step with full action ids (0..17). */
  async step(actions: ArrayLike<number>): Promise<StepResult> {
    const acts = this.#checkActions(actions);
    const replies = await this.#all((lo, hi) => ({ op: "step", actions: acts.subarray(lo, hi) }));
    const n = this.numEnvs;
    const [h, w] = this.obsShape;
    const out: StepResult = {
      obs: new Uint8Array(n * h * w),
      rewards: new Float32Array(n),
      terminals: new Uint8Array(n),
      truncations: new Uint8Array(n),
      lives: new Int32Array(n),
      episodes: [],
    };
    replies.forEach((r, p) => {
      const [lo, hi] = this.#ranges[p];
      out.obs.set(r.obs as Uint8Array, lo * h * w);
      out.rewards.set(new Float32Array(copyBytes(r.rewards as Uint8Array).buffer), lo);
      out.terminals.set(r.terminals as Uint8Array, lo);
      out.truncations.set(r.truncations as Uint8Array, lo);
      out.lives.set(new Int32Array(copyBytes(r.lives as Uint8Array).buffer), lo);
      const ret = new Float64Array(copyBytes(r.episodeReturns as Uint8Array).buffer);
      const len = new Int32Array(copyBytes(r.episodeLengths as Uint8Array).buffer);
      const frames = new Int32Array(copyBytes(r.episodeFrames as Uint8Array).buffer);
      for (let j = 0; j < hi - lo; j++) {
        if (Number.isNaN(ret[j])) continue;
        if (!this.#autoReset) this.#needsReset[lo + j] = 1;
        out.episodes.push({
          env: lo + j,
          game: this.games[lo + j],
          return: ret[j],
          length: len[j],
          frames: frames[j],
          truncated: out.truncations[lo + j] === 1,
        });
      }
    });
    return out;
  }

  /** Stops every bridge process (idempotent). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#procs.map((p) => p.close()));
  }

  /** Same as {@link close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
