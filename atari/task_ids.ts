/**
 * Stable game -> task id table for the task embedding (60 rows, one per Atari game).
 *
 * The 60 games are those of DQN-Replay (Agarwal et al. 2020, the Dopamine 60-game suite), in
 * alphabetical order of their names spelled as in `scores.json` (CamelCase, e.g. "MsPacman").
 * Ids are the index in {@link ATARI_GAMES}; this order must never change, because trained
 * checkpoints index their task-embedding rows by it. It includes all 20 JOWA games.
 * @module
 */

/** The 60 Atari games, task id = index. Frozen: append-only changes would break checkpoints. */
export const ATARI_GAMES: readonly string[] = Object.freeze([
  "AirRaid", // 0
  "Alien",
  "Amidar",
  "Assault",
  "Asterix",
  "Asteroids", // 5
  "Atlantis",
  "BankHeist",
  "BattleZone",
  "BeamRider",
  "Berzerk", // 10
  "Bowling",
  "Boxing",
  "Breakout",
  "Carnival",
  "Centipede", // 15
  "ChopperCommand",
  "CrazyClimber",
  "DemonAttack",
  "DoubleDunk",
  "ElevatorAction", // 20
  "Enduro",
  "FishingDerby",
  "Freeway",
  "Frostbite",
  "Gopher", // 25
  "Gravitar",
  "Hero",
  "IceHockey",
  "Jamesbond",
  "JourneyEscape", // 30
  "Kangaroo",
  "Krull",
  "KungFuMaster",
  "MontezumaRevenge",
  "MsPacman", // 35
  "NameThisGame",
  "Phoenix",
  "Pitfall",
  "Pong",
  "Pooyan", // 40
  "PrivateEye",
  "Qbert",
  "Riverraid",
  "RoadRunner",
  "Robotank", // 45
  "Seaquest",
  "Skiing",
  "Solaris",
  "SpaceInvaders",
  "StarGunner", // 50
  "Tennis",
  "TimePilot",
  "Tutankham",
  "UpNDown",
  "Venture", // 55
  "VideoPinball",
  "WizardOfWor",
  "YarsRevenge",
  "Zaxxon", // 59
]);

/** Number of rows of the task-embedding table. */
export const NUM_TASKS = 60;

const INDEX = new Map(ATARI_GAMES.map((g, i) => [g.toLowerCase(), i]));

/**
 * Task id of a game (case-insensitive; also accepts ALE rom ids like "ms_pacman").
 * @throws Error when the game is not one of the 60.
 */
export function taskIdOf(game: string): number {
  const key = game.replace(/_/g, "").toLowerCase();
  const id = INDEX.get(key);
  if (id === undefined) throw new Error(`unknown Atari game "${game}" (not in the 60-game table)`);
  return id;
}

/** Game name (scores.json spelling) for a task id. */
export function gameOfTaskId(id: number): string {
  const g = ATARI_GAMES[id];
  if (g === undefined) throw new RangeError(`task id ${id} out of range 0..${NUM_TASKS - 1}`);
  return g;
}
