/**
 * The game catalog (atari/): the generated reference data equals shared/reference/scores.json,
 * every derived view (GAMES, MINIMAL_ACTIONS, the game lists) agrees with it and with the
 * paper's lists typed in independently, and names, ROM ids and task ids resolve.
 * The static minimal action sets are checked against the live emulator in envs_games_test.ts.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  ABLATION_GAMES,
  ALL_GAMES,
  ATARI_GAMES,
  camelToRom,
  canonicalGameName,
  evalTaskId,
  FINETUNE_GAMES,
  gameName,
  gameOfTaskId,
  gameReference,
  GAMES,
  gamesInSplit,
  hasDqnReference,
  MINIMAL_ACTIONS,
  minimalActionsOf,
  minimalToFull,
  NUM_TASKS,
  PRETRAIN_GAMES,
  REFERENCE_SCORES,
  romId,
  TASK_PROXIES,
  taskIdOf,
  validActionMask,
} from "../atari/mod.ts";

// The reference facts live outside the repository: beside the clone (../shared, as in CI) or
// in a repo-local shared/. Where neither exists the equality tests are skipped, loudly.
const SCORES_JSON = [
  new URL("../../shared/reference/scores.json", import.meta.url),
  new URL("../shared/reference/scores.json", import.meta.url),
].map((u) => fileURLToPath(u)).find((p) => existsSync(p));
if (!SCORES_JSON) {
  console.warn(
    "SKIP atari_catalog scores.json equality: shared/reference/scores.json is absent " +
      "(neither beside the clone nor inside it), so atari/reference_scores.ts cannot be compared.",
  );
}
const json = () => JSON.parse(readFileSync(SCORES_JSON!, "utf8"));

Deno.test({
  name: "atari catalog: reference_scores.ts equals shared/reference/scores.json",
  ignore: !SCORES_JSON,
  fn() {
    const ref = json();
    // Round-trip through JSON so frozenness does not matter, then compare everything,
    // including key order of the games.
    const ours = JSON.parse(JSON.stringify(REFERENCE_SCORES));
    assert.deepStrictEqual(ours, ref);
    assert.deepStrictEqual(Object.keys(ours.games), Object.keys(ref.games));
  },
});

Deno.test({
  name: "atari catalog: GAMES and MINIMAL_ACTIONS equal scores.json's ROM ids and action sets",
  ignore: !SCORES_JSON,
  fn() {
    const ref = json().games;
    assert.deepStrictEqual(Object.keys(GAMES), Object.keys(ref));
    assert.deepStrictEqual(Object.keys(MINIMAL_ACTIONS), Object.keys(ref));
    for (const [name, g] of Object.entries(GAMES)) {
      assert.equal(g.name, name);
      assert.equal(g.rom, ref[name].rom, name);
      assert.deepStrictEqual([...g.minimalActions], ref[name].minimalActions, name);
      assert.deepStrictEqual([...MINIMAL_ACTIONS[name]], ref[name].minimalActions, name);
      assert.deepStrictEqual(minimalActionsOf(name), ref[name].minimalActions, name);
      assert.equal(ref[name].minimalActions.length, ref[name].validActions, name);
    }
  },
});

// Lists from jowa.md ("Games"), typed in independently of the JSON file.
const PRETRAIN_FROM_PAPER = [
  "Phoenix",
  "Centipede",
  "SpaceInvaders",
  "Carnival",
  "NameThisGame",
  "Assault",
  "Atlantis",
  "DemonAttack",
  "BeamRider",
  "ChopperCommand",
  "Seaquest",
  "TimePilot",
  "StarGunner",
  "Berzerk",
  "Zaxxon",
];
const FINETUNE_FROM_PAPER = ["Pong", "Robotank", "YarsRevenge", "Gravitar", "MsPacman"];

Deno.test("atari catalog: game splits match the paper's 15 pretraining and 5 held-out games", () => {
  assert.deepStrictEqual([...PRETRAIN_GAMES].sort(), [...PRETRAIN_FROM_PAPER].sort());
  assert.deepStrictEqual([...FINETUNE_GAMES].sort(), [...FINETUNE_FROM_PAPER].sort());
  assert.equal(ALL_GAMES.length, 20);
  assert.deepStrictEqual(Object.keys(GAMES), [...ALL_GAMES]);
  assert.deepStrictEqual(gamesInSplit("pretrain"), [...PRETRAIN_GAMES]);
  for (const g of ABLATION_GAMES) assert.equal(gameReference(g).split, "pretrain");
});

Deno.test("atari catalog: per-game fields are consistent with the paper's protocol", () => {
  for (const name of ALL_GAMES) {
    const g = gameReference(name);
    assert.equal(g.minimalActions.length, g.validActions, name);
    for (const a of g.minimalActions) assert.ok(Number.isInteger(a) && a >= 0 && a < 18, name);
    assert.ok(g.human > g.random, name);
    if (g.split === "pretrain") {
      // jowa.md: K = 2 when the game has < 10 valid actions, else 3 or 4. The paper counts
      // 18 actions for Atlantis (its ALE minimal set has 4, see scores.json _about).
      assert.ok(g.beamWidth !== undefined, name);
      const paperActions = name === "Atlantis" ? 18 : g.validActions;
      if (paperActions < 10) assert.equal(g.beamWidth, 2, name);
      else assert.ok(g.beamWidth === 3 || g.beamWidth === 4, name);
      assert.equal(hasDqnReference(name), false);
    } else {
      assert.equal(hasDqnReference(name), true, name);
    }
  }
});

Deno.test("atari catalog: games resolve by name or ROM id; unknown games throw naming them", () => {
  assert.equal(canonicalGameName("space_invaders"), "SpaceInvaders");
  assert.equal(canonicalGameName("SpaceInvaders"), "SpaceInvaders");
  assert.equal(gameReference("ms_pacman").human, 6951.6);
  assert.throws(() => gameReference("Breakout2"), /Breakout2/);
  assert.throws(() => gameReference("toString"), /toString/);
  assert.throws(() => minimalActionsOf("Breakout"), /no minimal action set known for "Breakout"/);
  assert.throws(() => minimalActionsOf("toString"), /"toString"/);
  assert.equal(romId("MsPacman"), "ms_pacman");
  assert.equal(romId("SpaceInvaders"), "space_invaders");
  assert.equal(romId("space_invaders"), "space_invaders");
  assert.equal(romId("Breakout"), "breakout"); // not in the table: CamelCase rule
  assert.equal(romId("toString"), "to_string");
  assert.equal(camelToRom("NameThisGame"), "name_this_game");
  assert.equal(gameName("yars_revenge"), "YarsRevenge");
  assert.equal(gameName("breakout"), "Breakout");
  for (const g of Object.values(GAMES)) assert.equal(camelToRom(g.name), g.rom);
});

Deno.test("atari catalog: DQN-Replay index mapping and masks", () => {
  const ms = GAMES.MsPacman.minimalActions;
  assert.deepStrictEqual(Array.from(minimalToFull(ms, [0, 1, 8])), [0, 2, 9]);
  assert.throws(() => minimalToFull(ms, [9]), /outside the minimal set of 9/);
  const mask = validActionMask(GAMES.Pong.minimalActions);
  assert.deepStrictEqual(
    Array.from(mask),
    [1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
  );
  // minimalActionsOf hands out a copy: callers cannot edit the catalog.
  const a = minimalActionsOf("Pong");
  a[0] = 17;
  assert.equal(MINIMAL_ACTIONS.Pong[0], 0);
});

Deno.test("atari catalog: task id table has 60 games including the 20 of scores.json", () => {
  assert.equal(ATARI_GAMES.length, NUM_TASKS);
  assert.equal(new Set(ATARI_GAMES).size, 60);
  assert.deepStrictEqual([...ATARI_GAMES], [...ATARI_GAMES].sort());
  for (const g of ALL_GAMES) assert.ok(ATARI_GAMES.includes(g), g);
  assert.equal(taskIdOf("Pong"), 39);
  assert.equal(taskIdOf("ms_pacman"), taskIdOf("MsPacman"));
  assert.equal(gameOfTaskId(taskIdOf("SpaceInvaders")), "SpaceInvaders");
  assert.throws(() => taskIdOf("Tetris"), /unknown Atari game "Tetris"/);
  assert.throws(() => gameOfTaskId(60), /out of range/);
});

Deno.test("atari catalog: held-out games reuse a pretraining game's task id only when asked", () => {
  for (const [held, proxy] of Object.entries(TASK_PROXIES)) {
    assert.ok(FINETUNE_GAMES.includes(held), held);
    assert.ok(PRETRAIN_GAMES.includes(proxy), proxy);
    assert.equal(evalTaskId(held, true), taskIdOf(proxy));
    assert.equal(evalTaskId(held, false), taskIdOf(held));
  }
  assert.equal(evalTaskId("Pong", true), taskIdOf("Pong")); // no proxy: its own id
});

Deno.test("atari catalog: reference data is frozen", () => {
  assert.throws(() => {
    (REFERENCE_SCORES.games.Pong as { human: number }).human = 0;
  }, TypeError);
  assert.equal(REFERENCE_SCORES.games.Pong.human, 14.6);
  assert.throws(() => {
    (GAMES.Pong.minimalActions as number[]).push(5);
  }, TypeError);
});
