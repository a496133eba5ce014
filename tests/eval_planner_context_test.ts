/** Planning windows and per-environment token histories (eval/context_history.ts). */
import assert from "node:assert/strict";
import { EnvHistory, windowTimesteps } from "../eval/context_history.ts";
import { contextLength, worldActionConfig } from "../models/world_action/configs.ts";
import { maxContextTimesteps } from "../models/world_action/kv_cache_window.ts";

Deno.test("planning window: L - H observations, the same count as models/kv_cache_window.ts", () => {
  const cfg = worldActionConfig("tiny");
  for (let H = 0; H < cfg.timesteps; H++) {
    const w = windowTimesteps(cfg.timesteps, H);
    assert.equal(w, maxContextTimesteps(cfg, H), `H = ${H}`);
    // window (ending on an observation) + H imagined timesteps fit the context
    assert.ok((w - 1) * 37 + 36 + H * 37 <= contextLength(cfg));
  }
  assert.equal(windowTimesteps(8, 2), 6);
  assert.throws(() => windowTimesteps(8, 8), /no room/);
});

Deno.test("history: interleaves the newest w - 1 observations with their actions", () => {
  const h = new EnvHistory(3);
  const obs = (v: number) => new Int32Array(36).fill(v);
  assert.equal(h.window, 1);
  assert.equal(h.pastTokens(1, 36).length, 0);
  h.push(obs(10), 1);
  assert.equal(h.window, 2);
  h.push(obs(20), 2);
  h.push(obs(30), 3); // the oldest is dropped: a window needs only 2 past observations
  assert.equal(h.window, 3);
  assert.equal(h.obs.length, 2);
  const past = h.pastTokens(3, 36);
  assert.equal(past.length, 2 * 37);
  assert.deepEqual(Array.from(past.subarray(0, 37)), [...new Array(36).fill(20), 2]);
  assert.deepEqual(Array.from(past.subarray(37)), [...new Array(36).fill(30), 3]);
  assert.deepEqual(Array.from(h.pastTokens(2, 36)), [...new Array(36).fill(30), 3]);
  h.clear();
  assert.equal(h.window, 1);
});
