/**
 * Reference Atari scores and per-game settings used by JOWA evaluation, generated from
 * `shared/reference/scores.json` by `atari/scores_codegen.ts`. Do not edit by hand; regenerate.
 * Field meanings are in {@linkcode REFERENCE_SCORES}'s `_about` entry.
 *
 * @module
 */

/** Which stage of the JOWA protocol a game belongs to. */
export type GameSplit = "pretrain" | "finetune";

/** Reference data of one game, as stored in `scores.json`. */
export interface GameReference {
  /** ale-py ROM id. */
  readonly rom: string;
  /** Pretraining (15 games) or held-out fine-tuning (5 games). */
  readonly split: GameSplit;
  /** Size of the game's minimal action set. */
  readonly validActions: number;
  /** Random-policy score (human-normalization low point). */
  readonly random: number;
  /** Human score (human-normalization high point). */
  readonly human: number;
  /** DQN reference return for DQN-normalized scores (fine-tuning games only). */
  readonly dqn?: number;
  /** Beam width K used at evaluation with planning horizon 2 (pretraining games only). */
  readonly beamWidth?: number;
  /** JOWA-150M return reported in the paper. */
  readonly jowa150m: number;
  /** Full-action ids (0..17) of the minimal action set in ALE's order. */
  readonly minimalActions: readonly number[];
}

