/**
 * Minimal action sets (full action ids 0..17, ALE order) of the 20 JOWA games, copied from
 * the project's reference `scores.json` (read from ale-py 0.12.1). DQN-Replay action k of a game
 * means `MINIMAL_ACTIONS[game][k]`. Other games: pass the set explicitly.
 * @module
 */

/** Game -> minimal action set as full action ids. */
export const MINIMAL_ACTIONS: Readonly<Record<string, readonly number[]>> = Object.freeze({
  Assault: [0, 1, 2, 3, 4, 11, 12],
  Atlantis: [0, 1, 11, 12],
  BeamRider: [0, 1, 2, 3, 4, 6, 7, 11, 12],
  Berzerk: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  Carnival: [0, 1, 3, 4, 11, 12],
  Centipede: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  ChopperCommand: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  DemonAttack: [0, 1, 3, 4, 11, 12],
  Gravitar: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  MsPacman: [0, 2, 3, 4, 5, 6, 7, 8, 9],
  NameThisGame: [0, 1, 3, 4, 11, 12],
  Phoenix: [0, 1, 3, 4, 5, 11, 12, 13],
  Pong: [0, 1, 3, 4, 11, 12],
  Robotank: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  Seaquest: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  SpaceInvaders: [0, 1, 3, 4, 11, 12],
  StarGunner: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  TimePilot: [0, 1, 2, 3, 4, 5, 10, 11, 12, 13],
  YarsRevenge: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
  Zaxxon: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
});

/**
 * The minimal action set of a game (scores.json spelling).
 * @throws Error when the game is not one of the 20 known here.
 */
export function minimalActionsOf(game: string): number[] {
  const a = MINIMAL_ACTIONS[game];
  if (!a) {
    throw new Error(`no minimal action set known for "${game}" (give it explicitly)`);
  }
  return [...a];
}
