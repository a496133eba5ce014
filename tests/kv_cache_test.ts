/**
 * KV-cached decoding of the world-action model: prefill + incremental steps (single tokens
 * and chunks, aligned and unaligned) give every head's outputs of the full forward at every
 * position; branched caches equal recomputing the branched sequences; the sliding-window
 * helpers' arithmetic.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, type Tensor, tensor } from "../kernels/core/tensor.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import type { KvCache } from "../models/world_action/kv_cache.ts";
import {
  canAppendAndPlan,
  maxContextTimesteps,
  planningWindow,
  windowTokens,
} from "../models/world_action/kv_cache_window.ts";
import { WorldActionModel, type WorldActionOutputs } from "../models/world_action/model.ts";
import { assertClose, rng } from "./helpers/reference.ts";

await initRuntime();

const cfg = worldActionConfig("tiny", { timesteps: 3, seed: 9 });
const T = 3 * 37;
const model = new WorldActionModel(cfg);
{
  // Larger weights than the init so attention is far from uniform.
  const state = await model.stateDict();
  const r = rng(4);
  for (const v of state.values()) {
    for (let i = 0; i < v.data.length; i++) v.data[i] += 0.2 * (r() - 0.5);
  }
  model.loadStateDict(state);
}
model.eval();

function randomTokens(seed: number, n: number, start = 0): Int32Array {
  const r = rng(seed);
  return Int32Array.from(
    { length: n },
    (_, i) =>
      (start + i) % 37 === 36 ? Math.floor(r() * cfg.actions) : Math.floor(r() * cfg.obsVocab),
  );
}

/** Each head's output per absolute position: position -> values, per sequence. */
type HeadMaps = Map<string, Map<number, Float32Array>[]>;

async function collect(outs: WorldActionOutputs[], N: number, into?: HeadMaps): Promise<HeadMaps> {
  const maps: HeadMaps = into ?? new Map();
  const parts: { key: string; rows: number[]; start: number; t: Tensor }[] = [];
  for (const o of outs) {
    const add = (key: string, rows: number[], t: Tensor | null) => {
      if (t) parts.push({ key, rows, start: o.start, t });
    };
    add("obs", o.rows.obs, o.obsLogits);
    add("reward", o.rows.action, o.rewardLogits);
    add("end", o.rows.action, o.endLogits);
    add("qLogP", o.rows.q, o.q?.logProbs ?? null);
    add("qValue", o.rows.q, o.q?.values ?? null);
  }
  const vals = await readAll(parts.map((p) => p.t));
  parts.forEach((p, k) => {
    const v = vals[k] as Float32Array;
    const per = v.length / (N * p.rows.length);
    if (!maps.has(p.key)) maps.set(p.key, Array.from({ length: N }, () => new Map()));
    const m = maps.get(p.key)!;
    for (let n = 0; n < N; n++) {
      p.rows.forEach((r, j) => {
        const at = (n * p.rows.length + j) * per;
        m[n].set(p.start + r, v.slice(at, at + per));
      });
    }
  });
  for (const o of outs) disposeOutputs(o);
  return maps;
}

function disposeOutputs(o: WorldActionOutputs): void {
  for (const t of [o.obsLogits, o.rewardLogits, o.endLogits]) t?.dispose();
  if (o.q) { for (const t of [...o.q.logits, o.q.logProbs, o.q.probs, o.q.values]) t.dispose(); }
}

/** Every position the decoded maps hold must equal the full forward's (sequence map[n]). */
function assertSame(decoded: HeadMaps, full: HeadMaps, seqOf: (n: number) => number, what: string) {
  let count = 0;
  for (const [key, perSeq] of decoded) {
    perSeq.forEach((m, n) => {
      for (const [pos, v] of m) {
        const want = full.get(key)![seqOf(n)].get(pos);
        assert.ok(want, `${what}: full forward lacks ${key} at ${pos}`);
        assertClose(v, want, {
          atol: 2e-5,
          rtol: 1e-4,
          what: `${what}: ${key} seq ${n} pos ${pos}`,
        });
        count++;
      }
    });
  }
  assert.ok(count > 0);
}

async function fullForward(tokens: Int32Array, tasks: number[]): Promise<HeadMaps> {
  const N = tasks.length;
  const out = model.forward(
    tensor(tokens, [N, tokens.length / N], "i32"),
    tensor(tasks, [N], "i32"),
  );
  return await collect([out], N);
}

const tasks = [5, 17];
const seqs = [randomTokens(1, T), randomTokens(2, T)];
const both = new Int32Array([...seqs[0], ...seqs[1]]);
const full = await fullForward(both, tasks);

function columns(from: number, to: number, src: Int32Array[] = seqs): Tensor {
  const N = src.length;
  const out = new Int32Array(N * (to - from));
  src.forEach((s, n) => out.set(s.subarray(from, to), n * (to - from)));
  return tensor(out, [N, to - from], "i32");
}