/** The whole reference file: field documentation and per-game data. */
export interface ReferenceScores {
  /** Provenance and meaning of each field. */
  readonly _about: Readonly<Record<string, string>>;
  /** Per-game data keyed by game name (e.g. "SpaceInvaders"), in the file's order. */
  readonly games: Readonly<Record<string, GameReference>>;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object") {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Contents of `scores.json` (deeply frozen). */
export const REFERENCE_SCORES: ReferenceScores = deepFreeze({
  "_about": {
    "random, human":
      "Standard Atari reference scores (Mnih et al. 2015 table as used by rliable / Dopamine / DQN Zoo). Carnival has no standard entry; the JOWA paper uses random 0 and human 3800, kept here.",
    "dqn":
      "DQN reference returns that the JOWA paper uses for DQN-normalized fine-tuning scores (its Table 17).",
    "validActions":
      "Size of the game's minimal action set (JOWA paper Table 6; Atlantis's minimal set has 4 actions in ALE although the paper lists 18).",
    "beamWidth":
      "Beam width K the JOWA paper uses at evaluation with planning horizon 2 (Table 16).",
    "jowa150m":
      "JOWA-150M return reported in the paper (Table 2 for pretraining games, Table 17 for fine-tuning games). With these random/human scores the 15 pretraining games give median HNS 0.456 and IQM HNS 0.789, as the paper reports.",
    "rom": "ale-py ROM id.",
    "minimalActions":
      "Full-action ids (0..17) of the game's minimal action set in ALE's order, read from ale-py 0.12.1. DQN-Replay action k means minimalActions[k].",
  },
  "games": {
    "Assault": {
      "rom": "assault",
      "split": "pretrain",
      "validActions": 7,
      "random": 222.4,
      "human": 742,
      "beamWidth": 2,
      "jowa150m": 2302,
      "minimalActions": [0, 1, 2, 3, 4, 11, 12],
    },
    "Atlantis": {
      "rom": "atlantis",
      "split": "pretrain",
      "validActions": 4,
      "random": 12850,
      "human": 29028.1,
      "beamWidth": 3,
      "jowa150m": 2690387.5,
      "minimalActions": [0, 1, 11, 12],
    },
    "BeamRider": {
      "rom": "beam_rider",
      "split": "pretrain",
      "validActions": 9,
      "random": 363.9,
      "human": 16926.5,
      "beamWidth": 2,
      "jowa150m": 3498,
      "minimalActions": [0, 1, 2, 3, 4, 6, 7, 11, 12],
    },
    "Berzerk": {
      "rom": "berzerk",
      "split": "pretrain",
      "validActions": 18,
      "random": 123.7,
      "human": 2630.4,
      "beamWidth": 4,
      "jowa150m": 739,
      "minimalActions": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
    },
    "Carnival": {
      "rom": "carnival",
      "split": "pretrain",
      "validActions": 6,
      "random": 0,
      "human": 3800,
      "beamWidth": 2,
      "jowa150m": 5316,
      "minimalActions": [0, 1, 3, 4, 11, 12],
    },
    "Centipede": {
      "rom": "centipede",
      "split": "pretrain",
      "validActions": 18,
      "random": 2090.9,
      "human": 12017,
      "beamWidth": 4,
      "jowa150m": 4677,
      "minimalActions": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
    },
    "ChopperCommand": {
      "rom": "chopper_command",
      "split": "pretrain",
      "validActions": 18,
      "random": 811,
      "human": 7387.8,
      "beamWidth": 4,
      "jowa150m": 3812.5,
      "minimalActions": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
    },
    "DemonAttack": {
      "rom": "demon_attack",
      "split": "pretrain",
      "validActions": 6,
      "random": 152.1,
      "human": 1971,
      "beamWidth": 2,
      "jowa150m": 3547.8,
      "minimalActions": [0, 1, 3, 4, 11, 12],
    },
    "NameThisGame": {
      "rom": "name_this_game",
      "split": "pretrain",
      "validActions": 6,
      "random": 2292.3,
      "human": 8049,
      "beamWidth": 2,
      "jowa150m": 11421,
      "minimalActions": [0, 1, 3, 4, 11, 12],
    },
    "Phoenix": {
      "rom": "phoenix",
      "split": "pretrain",
      "validActions": 8,
      "random": 761.4,
      "human": 7242.6,
      "beamWidth": 2,
      "jowa150m": 5348,
      "minimalActions": [0, 1, 3, 4, 5, 11, 12, 13],
    },
    "Seaquest": {
      "rom": "seaquest",
      "split": "pretrain",
      "validActions": 18,
      "random": 68.4,
      "human": 42054.7,
      "beamWidth": 3,
      "jowa150m": 2725,
      "minimalActions": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
    },
    "SpaceInvaders": {
      "rom": "space_invaders",
      "split": "pretrain",
      "validActions": 6,
      "random": 148,
      "human": 1668.7,
      "beamWidth": 2,
      "jowa150m": 744.7,
      "minimalActions": [0, 1, 3, 4, 11, 12],
    },
    "StarGunner": {
      "rom": "star_gunner",
      "split": "pretrain",
      "validActions": 18,
      "random": 664,
      "human": 10250,
      "beamWidth": 3,
      "jowa150m": 18150,
      "minimalActions": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
    },
    "TimePilot": {
      "rom": "time_pilot",
      "split": "pretrain",
      "validActions": 10,
      "random": 3568,
      "human": 5229.2,
      "beamWidth": 3,
      "jowa150m": 3669,
      "minimalActions": [0, 1, 2, 3, 4, 5, 10, 11, 12, 13],
    },
    "Zaxxon": {
      "rom": "zaxxon",
      "split": "pretrain",
      "validActions": 18,
      "random": 32.5,
      "human": 9173.3,
      "beamWidth": 3,
      "jowa150m": 2163,
      "minimalActions": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
    },
    "Pong": {
      "rom": "pong",
      "split": "finetune",
      "validActions": 6,
      "random": -20.7,
      "human": 14.6,
      "dqn": 19.5,
      "jowa150m": 17.7,
      "minimalActions": [0, 1, 3, 4, 11, 12],
    },
    "Robotank": {
      "rom": "robotank",
      "split": "finetune",
      "validActions": 18,
      "random": 2.2,
      "human": 11.9,
      "dqn": 63.9,
      "jowa150m": 25,
      "minimalActions": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
    },
    "YarsRevenge": {
      "rom": "yars_revenge",
      "split": "finetune",
      "validActions": 18,
      "random": 3092.9,
      "human": 54576.9,
      "dqn": 18089.9,
      "jowa150m": 17506.2,
      "minimalActions": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
    },
    "Gravitar": {
      "rom": "gravitar",
      "split": "finetune",
      "validActions": 18,
      "random": 173,
      "human": 3351.4,
      "dqn": 473,
      "jowa150m": 273.3,
      "minimalActions": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
    },
    "MsPacman": {
      "rom": "ms_pacman",
      "split": "finetune",
      "validActions": 9,
      "random": 307.3,
      "human": 6951.6,
      "dqn": 3085.6,
      "jowa150m": 2016.7,
      "minimalActions": [0, 2, 3, 4, 5, 6, 7, 8, 9],
    },
  },
});
