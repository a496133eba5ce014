/**
 * The catalog's static minimal action sets and ROM ids equal what the live emulator reports.
 * (The catalog itself, against scores.json, is tested in atari_catalog_test.ts.)
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { GAMES } from "../atari/mod.ts";
import { AtariVectorEnv } from "../envs/vector_env.ts";

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
