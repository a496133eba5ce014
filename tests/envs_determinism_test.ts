/**
 * Determinism: the same seeds and actions give bit-identical observations and rewards
 * across runs and process splits, and match golden hashes recorded with ale-py 0.12.1.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { AtariVectorEnv, type FinishedEpisode } from "../envs/vector_env.ts";
import { prng, sha256 } from "./envs_test_utils.ts";

const GAMES = ["Pong", "Berzerk", "pong", "berzerk"]; // display names and ROM ids both work
const STEPS = 500;

async function run(numProcesses: number) {
  await using env = await AtariVectorEnv.create({
    game: GAMES,
    numProcesses,
    autoReset: true,
    noopMax: 30,
    maxEpisodeFrames: 1200, // short cap so truncation and auto-reset both happen
  });
  const rand = prng(42);
  const chunks: Uint8Array[] = [];
  const episodes: FinishedEpisode[] = [];
  const r = await env.reset([10, 11, 12, 13]);
  chunks.push(r.obs, new Uint8Array(r.noops.buffer));
  for (let t = 0; t < STEPS; t++) {
    const actions = GAMES.map(() => Math.floor(rand() * 18));
    const s = await env.step(actions);
    chunks.push(s.obs, new Uint8Array(s.rewards.buffer), s.terminals, s.truncations);
    episodes.push(...s.episodes);
  }
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) all.set(c, off), off += c.length;
  return { hash: await sha256(all), episodes };
}

Deno.test("envs determinism: identical across runs and 1 vs 2 processes, golden hash", async () => {
  const a = await run(1);
  const b = await run(2);
  const c = await run(1);
  assertEquals(b.hash, a.hash, "1 vs 2 processes");
  assertEquals(c.hash, a.hash, "run to run");
  assertEquals(b.episodes, a.episodes);
  assert(a.episodes.some((e) => e.truncated), "a time-limit truncation happened");
  assert(a.episodes.some((e) => !e.truncated), "a game over happened");
  for (const e of a.episodes.filter((e) => e.truncated)) {
    assert(e.frames >= 1200 && e.frames < 1204, `truncated at ${e.frames} frames`);
  }
  console.log(`golden ${a.hash}, ${a.episodes.length} episodes`);
  assertEquals(a.hash, GOLDEN);
});

const GOLDEN = "fa7e39863cc52aa0d60fb9bfa9611cab219d7429d3a46f3fca1cad29e08d1df7";