Deno.test("KV cache: unaligned prefill, single-token steps and a chunk equal the full forward", async () => {
  const cache = model.newCache(tensor(tasks, [2], "i32"));
  const outs = [model.step(cache, columns(0, 40))];
  for (let p = 40; p < 74; p++) outs.push(model.step(cache, columns(p, p + 1)));
  outs.push(model.step(cache, columns(74, T)));
  assert.equal(cache.length, T);
  assertSame(await collect(outs, 2), full, (n) => n, "decoded");
  // Positions are all covered: every obs-head position of the full forward was decoded.
  assert.throws(() => model.step(cache, columns(0, 1)), /exceed the cache capacity/);
  cache.dispose();
});

Deno.test("KV cache: aligned prefill (whole timesteps) then a step; prefill() restarts", async () => {
  const cache = model.newCache(tensor(tasks, [2], "i32"));
  const outs = [model.step(cache, columns(0, 74)), model.step(cache, columns(74, 80))];
  assertSame(await collect(outs, 2), full, (n) => n, "aligned");
  const again = [model.prefill(cache, columns(0, 37)), model.step(cache, columns(37, 38))];
  assert.equal(cache.length, 38);
  assertSame(await collect(again, 2), full, (n) => n, "re-prefilled");
  cache.dispose();
});

Deno.test("KV cache: branched caches equal recomputing the branched sequences", async () => {
  const cache = model.newCache(tensor(tasks, [2], "i32"));
  const pre = 72; // ends on the last observation token of timestep 1 (Q row)
  const first = await collect([model.step(cache, columns(0, pre))], 2);
  assertSame(first, full, (n) => n, "prefix");
  const parents = [1, 0, 1];
  const child = cache.branch(tensor(parents, [3], "i32"));
  assert.equal(child.n, 3);
  assert.equal(child.length, pre);
  // Children continue with different tokens: an action, then observation tokens.
  const tails = [
    randomTokens(7, T - pre, pre),
    randomTokens(8, T - pre, pre),
    randomTokens(9, T - pre, pre),
  ];
  const childSeqs = parents.map((p, m) => {
    const s = new Int32Array(T);
    s.set(seqs[p].subarray(0, pre));
    s.set(tails[m], pre);
    return s;
  });
  const childTasks = parents.map((p) => tasks[p]);
  const childFull = await fullForward(new Int32Array(childSeqs.flatMap((s) => [...s])), childTasks);
  const outs = [model.step(child, columns(pre, pre + 1, childSeqs))];
  for (let p = pre + 1; p < pre + 4; p++) {
    outs.push(model.step(child, columns(p, p + 1, childSeqs)));
  }
  outs.push(model.step(child, columns(pre + 4, T, childSeqs)));
  assertSame(await collect(outs, 3), childFull, (n) => n, "branched");
  // The parent cache is untouched: it still continues its own sequences.
  assertSame(
    await collect([model.step(cache, columns(pre, pre + 3))], 2),
    full,
    (n) => n,
    "parent",
  );
  // repeat(k): children n*k .. n*k+k-1 continue sequence n.
  const rep = cache.repeat(2);
  assert.equal(rep.n, 4);
  const four = [seqs[0], seqs[0], seqs[1], seqs[1]];
  assertSame(
    await collect([model.step(rep, columns(pre + 3, pre + 6, four))], 4),
    full,
    (n) => Math.floor(n / 2),
    "repeated",
  );
  for (const c of [cache, child, rep]) c.dispose();
});

Deno.test("KV cache: decoding needs eval mode", () => {
  const cache: KvCache = model.newCache(tensor([0], [1], "i32"));
  model.train();
  try {
    assert.throws(() => model.step(cache, tensor([1], [1, 1], "i32")), /eval/);
  } finally {
    model.eval();
    cache.dispose();
  }
});

Deno.test("sliding window: room for the horizon, window tokens end on the observation", () => {
  const c = worldActionConfig("40M");
  assert.equal(maxContextTimesteps(c, 0), 8);
  assert.equal(maxContextTimesteps(c, 2), 6);
  assert.deepEqual(planningWindow(c, 3, 2), { first: 0, end: 3 });
  assert.deepEqual(planningWindow(c, 20, 2), { first: 14, end: 20 });
  // 6 context timesteps ending on an observation + 2 imagined timesteps fit in 296 positions.
  assert.ok(5 * 37 + 36 + 2 * 37 <= 296 && 6 * 37 + 36 + 2 * 37 > 296);
  const obs = Int32Array.from({ length: 3 * 36 }, (_, i) => 100 + i);
  const acts = [7, 8];
  const w = windowTokens(c, obs, acts, 1, 3);
  assert.equal(w.length, 37 + 36);
  assert.equal(w[0], 100 + 36);
  assert.equal(w[36], 8);
  assert.equal(w[37], 100 + 72);
  const fake = { length: 6 * 37 + 36, capacity: 296 } as unknown as KvCache;
  assert.equal(canAppendAndPlan(c, fake, 2), false);
  assert.equal(canAppendAndPlan(c, { length: 4 * 37 + 36, capacity: 296 } as KvCache, 2), true);
});
