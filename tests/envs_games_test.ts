/**
 * Game table: names map to ROM ids, and the static minimal action sets equal what the
 * live emulator reports (and scores.json, where the reference checkout is present).
 */
import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import {
  camelToRom,
  gameName,
  GAMES,
  minimalToFull,
  romId,
  validActionMask,
} from "../atari/games.ts";
import { AtariVectorEnv } from "../envs/vector_env.ts";

Deno.test("envs games: name <-> ROM id mapping", () => {
  assertEquals(romId("MsPacman"), "ms_pacman");
  assertEquals(romId("SpaceInvaders"), "space_invaders");
  assertEquals(romId("space_invaders"), "space_invaders");
  assertEquals(romId("Breakout"), "breakout"); // not in the table: CamelCase rule
  assertEquals(camelToRom("NameThisGame"), "name_this_game");
  assertEquals(gameName("yars_revenge"), "YarsRevenge");
  assertEquals(gameName("breakout"), "Breakout");
  for (const g of Object.values(GAMES)) assertEquals(camelToRom(g.name), g.rom);
});

Deno.test("envs games: DQN-Replay index mapping and masks", () => {
  const ms = GAMES.MsPacman.minimalActions;
  assertEquals(Array.from(minimalToFull(ms, [0, 1, 8])), [0, 2, 9]);
  throws(() => minimalToFull(ms, [9]), /outside the minimal set of 9/);
  const mask = validActionMask(GAMES.Pong.minimalActions);
  assertEquals(Array.from(mask), [1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
});

Deno.test("envs games: static minimal action sets equal the live ALE ones", async () => {
  const games = Object.values(GAMES);
  await using env = await AtariVectorEnv.create({ game: games.map((g) => g.name) });
  games.forEach((g, i) => {
    assertEquals(env.envs[i].rom, g.rom);
    assertEquals(env.envs[i].minimalActions, [...g.minimalActions], g.name);
    assertEquals(env.games[i], g.name);
    assertEquals(env.envs[i].md5.length, 32);
  });
});

// The reference facts live outside the repository; use them where this machine has them.
const SCORES = [
  new URL("../shared/reference/scores.json", import.meta.url).pathname,
  "/work/shared/reference/scores.json",
].find((p) => existsSync(p)) ?? "";
Deno.test({
  name: "envs games: table equals the reference scores.json",
  ignore: SCORES === "",
  fn: () => {
    const ref = JSON.parse(readFileSync(SCORES, "utf8")).games;
    assertEquals(Object.keys(GAMES).sort(), Object.keys(ref).sort());
    for (const [k, g] of Object.entries(GAMES)) {
      assertEquals(g.rom, ref[k].rom);
      assertEquals([...g.minimalActions], ref[k].minimalActions);
    }
  },
});
