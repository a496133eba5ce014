/**
 * Atari game names, ALE ROM ids, the full action space and the minimal action sets.
 *
 * The 20 JOWA games' ROM ids and minimal action sets come from the generated reference data
 * ({@linkcode REFERENCE_SCORES}, out of `shared/reference/scores.json`, read from ale-py
 * 0.12.1 `getMinimalActionSet()`); this module only derives views of it. The live emulator
 * re-checks them in tests/envs_games_test.ts.
 * @module
 */
import { REFERENCE_SCORES } from "./reference_scores.ts";

/** ALE's 18 full action names, indexed by full action id. */
export const ACTION_NAMES: readonly string[] = Object.freeze([
  "NOOP",
  "FIRE",
  "UP",
  "RIGHT",
  "LEFT",
  "DOWN",
  "UPRIGHT",
  "UPLEFT",
  "DOWNRIGHT",
  "DOWNLEFT",
  "UPFIRE",
  "RIGHTFIRE",
  "LEFTFIRE",
  "DOWNFIRE",
  "UPRIGHTFIRE",
  "UPLEFTFIRE",
  "DOWNRIGHTFIRE",
  "DOWNLEFTFIRE",
]);

/** Number of actions in the full action space the agent speaks. */
export const NUM_FULL_ACTIONS = 18;

/** One known game. */
export interface GameInfo {
  /** Display name (scores.json key), e.g. "MsPacman". */
  readonly name: string;
  /** ale-py ROM id, e.g. "ms_pacman". */
  readonly rom: string;
  /** Full action ids of the minimal action set, ALE order (DQN-Replay action k = [k]). */
  readonly minimalActions: readonly number[];
}

/** The 20 JOWA games keyed by display name, in scores.json's order (15 pretraining, 5 held out). */
export const GAMES: Readonly<Record<string, GameInfo>> = Object.freeze(
  Object.fromEntries(
    Object.entries(REFERENCE_SCORES.games).map((
      [name, g],
    ) => [name, Object.freeze({ name, rom: g.rom, minimalActions: g.minimalActions })]),
  ),
);

/**
 * Game -> minimal action set as full action ids (0..17, ALE order). DQN-Replay action k of a
 * game means `MINIMAL_ACTIONS[game][k]`. Other games: pass the set explicitly.
 */
export const MINIMAL_ACTIONS: Readonly<Record<string, readonly number[]>> = Object.freeze(
  Object.fromEntries(Object.values(GAMES).map((g) => [g.name, g.minimalActions])),
);

/**
 * The minimal action set of a game (scores.json spelling), as a fresh array.
 * @throws Error when the game is not one of the 20 known here.
 */
export function minimalActionsOf(game: string): number[] {
  const a = Object.hasOwn(MINIMAL_ACTIONS, game) ? MINIMAL_ACTIONS[game] : undefined;
  if (!a) {
    throw new Error(`no minimal action set known for "${game}" (give it explicitly)`);
  }
  return [...a];
}

/** CamelCase display name to snake_case ROM id ("SpaceInvaders" -> "space_invaders"). */
export function camelToRom(name: string): string {
  return name.replace(/(?<=[a-z0-9])(?=[A-Z])/g, "_").toLowerCase();
}

/**
 * ALE ROM id for a game name: a GAMES key, any CamelCase ALE name, or an ALE ROM id.
 * Validity is checked by the bridge, which lists the valid names on error.
 */
export function romId(game: string): string {
  const known = Object.hasOwn(GAMES, game) ? GAMES[game] : undefined;
  return known?.rom ?? (/[A-Z]/.test(game) ? camelToRom(game) : game);
}

/** Display name for a ROM id: the GAMES key when known, else CamelCase of the id. */
export function gameName(romOrName: string): string {
  const rom = romId(romOrName);
  const known = Object.values(GAMES).find((g) => g.rom === rom);
  if (known) return known.name;
  return rom.split("_").map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join("");
}

/** Maps DQN-Replay minimal-set action indices to full action ids (throws when out of range). */
export function minimalToFull(
  minimalActions: readonly number[],
  indices: ArrayLike<number>,
): Uint8Array {
  const out = new Uint8Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const a = minimalActions[indices[i]];
    if (a === undefined) {
      throw new RangeError(
        `action index ${indices[i]} outside the minimal set of ${minimalActions.length}`,
      );
    }
    out[i] = a;
  }
  return out;
}

/** A [18] 0/1 mask of the game's valid (minimal-set) actions. */
export function validActionMask(minimalActions: readonly number[]): Uint8Array {
  const mask = new Uint8Array(NUM_FULL_ACTIONS);
  for (const a of minimalActions) mask[a] = 1;
  return mask;
}
