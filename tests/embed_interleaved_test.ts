/**
 * The one-dispatch interleaved embedding (kernels/ops/embed_interleaved.ts) against a float32
 * CPU reference with the same order of additions (bit for bit) and against the world-action
 * model's `embed` composition, on awkward shapes: widths not a multiple of 4, blocks that
 * start mid-timestep and cross action positions, whole-timestep prefills, clamped ids.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { noGrad } from "../kernels/core/autograd.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { embedInterleaved } from "../kernels/ops/embed_interleaved.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { randArray } from "./helpers/reference.ts";

const rt = await initRuntime();

Deno.test("embedInterleaved: one dispatch = float32 reference bit for bit", async () => {
  for (const [d, N, t, start, period] of [[6, 2, 5, 3, 4], [8, 3, 1, 7, 4], [12, 1, 9, 0, 3]]) {
    const Vo = 5, A = 3, tasksN = 4, ctx = 16;
    const tabs = [Vo, A, tasksN, tasksN, ctx].map((r, k) => randArray(r * d, 10 * d + k));
    const [obs, act, tobs, tact, pos] = tabs.map((a) => Float32Array.from(a));
    // Ids beyond a table (7 >= Vo, -1) are clamped into it.
    const toks = Int32Array.from({ length: N * t }, (_, i) => [0, 4, 7, -1, 2, 1][i % 6]);
    const tasks = Int32Array.from({ length: N }, (_, n) => (n * 3) % tasksN);
    const want = new Float32Array(N * t * d);
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < t; i++) {
        const p = start + i, isAct = p % period === period - 1;
        const table = isAct ? act : obs, rows = isAct ? A : Vo;
        const row = Math.min(Math.max(toks[n * t + i], 0), rows - 1);
        const task = isAct ? tact : tobs;
        for (let c = 0; c < d; c++) {
          const a = Math.fround(table[row * d + c] + task[tasks[n] * d + c]);
          want[(n * t + i) * d + c] = Math.fround(a + pos[p * d + c]);
        }
      }
    }
    const got = await noGrad(() =>
      tidy(() => {
        const [to, ta, tto, tta, tp] = [obs, act, tobs, tact, pos].map((a) =>
          tensor(a, [a.length / d, d])
        );
        const before = rt.dispatchCount;
        const x = embedInterleaved(tensor(toks, [N, t], "i32"), tensor(tasks, [N], "i32"), {
          obs: to,
          action: ta,
          taskObs: tto,
          taskAction: tta,
          position: tp,
          period,
        }, start);
        return { n: rt.dispatchCount - before, reads: readAll([x]) };
      })
    );
    assert.equal(got.n, 1, "one dispatch");
    assert.deepEqual((await got.reads)[0], want, `d ${d} N ${N} t ${t} start ${start}`);
  }
  const z = (s: number[]) => tensor(new Float32Array(s[0] * s[1]), s);
  const tabs = {
    obs: z([4, 8]),
    action: z([2, 8]),
    taskObs: z([2, 8]),
    taskAction: z([2, 8]),
    position: z([6, 8]),
    period: 3,
  };
  const toks = tensor(new Int32Array(4), [2, 2], "i32");
  assert.throws(
    () => embedInterleaved(toks, tensor([0, 1], [2], "i32"), tabs, 5),
    /positions \[5, 7\) exceed 6/,
  );
  assert.throws(
    () => embedInterleaved(toks, tensor([0, 3], [2], "i32"), tabs, 0),
    /index range \[0, 3\] outside \[0, 1\]/,
  );
  assert.throws(
    () => embedInterleaved(toks, tensor([0], [1], "i32"), tabs, 0),
    /tasks .* must be i32 \[2\]/,
  );
});

Deno.test("embedInterleaved = the model's embed composition, bit for bit", async () => {
  const cfg = worldActionConfig("tiny", { seed: 4 });
  const model = new WorldActionModel(cfg);
  model.eval();
  const tps = cfg.obsTokens + 1;
  const N = 2;
  // A prefill of two whole timesteps, a block crossing an action, and single tokens.
  for (const [start, t] of [[0, 2 * tps], [3, tps + 2], [tps - 1, 1], [tps + 4, 1]]) {
    const toks = Int32Array.from(
      { length: N * t },
      (
        _,
        i,
      ) => ((start + (i % t)) % tps === cfg.obsTokens ? i % cfg.actions : (i * 13) % cfg.obsVocab),
    );
    const got = noGrad(() =>
      tidy(() => {
        const tk = tensor(toks, [N, t], "i32"), ts = tensor([1, 3], [N], "i32");
        return {
          reads: readAll([
            embedInterleaved(tk, ts, {
              obs: model.obsEmbed.weight,
              action: model.actionEmbed.weight,
              taskObs: model.taskObsEmbed.weight,
              taskAction: model.taskActionEmbed.weight,
              position: model.positionEmbed.weight,
              period: tps,
            }, start),
            model.embed(tk, ts, start),
          ]),
        };
      })
    );
    const [a, b] = await got.reads;
    assert.deepEqual(a, b, `start ${start} t ${t}`);
  }
  for (const p of model.parameters()) p.dispose();
});
