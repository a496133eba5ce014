/**
 * Typed access to the reference Atari scores and per-game JOWA settings (random, human and DQN
 * scores, valid-action counts, evaluation beam widths, the paper's JOWA-150M returns, ROM ids,
 * minimal action sets and the pretrain/fine-tune split).
 *
 * The data lives in `reference_scores.ts`, generated from `shared/reference/scores.json`.
 *
 * @module
 */

import { type GameReference, type GameSplit, REFERENCE_SCORES } from "./reference_scores.ts";

export type { GameReference, GameSplit, ReferenceScores } from "./reference_scores.ts";
export { REFERENCE_SCORES } from "./reference_scores.ts";

/** All game names of the reference file, in the file's order (15 pretraining, then 5 held out). */
export const ALL_GAMES: readonly string[] = Object.freeze(Object.keys(REFERENCE_SCORES.games));

/** The 15 pretraining games, in the reference file's order. */
export const PRETRAIN_GAMES: readonly string[] = Object.freeze(gamesInSplit("pretrain"));

/** The 5 held-out fine-tuning games (Pong, Robotank, YarsRevenge, Gravitar, MsPacman). */
export const FINETUNE_GAMES: readonly string[] = Object.freeze(gamesInSplit("finetune"));

/** The 6 games used by the paper's ablations. */
export const ABLATION_GAMES: readonly string[] = Object.freeze([
  "Assault",
  "Carnival",
  "Centipede",
  "NameThisGame",
  "Phoenix",
  "SpaceInvaders",
]);

/** Names of the games of one split, in the reference file's order. */
export function gamesInSplit(split: GameSplit): string[] {
  return Object.entries(REFERENCE_SCORES.games)
    .filter(([, g]) => g.split === split)
    .map(([name]) => name);
}

/**
 * Resolves a game given by its name ("SpaceInvaders") or its ale-py ROM id ("space_invaders")
 * to its canonical name. Throws an Error naming the game when it is not in the reference data.
 */
export function canonicalGameName(game: string): string {
  if (Object.hasOwn(REFERENCE_SCORES.games, game)) return game;
  for (const [name, ref] of Object.entries(REFERENCE_SCORES.games)) {
    if (ref.rom === game) return name;
  }
  throw new Error(
    `unknown game "${game}": not in the reference scores (known: ${ALL_GAMES.join(", ")})`,
  );
}

/** Reference data of a game given by name or ROM id; throws an Error naming unknown games. */
export function gameReference(game: string): GameReference {
  return REFERENCE_SCORES.games[canonicalGameName(game)];
}

/** Whether the game (name or ROM id) has a DQN reference score (the fine-tuning games). */
export function hasDqnReference(game: string): boolean {
  return gameReference(game).dqn !== undefined;
}
