/**
 * Collection end to end: stores written through offline/writer.ts are valid, replay
 * bit-exactly in the emulator, stop cleanly on abort/Ctrl-C, and the CLI reports errors.
 */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { collect } from "../offline/collect.ts";
import { AtariVectorEnv } from "../envs/vector_env.ts";
import { GAMES } from "../atari/games.ts";
import { openDataset, openStore } from "../offline/store.ts";
import {
  COLLECT,
  collectCli as cli,
  interruptCollect,
  withTempDir,
} from "./helpers/collect_cli.ts";

const tempDir = (fn: (dir: string) => Promise<void>) => withTempDir("envs_collect_", fn);

Deno.test("envs collect: two games, valid stores, rows replay exactly in the emulator", async () => {
  await tempDir(async (dir) => {
    const summary = await collect({
      out: dir,
      games: ["Berzerk", "pong"],
      steps: 700,
      envsPerGame: 1,
      seed: 5,
      maxEpisodeFrames: 1600,
    });
    assertEquals(summary.interrupted, false);
    assertEquals(summary.games.map((g) => [g.game, g.transitions]), [["Berzerk", 700], [
      "Pong",
      700,
    ]]);
    const stores = openDataset(dir, { verify: true });
    assertEquals(stores.map((s) => s.game), ["Berzerk", "Pong"]);
    for (const store of stores) {
      assertEquals(store.numRows, 700);
      const valid = new Set(GAMES[store.game].minimalActions);
      assert(store.actions.every((a) => valid.has(a)), "uniform over valid actions only");
      // Replay: one environment, same seed, auto-reset; the stored actions must reproduce
      // every stored observation, reward and terminal (row t = obs where action t was taken).
      await using env = await AtariVectorEnv.create({
        game: store.game,
        autoReset: true,
        maxEpisodeFrames: 1600,
      });
      let obs = (await env.reset([5 + (store.game === "Pong" ? 1 : 0)])).obs;
      let gameOvers = 0;
      for (let e = 0; e < store.numEpisodes; e++) {
        const ep = store.readEpisode(e);
        for (let t = 0; t < ep.actions.length; t++) {
          assertEquals(obs, (ep.obs as Uint8Array).subarray(t * 7056, (t + 1) * 7056));
          const s = await env.step([ep.actions[t]]);
          assertEquals(s.rewards[0], ep.rewards[t]);
          assertEquals(s.terminals[0], ep.terminals[t]);
          obs = s.obs;
        }
        gameOvers += ep.terminals.at(-1)!;
        assertEquals(ep.terminals.subarray(0, -1).some((x) => x !== 0), false);
        assertEquals(ep.truncated, ep.terminals.at(-1) === 0);
      }
      store.close();
      if (store.game === "Berzerk") assert(gameOvers > 0, "a game over was recorded");
    }
  });
});

Deno.test("envs collect: abort leaves valid, shorter stores", async () => {
  await tempDir(async (dir) => {
    const ac = new AbortController();
    const summary = await collect({
      out: dir,
      games: ["Pong"],
      steps: 100_000,
      envsPerGame: 2,
      signal: ac.signal,
      onProgress: (done) => done >= 300 && ac.abort(),
    });
    assertEquals(summary.interrupted, true);
    const store = openStore(join(dir, "Pong"), { verify: true });
    assertEquals(store.numRows, 300);
    assertEquals(Array.from(store.truncated), [1, 1]);
    assertEquals(store.manifest.source.policy, "uniform");
    store.close();
  });
});

Deno.test("envs collect CLI: help and one-line errors without stack traces", async () => {
  const help = await cli(["--help"]);
  assertEquals(help.code, 0);
  match(help.out, /Usage: deno task collect/);
  const bad = await cli(["--steps", "abc"]);
  assertEquals(bad.code, 1);
  assertEquals(bad.err.trim(), "collect: --steps must be an integer >= 0");
  const flag = await cli(["--bogus"]);
  assertEquals(flag.code, 2);
  match(flag.err, /collect: Unknown option '--bogus'/);
  await tempDir(async (dir) => {
    const game = await cli(["--out", dir, "--games", "Pongg", "--steps", "10"]);
    assertEquals(game.code, 1);
    match(game.err, /collect: unknown game 'pongg'; valid names: .*pong/);
    assert(!/\n\s+at /.test(game.err), "no stack trace");
  });
});

Deno.test("envs collect CLI: Ctrl-C (SIGINT) finishes valid stores", async () => {
  await tempDir(async (dir) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", COLLECT, "--out", dir, "--games", "Pong", "--steps", "1000000"],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    await interruptCollect(child, dir, () => child.kill("SIGINT"));
  });
});

Deno.test("envs collect: a given policy is followed (epsilon 0) and recorded", async () => {
  await tempDir(async (dir) => {
    await collect({
      out: dir,
      games: ["Pong"],
      steps: 50,
      envsPerGame: 2,
      policy: ({ games }) => games.map((_, i) => (i === 0 ? 11 : 12)),
      epsilon: 0,
    });
    const store = openStore(join(dir, "Pong"));
    assertEquals(new Set(store.actions), new Set([11, 12]));
    assertEquals(store.manifest.source.policy, "epsilon-greedy");
    assertEquals(store.manifest.source.epsilon, 0);
    store.close();
  });
});
