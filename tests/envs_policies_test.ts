/** Behaviour policies: valid actions only, uniform spread, epsilon-greedy mixing. */
import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { epsilonGreedy, type PolicyInput, uniformPolicy } from "../envs/policies.ts";
import { GAMES, validActionMask } from "../atari/games.ts";

const masks = new Uint8Array(36);
masks.set(validActionMask(GAMES.Pong.minimalActions), 0);
masks.set(validActionMask(GAMES.MsPacman.minimalActions), 18);
const input: PolicyInput = {
  obs: new Uint8Array(2 * 7056),
  validActionMasks: masks,
  games: [
    "Pong",
    "MsPacman",
  ],
};

function counts(policy: ReturnType<typeof uniformPolicy>, n: number) {
  const c = [new Array(18).fill(0), new Array(18).fill(0)];
  return (async () => {
    for (let i = 0; i < n; i++) {
      const a = Array.from(await policy(input));
      c[0][a[0]]++;
      c[1][a[1]]++;
    }
    return c;
  })();
}

Deno.test("envs policies: uniform covers exactly the valid actions, evenly", async () => {
  const c = await counts(uniformPolicy(1), 6000);
  for (const [e, game] of [[0, "Pong"], [1, "MsPacman"]] as const) {
    const valid = GAMES[game].minimalActions;
    c[e].forEach((k: number, a: number) => {
      if (!valid.includes(a)) assertEquals(k, 0, `${game} invalid action ${a}`);
      else assert(Math.abs(k - 6000 / valid.length) < 0.15 * (6000 / valid.length), `${a}:${k}`);
    });
  }
  assertEquals(await counts(uniformPolicy(1), 50), await counts(uniformPolicy(1), 50));
});

Deno.test("envs policies: epsilon-greedy mixes in random valid actions at rate epsilon", async () => {
  const fixed = () => [11, 2];
  assertEquals((await counts(epsilonGreedy(fixed, 0, 3), 200))[0][11], 200);
  const c = await counts(epsilonGreedy(fixed, 0.3, 3), 6000);
  // Pong: 11 is chosen greedily (70%) plus 1/6 of the random 30%.
  const p11 = c[0][11] / 6000;
  assert(Math.abs(p11 - (0.7 + 0.3 / 6)) < 0.03, `p(11) = ${p11}`);
  assert(c[1][1] === 0, "random actions stay valid (MsPacman has no FIRE)");
  throws(() => epsilonGreedy(fixed, 1.5, 0), /epsilon 1.5 not in \[0, 1\]/);
});
