/**
 * The two evaluation protocols of `deno task eval` and how each resolves a game's planner
 * settings and episode cap.
 *
 * - `paper` (default): Tables 15/16 of the paper: H = 2, the paper's per-game beam width
 *   (scores.json), a window of all that fits (L - H = 6 timesteps), a 108 000-FRAME cap.
 * - `public`: what the authors' public code runs (atari/public_eval_settings.ts, from their
 *   `eval/JOWA_<size>_raw_scores.json`): per model size and game, the context length
 *   (their `buffer_size`: planning window = min(8 - H, context)), beam width and horizon, and a
 *   cap of 108 000 AGENT steps (432 000 frames; their `max_steps` compares with
 *   `info['timestep']`, which counts agent steps).
 *
 * Explicit flags (`--horizon`, `--beam-width`, `--context`, `--max-frames`, `--max-steps`)
 * override either protocol's values.
 *
 * @module
 */
import { gameReference } from "../atari/mod.ts";
import { PUBLIC_EVAL_SETTINGS, type PublicGameSettings } from "../atari/public_eval_settings.ts";
import { INTEGER_SIZE_FIELDS, type WorldActionConfig } from "../models/world_action/configs.ts";
import { CONFIGS } from "../models/world_action/configs.ts";
import { UsageError } from "../util/cli.ts";

/** Evaluation protocols. */
export type Protocol = "paper" | "public";

/** The released JOWA model sizes. */
export type ModelSize = "40M" | "70M" | "150M";

/** The released model sizes, smallest first. */
export const MODEL_SIZES: readonly ModelSize[] = ["40M", "70M", "150M"];

/** Their episode cap: 108k agent steps (`max_steps`). */
export const PUBLIC_MAX_AGENT_STEPS = 108_000;

/** The paper's episode cap: 108k emulator frames. */
export const PAPER_MAX_FRAMES = 108_000;

/** The authors' settings and raw returns of one game for one model size, or null. */
export function publicGameSettings(size: ModelSize, game: string): PublicGameSettings | null {
  const games = PUBLIC_EVAL_SETTINGS.models[`JOWA-${size}`];
  return games && Object.hasOwn(games, game) ? games[game] : null;
}

/** Games with public settings for a model size (the 15 pretraining games). */
export function publicGames(size: ModelSize): string[] {
  return Object.keys(PUBLIC_EVAL_SETTINGS.models[`JOWA-${size}`] ?? {});
}

/**
 * The paper's beam width for a game (scores.json, T16); for games without one (the held-out
 * games) its rule: 2 with fewer than 10 valid actions, else 3.
 */
export function paperBeamWidth(game: string): number {
  const ref = gameReference(game);
  return ref.beamWidth ?? (ref.validActions < 10 ? 2 : 3);
}

/**
 * The released size whose shapes a world-action config has (every size field equal to the
 * preset's, whatever the config's name), or null for a custom config.
 */
export function modelSizeOf(cfg: WorldActionConfig): ModelSize | null {
  for (const size of MODEL_SIZES) {
    const preset = CONFIGS[size];
    if (INTEGER_SIZE_FIELDS.every((k) => cfg[k] === preset[k])) return size;
  }
  return null;
}

/**
 * The model size the public protocol uses: the checkpoint's (from its config shapes), else
 * `--model-size`. A `--model-size` that contradicts a recognised config is an error.
 */
export function resolveModelSize(cfg: WorldActionConfig, flag: ModelSize | null): ModelSize {
  const found = modelSizeOf(cfg);
  if (found && flag && flag !== found) {
    throw new UsageError(
      `--model-size ${flag} contradicts the checkpoint, whose config has the shapes of ${found}`,
    );
  }
  const size = found ?? flag;
  if (!size) {
    throw new UsageError(
      `the checkpoint's world-action config "${cfg.name}" (${cfg.layers} layers, d ${cfg.d}) ` +
        `is none of ${MODEL_SIZES.join(", ")}: pass --model-size to pick the public settings`,
    );
  }
  return size;
}

/** The protocol-related settings of an evaluation (a subset of eval_options.ts EvalOptions). */
export interface ProtocolOptions {
  protocol: Protocol;
  plan: boolean;
  /** --horizon, or null for the protocol's value. */
  horizon: number | null;
  /** --beam-width, or null for the protocol's per-game value. */
  beamWidth: number | null;
  /** --context, or null for the protocol's (paper: all that fits; public: per game). */
  context: number | null;
}

/** How one game is evaluated. */
export interface GameProtocol {
  /** Planning horizon H (0 without planning). */
  horizon: number;
  /** Beam width K (1 without planning). */
  beamWidth: number;
  /** Context timesteps kept (window = min(L - H, context)); null = all that fits. */
  context: number | null;
  /** The authors' published returns with these settings (public protocol), else null. */
  authorsReturns: readonly number[] | null;
}

/**
 * Resolve a game's horizon, beam width and context under `opts.protocol` (`size` is needed for
 * the public protocol). Throws a UsageError for a game without public settings.
 */
export function resolveGameProtocol(
  opts: ProtocolOptions,
  game: string,
  size: ModelSize | null,
): GameProtocol {
  if (opts.protocol === "paper") {
    return {
      horizon: opts.plan ? opts.horizon ?? 2 : 0,
      beamWidth: opts.plan ? opts.beamWidth ?? paperBeamWidth(game) : 1,
      context: opts.context,
      authorsReturns: null,
    };
  }
  if (!size) throw new Error("resolveGameProtocol: the public protocol needs a model size");
  const s = publicGameSettings(size, game);
  if (!s) {
    throw new UsageError(
      `--protocol public: the authors published no settings for ${game} (JOWA-${size} has ` +
        `${publicGames(size).join(", ")})`,
    );
  }
  return {
    horizon: opts.plan ? opts.horizon ?? s.horizon : 0,
    beamWidth: opts.plan ? opts.beamWidth ?? s.beam_width : 1,
    context: opts.context ?? s.context,
    authorsReturns: s.raw_scores,
  };
}
