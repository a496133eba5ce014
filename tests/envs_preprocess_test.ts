/**
 * The bridge's preprocessing against the independent reference in envs_reference.py:
 * same ROM, seed and actions; observations, raw rewards, terminals and lives must agree.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { AtariVectorEnv } from "../envs/vector_env.ts";
import { prng, runReference } from "./envs_test_utils.ts";

interface Played {
  obs: Uint8Array[];
  actions: number[];
  rewards: number[];
  terminals: number[];
  lives: number[];
}

async function play(game: string, seed: number, steps: number, frameSkip = 4): Promise<Played> {
  await using env = await AtariVectorEnv.create({ game, frameSkip, maxEpisodeFrames: 0 });
  const rand = prng(seed);
  const out: Played = { obs: [], actions: [], rewards: [], terminals: [], lives: [] };
  out.obs.push((await env.reset([seed])).obs);
  for (let t = 0; t < steps; t++) {
    const a = Math.floor(rand() * 18);
    const s = await env.step([a]);
    out.actions.push(a);
    out.obs.push(s.obs);
    out.rewards.push(s.rewards[0]);
    out.terminals.push(s.terminals[0]);
    out.lives.push(s.lives[0]);
    if (s.terminals[0]) break;
  }
  return out;
}

async function compare(rom: string, game: string, seed: number, steps: number, frameSkip = 4) {
  const p = await play(game, seed, steps, frameSkip);
  const ref = await runReference({ rom, seed, actions: p.actions, frameSkip });
  assertEquals(p.rewards, ref.rewards, "raw rewards");
  assertEquals(p.terminals, ref.terminals, "terminals");
  assertEquals(p.lives, ref.lives, "lives");
  const lo = ref.lo as Uint8Array, hi = ref.hi as Uint8Array;
  assertEquals(lo.length, p.obs.length * 84 * 84);
  let ties = 0, bad = 0;
  p.obs.forEach((o, t) => {
    for (let i = 0; i < o.length; i++) {
      const j = t * 7056 + i;
      if (lo[j] !== hi[j]) ties++;
      if (o[i] < lo[j] || o[i] > hi[j]) bad++;
    }
  });
  assertEquals(bad, 0, `${bad} pixels differ from the exact area mean`);
  return { p, ties };
}

Deno.test("envs preprocessing: Pong matches the raw-frame reference", async () => {
  const { p, ties } = await compare("pong", "Pong", 7, 400);
  assert(p.rewards.some((r) => r !== 0), "some reward happened");
  assert(ties > 0, "the check saw .5-tie pixels too");
});

Deno.test("envs preprocessing: Berzerk (18 actions) to game over matches the reference", async () => {
  const { p } = await compare("berzerk", "Berzerk", 3, 3000);
  assertEquals(p.terminals.at(-1), 1, "reached game over");
  assert(p.rewards.some((r) => r > 0), "scored");
  assert(new Set(p.lives).size > 1, "lost lives");
});

Deno.test("envs preprocessing: frame skip 3 matches the reference", async () => {
  await compare("pong", "Pong", 11, 60, 3);
});

const CV2 = Deno.env.get("JOWA_CV2_PYTHON");
Deno.test({
  name: "envs preprocessing: bit-identical to OpenCV INTER_AREA (needs JOWA_CV2_PYTHON)",
  ignore: !CV2,
  fn: async () => {
    const p = await play("MsPacman", 5, 300);
    const ref = await runReference(
      { rom: "ms_pacman", seed: 5, actions: p.actions, cv2: true },
      CV2,
    );
    const cv = ref.cv2 as Uint8Array;
    let diff = 0;
    p.obs.forEach((o, t) => o.forEach((v, i) => diff += v !== cv[t * 7056 + i] ? 1 : 0));
    assertEquals(diff, 0);
  },
});
