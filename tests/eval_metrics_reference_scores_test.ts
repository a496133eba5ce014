import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  ABLATION_GAMES,
  ALL_GAMES,
  canonicalGameName,
  FINETUNE_GAMES,
  gameReference,
  gamesInSplit,
  hasDqnReference,
  PRETRAIN_GAMES,
  REFERENCE_SCORES,
} from "../atari/scores.ts";

const jsonPath = fileURLToPath(new URL("../../shared/reference/scores.json", import.meta.url));
const jsonPresent = existsSync(jsonPath);
if (!jsonPresent) {
  console.warn(
    `SKIP eval_metrics_reference_scores: ${jsonPath} is absent, so eval/reference_scores.ts ` +
      "cannot be compared with it (the shared reference folder is not checked out here).",
  );
}

Deno.test({
  name: "reference_scores.ts equals shared/reference/scores.json",
  ignore: !jsonPresent,
  fn() {
    const json = JSON.parse(readFileSync(jsonPath, "utf8"));
    // Round-trip through JSON so frozenness does not matter, then compare everything,
    // including key order of the games.
    const ours = JSON.parse(JSON.stringify(REFERENCE_SCORES));
    assert.deepStrictEqual(ours, json);
    assert.deepStrictEqual(Object.keys(ours.games), Object.keys(json.games));
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

Deno.test("game splits match the paper's 15 pretraining and 5 held-out games", () => {
  assert.deepStrictEqual([...PRETRAIN_GAMES].sort(), [...PRETRAIN_FROM_PAPER].sort());
  assert.deepStrictEqual([...FINETUNE_GAMES].sort(), [...FINETUNE_FROM_PAPER].sort());
  assert.equal(ALL_GAMES.length, 20);
  assert.deepStrictEqual(gamesInSplit("pretrain"), [...PRETRAIN_GAMES]);
  for (const g of ABLATION_GAMES) assert.equal(gameReference(g).split, "pretrain");
});

Deno.test("per-game fields are consistent with the paper's protocol", () => {
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

Deno.test("games resolve by name or ROM id; unknown games throw naming the game", () => {
  assert.equal(canonicalGameName("space_invaders"), "SpaceInvaders");
  assert.equal(canonicalGameName("SpaceInvaders"), "SpaceInvaders");
  assert.equal(gameReference("ms_pacman").human, 6951.6);
  assert.throws(() => gameReference("Breakout2"), /Breakout2/);
  assert.throws(() => gameReference("toString"), /toString/);
});

Deno.test("reference data is frozen", () => {
  assert.throws(() => {
    (REFERENCE_SCORES.games.Pong as { human: number }).human = 0;
  }, TypeError);
  assert.equal(REFERENCE_SCORES.games.Pong.human, 14.6);
});
