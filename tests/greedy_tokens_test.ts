/**
 * The planner's greedy-token kernel (eval/greedy_tokens.ts): the tokens equal the `argmax`
 * op (first maximum on ties), land in their column of the observation, and the next input
 * embeddings equal kernels/ops/embed_interleaved.ts bit for bit; one dispatch; without `next`
 * no embedding is made.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { noGrad } from "../kernels/core/autograd.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { argmax } from "../kernels/ops/mod.ts";
import { embedInterleaved } from "../kernels/ops/embed_interleaved.ts";
import { greedyTokensInto } from "../eval/greedy_tokens.ts";
import { randArray } from "./helpers/reference.ts";

const rt = await initRuntime();

Deno.test("greedyTokensInto: argmax + column store + next embedding in one dispatch", async () => {
  for (const [M, V, d, O, j, at] of [[3, 70, 6, 4, 2, 5], [2, 130, 8, 3, 0, 0]]) {
    const logits = Float32Array.from(randArray(M * V, V));
    // Ties: row 0 has its maximum twice (the first wins), row 1 at the last index.
    logits[7] = logits[V - 3] = 5;
    logits[2 * V - 1] = 6;
    const tabs = [V + 2, 4, 9].map((r, k) => Float32Array.from(randArray(r * d, 3 * d + k)));
    const tasks = Int32Array.from({ length: M }, (_, m) => (m * 3) % 4);
    const got = await noGrad(() =>
      tidy(() => {
        const lt = tensor(logits, [M, V]);
        const obs = tensor(new Int32Array(M * O).fill(-7), [M, O], "i32");
        const [to, tt, tp] = tabs.map((a) => tensor(a, [a.length / d, d]));
        const ts = tensor(tasks, [M], "i32");
        const before = rt.dispatchCount;
        const g = greedyTokensInto(lt, obs, j, {
          obs: to,
          taskObs: tt,
          position: tp,
          tasks: ts,
          at,
        });
        const n = rt.dispatchCount - before;
        // The reference embedding: period 1000 keeps every position an observation position.
        const want = embedInterleaved(g.tok.view([M, 1]), ts, {
          obs: to,
          action: to,
          taskObs: tt,
          taskAction: tt,
          position: tp,
          period: 1000,
        }, at);
        return { n, reads: readAll([g.tok, obs, g.x!, argmax(lt, -1), want]) };
      })
    );
    const [tok, obs, x, ref, want] = await got.reads;
    assert.equal(got.n, 1, "one dispatch");
    assert.deepEqual(tok, ref, "tokens = argmax op");
    assert.equal(tok[0], 7, "first maximum on ties");
    assert.equal(tok[1], V - 1);
    for (let m = 0; m < M; m++) {
      for (let c = 0; c < O; c++) assert.equal(obs[m * O + c], c === j ? tok[m] : -7);
    }
    assert.deepEqual(x, want, "next embedding bit for bit");
  }
  const z = tensor(new Float32Array(6), [2, 3]);
  const obs = tensor(new Int32Array(4), [2, 2], "i32");
  assert.throws(() => greedyTokensInto(z, obs, 2), /column 2 not in \[0, 2\)/);
  assert.throws(() => greedyTokensInto(z, tensor([1, 2], [2], "i32"), 0), /obs .* must be i32/);
});

Deno.test("greedyTokensInto: without `next`, tokens and the column only (float64 argmax)", async () => {
  const M = 4, V = 300, O = 2;
  const logits = Float32Array.from(randArray(M * V, 41, -2, 2));
  const want = new Int32Array(M);
  for (let m = 0; m < M; m++) {
    let best = -Infinity;
    for (let r = 0; r < V; r++) {
      if (logits[m * V + r] > best) (best = logits[m * V + r], want[m] = r);
    }
  }
  const got = await noGrad(() =>
    tidy(() => {
      const obs = tensor(new Int32Array(M * O), [M, O], "i32");
      const g = greedyTokensInto(tensor(logits, [M, V]), obs, 1);
      return { none: g.x === null, reads: readAll([g.tok, obs]) };
    })
  );
  const [tok, obs] = await got.reads;
  assert.ok(got.none, "no embedding without `next`");
  assert.deepEqual(tok, want);
  for (let m = 0; m < M; m++) {
    assert.equal(obs[m * O + 1], want[m]);
    assert.equal(obs[m * O], 0, "other columns untouched");
  }
});
