/**
 * Determinism: the same seeds and actions give bit-identical observations and rewards
 * across runs and process splits, and match golden hashes recorded with ale-py 0.12.1.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { AtariVectorEnv, type FinishedEpisode } from "../envs/vector_env.ts";
import { prng, sha256 } from "./envs_test_utils.ts";

const GAMES = ["Pong", "Berzerk", "pong", "berzerk"]; // display names and ROM ids both work
const STEPS = 300;

async function run(numProcesses: number) {
  await using env = await AtariVectorEnv.create({
    game: GAMES,
    numProcesses,
    autoReset: true,
    noopMax: 30,
    maxEpisodeFrames: 800, // short cap so truncation and auto-reset both happen
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
    assert(e.frames >= 800 && e.frames < 804, `truncated at ${e.frames} frames`);
  }
  assertEquals(a.hash, GOLDEN);
});

const GOLDEN = "6fdd67b037c921e5b5c35b1dfe8069fa267f05c13917fea9ed6373e6d1c68dfa";

async function trace(seed: number, stickyActionProb: number): Promise<string> {
  await using env = await AtariVectorEnv.create({ game: "Pong", stickyActionProb });
  const rand = prng(3);
  const parts = [(await env.reset([seed])).obs];
  for (let t = 0; t < 150; t++) parts.push((await env.step([Math.floor(rand() * 18)])).obs);
  const all = new Uint8Array(parts.length * 7056);
  parts.forEach((p, i) => all.set(p, i * 7056));
  return await sha256(all);
}

Deno.test("envs determinism: sticky actions follow the seed", async () => {
  const a = await trace(1, 0.25);
  assertEquals(await trace(1, 0.25), a, "same seed, same trajectory");
  assert(a !== await trace(2, 0.25), "another seed changes sticky draws");
  assert(a !== await trace(1, 0), "sticky actions change the trajectory");
});

Deno.test("envs determinism: partial reset keeps the other environments running", async () => {
  await using env = await AtariVectorEnv.create({ game: "Pong", numEnvs: 2 });
  await env.reset([1, 2]);
  let s = await env.step([1, 1]);
  for (let t = 0; t < 30; t++) s = await env.step([3, 4]);
  const r = await env.reset([null, 7]);
  assertEquals(r.obs.subarray(0, 7056), s.obs.subarray(0, 7056), "env 0 unchanged");
  assertEquals(Array.from(r.noops), [-1, 0]);
  await using fresh = await AtariVectorEnv.create({ game: "Pong" });
  assertEquals(r.obs.subarray(7056), (await fresh.reset([7])).obs, "env 1 as if new");
  const a = await env.step([0, 0]);
  const b = await fresh.step([0]);
  assertEquals(a.obs.subarray(7056), b.obs);
});
