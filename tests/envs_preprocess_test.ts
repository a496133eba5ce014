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
  noops: number;
  gameOver?: boolean;
}

interface Opts {
  frameSkip?: number;
  noopMax?: number;
  maxPool?: boolean;
  terminalOnLifeLoss?: boolean;
}

async function play(game: string, seed: number, steps: number, o: Opts = {}): Promise<Played> {
  await using env = await AtariVectorEnv.create({ game, maxEpisodeFrames: 0, ...o });
  const rand = prng(seed);
  const out: Played = { obs: [], actions: [], rewards: [], terminals: [], lives: [], noops: 0 };
  const r = await env.reset([seed]);
  out.obs.push(r.obs);
  out.noops = r.noops[0];
  for (let t = 0; t < steps; t++) {
    const a = Math.floor(rand() * 18);
    const s = await env.step([a]);
    out.actions.push(a);
    out.obs.push(s.obs);
    out.rewards.push(s.rewards[0]);
    out.terminals.push(s.terminals[0]);
    out.lives.push(s.lives[0]);
    out.gameOver = s.episodes.length > 0;
    if (out.gameOver) break;
  }
  return out;
}

async function compare(rom: string, game: string, seed: number, steps: number, o: Opts = {}) {
  const p = await play(game, seed, steps, o);
  const ref = await runReference({
    rom,
    seed,
    actions: p.actions,
    frameSkip: o.frameSkip ?? 4,
    maxPool: o.maxPool ?? true,
    noops: p.noops,
  });
  assertEquals(p.rewards, ref.rewards, "raw rewards");
  if (!o.terminalOnLifeLoss) assertEquals(p.terminals, ref.terminals, "terminals");
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
  return { p, ties, ref };
}

Deno.test("envs preprocessing: Pong matches the raw-frame reference", async () => {
  const { p, ties } = await compare("pong", "Pong", 7, 400);
  assert(p.rewards.some((r) => r !== 0), "some reward happened");
  assert(ties > 0, "the check saw .5-tie pixels too");
});

Deno.test("envs preprocessing: Berzerk (18 actions) to game over matches the reference", async () => {
  const { p } = await compare("berzerk", "Berzerk", 3, 3000);
  assert(p.gameOver, "episode ended");
  assertEquals(p.terminals.at(-1), 1, "reached game over");
  assert(p.rewards.some((r) => r > 0), "scored");
  assert(new Set(p.lives).size > 1, "lost lives");
});

Deno.test("envs preprocessing: Carnival's 214-row screen matches the reference", async () => {
  const { p } = await compare("carnival", "Carnival", 4, 150);
  assert(p.rewards.some((r) => r > 0), "scored");
});

Deno.test("envs preprocessing: frame skip 3 matches the reference", async () => {
  await compare("pong", "Pong", 11, 60, { frameSkip: 3 });
});

Deno.test("envs preprocessing: no-op starts and maxPool=false match the reference", async () => {
  const a = await compare("pong", "Pong", 21, 40, { noopMax: 30, maxPool: false });
  const b = await compare("pong", "Pong", 22, 40, { noopMax: 30 });
  const noops = [a.p.noops, b.p.noops];
  assert(noops.every((n) => n >= 1 && n <= 30), `noops ${noops}`);
  assert(noops[0] !== noops[1], "the no-op count depends on the seed");
});

Deno.test("envs preprocessing: terminal on life loss flags exactly the lost lives", async () => {
  const { p, ref } = await compare("berzerk", "Berzerk", 3, 3000, { terminalOnLifeLoss: true });
  const lives = ref.lives as number[];
  const refTerm = ref.terminals as number[];
  const before = (t: number) => t === 0 ? ref.lives0 as number : lives[t - 1];
  const expected = lives.map((l, t) => refTerm[t] || l < before(t) ? 1 : 0);
  assertEquals(p.terminals, expected);
  assert(p.terminals.filter((x) => x).length > 1, "several lives lost before game over");
  assert(p.gameOver, "the game itself continued to game over");
});

const CV2 = Deno.env.get("JOWA_CV2_PYTHON");
Deno.test({
  name: "envs preprocessing: bit-identical to OpenCV INTER_AREA (needs JOWA_CV2_PYTHON)",
  ignore: !CV2,
  fn: async () => {
    const p = await play("MsPacman", 5, 300);
    assertEquals(p.noops, 0);
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
