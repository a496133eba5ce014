/**
 * Observation and episode preprocessing settings; defaults follow the JOWA paper's
 * evaluation protocol (paper T15/E.3).
 * @module
 */
import { EnvError } from "./python_env.ts";

/** Preprocessing options; every field is optional and defaults to the paper's protocol. */
export interface PreprocessOptions {
  /** Emulator frames per agent step, action repeated (default 4). */
  frameSkip?: number;
  /** Observation = pixel-wise max of the last two frames of a step (default true). */
  maxPool?: boolean;
  /** ALE sticky-action probability (default 0: no sticky actions). */
  stickyActionProb?: number;
  /** Up to this many NOOP frames (uniform 1..noopMax) after each reset (default 0: off). */
  noopMax?: number;
  /** Report terminal on a lost life; the game itself continues (default false). */
  terminalOnLifeLoss?: boolean;
  /**
   * Truncate an episode once it has run this many emulator frames, counting reset
   * no-ops (default 108 000 as in the paper's table; the public JOWA code caps 108k
   * agent steps, i.e. 432 000 frames). 0 disables the limit.
   */
  maxEpisodeFrames?: number;
  /** Observation height (default 84). */
  height?: number;
  /** Observation width (default 84). */
  width?: number;
}

/** Fully resolved preprocessing settings, as sent to the bridge. */
export type PreprocessConfig = Required<PreprocessOptions>;

/** The paper's evaluation protocol. */
export const PAPER_PREPROCESS: Readonly<PreprocessConfig> = Object.freeze({
  frameSkip: 4,
  maxPool: true,
  stickyActionProb: 0,
  noopMax: 0,
  terminalOnLifeLoss: false,
  maxEpisodeFrames: 108_000,
  height: 84,
  width: 84,
});

function int(name: string, v: number, lo: number, hi: number): number {
  if (!Number.isInteger(v) || v < lo || v > hi) {
    throw new EnvError(`${name} must be an integer in ${lo}..${hi}, got ${v}`);
  }
  return v;
}

/** Fills defaults and validates; throws {@link EnvError} on a bad value. */
export function resolvePreprocess(opts: PreprocessOptions = {}): PreprocessConfig {
  const c: PreprocessConfig = { ...PAPER_PREPROCESS };
  for (const k of Object.keys(PAPER_PREPROCESS) as (keyof PreprocessConfig)[]) {
    // only known keys: callers pass wider option objects
    if (opts[k] !== undefined) (c as Record<string, unknown>)[k] = opts[k];
  }
  int("frameSkip", c.frameSkip, 1, 64);
  int("noopMax", c.noopMax, 0, 100_000);
  int("maxEpisodeFrames", c.maxEpisodeFrames, 0, 2 ** 31 - 1);
  int("height", c.height, 1, 210);
  int("width", c.width, 1, 160);
  if (
    (c.height !== 210 && 210 % c.height === 0) || (c.width !== 160 && 160 % c.width === 0)
  ) {
    throw new EnvError(
      `observation size ${c.height}x${c.width}: integer downscale factors are not supported`,
    );
  }
  if (!(c.stickyActionProb >= 0 && c.stickyActionProb <= 1)) {
    throw new EnvError(`stickyActionProb must be in [0, 1], got ${c.stickyActionProb}`);
  }
  return c;
}
