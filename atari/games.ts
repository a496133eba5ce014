/**
 * Atari game names, ALE ROM ids and minimal action sets.
 *
 * The table covers the 20 JOWA games (scores.json keys); its minimal action sets were
 * read from ale-py 0.12.1 `getMinimalActionSet()` and are re-checked against the live
 * emulator and scores.json by tests/envs_games_test.ts.
 * @module
 */

/** ALE's 18 full action names, indexed by full action id. */
export const ACTION_NAMES: readonly string[] = [
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
];

/** Number of actions in the full action space the agent speaks. */
export const NUM_FULL_ACTIONS = 18;

/** One known game. */
export interface GameInfo {
  /** Display name (scores.json key), e.g. "MsPacman". */
  name: string;
  /** ale-py ROM id, e.g. "ms_pacman". */
  rom: string;
  /** Full action ids of the minimal action set, ALE order (DQN-Replay action k = [k]). */
  minimalActions: readonly number[];
}

/** The 20 JOWA games keyed by display name. */
export const GAMES: Readonly<Record<string, GameInfo>> = {
  Assault: { name: "Assault", rom: "assault", minimalActions: [0, 1, 2, 3, 4, 11, 12] },
  Atlantis: { name: "Atlantis", rom: "atlantis", minimalActions: [0, 1, 11, 12] },
  BeamRider: {
    name: "BeamRider",
    rom: "beam_rider",
    minimalActions: [0, 1, 2, 3, 4, 6, 7, 11, 12],
  },
  Berzerk: {
    name: "Berzerk",
    rom: "berzerk",
    minimalActions: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  },
  Carnival: { name: "Carnival", rom: "carnival", minimalActions: [0, 1, 3, 4, 11, 12] },
  Centipede: {
    name: "Centipede",
    rom: "centipede",
    minimalActions: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  },
  ChopperCommand: {
    name: "ChopperCommand",
    rom: "chopper_command",
    minimalActions: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  },
  DemonAttack: { name: "DemonAttack", rom: "demon_attack", minimalActions: [0, 1, 3, 4, 11, 12] },
  NameThisGame: {
    name: "NameThisGame",
    rom: "name_this_game",
    minimalActions: [0, 1, 3, 4, 11, 12],
  },
  Phoenix: { name: "Phoenix", rom: "phoenix", minimalActions: [0, 1, 3, 4, 5, 11, 12, 13] },
  Seaquest: {
    name: "Seaquest",
    rom: "seaquest",
    minimalActions: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  },
  SpaceInvaders: {
    name: "SpaceInvaders",
    rom: "space_invaders",
    minimalActions: [0, 1, 3, 4, 11, 12],
  },
  StarGunner: {
    name: "StarGunner",
    rom: "star_gunner",
    minimalActions: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  },
  TimePilot: {
    name: "TimePilot",
    rom: "time_pilot",
    minimalActions: [0, 1, 2, 3, 4, 5, 10, 11, 12, 13],
  },
  Zaxxon: {
    name: "Zaxxon",
    rom: "zaxxon",
    minimalActions: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  },
  Pong: { name: "Pong", rom: "pong", minimalActions: [0, 1, 3, 4, 11, 12] },
  Robotank: {
    name: "Robotank",
    rom: "robotank",
    minimalActions: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  },
  YarsRevenge: {
    name: "YarsRevenge",
    rom: "yars_revenge",
    minimalActions: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  },
  Gravitar: {
    name: "Gravitar",
    rom: "gravitar",
    minimalActions: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  },
  MsPacman: { name: "MsPacman", rom: "ms_pacman", minimalActions: [0, 2, 3, 4, 5, 6, 7, 8, 9] },
};

/** CamelCase display name to snake_case ROM id ("SpaceInvaders" -> "space_invaders"). */
export function camelToRom(name: string): string {
  return name.replace(/(?<=[a-z0-9])(?=[A-Z])/g, "_").toLowerCase();
}

/**
 * ALE ROM id for a game name: a GAMES key, any CamelCase ALE name, or an ALE ROM id.
 * Validity is checked by the bridge, which lists the valid names on error.
 */
export function romId(game: string): string {
  return GAMES[game]?.rom ?? (/[A-Z]/.test(game) ? camelToRom(game) : game);
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
