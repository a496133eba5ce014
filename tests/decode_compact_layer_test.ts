/**
 * The compact 3-dispatch decode layer (transformer.ts `decodeCompact`): ln1 + qkv + KV write +
 * attention + per-head proj (kernels/ops/qkv_attention_proj.ts), partial sum + ln2 + fc1 +
 * GELU (kernels/ops/sum_parts_mlp_up.ts), fc2 + residual; against a float64 layer and the
 * 5-dispatch composition on awkward shapes (1, 3, 4 rows; 2 and 3 heads; two tokens per
 * sequence; KV lengths that are no multiple of anything; a step that fills the cache; an f16
 * cache), then decode steps of a tiny model with it on and off (heads, greedy tokens, caches)
 * and the greedy-token prologue against argmax + embedding.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { noGrad } from "../kernels/core/autograd.ts";
import { readAll, Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { argmax, cast, matmul } from "../kernels/ops/mod.ts";
import { cachedAttentionProj } from "../kernels/ops/cached_attention.ts";
import { sumPartsNorm } from "../kernels/ops/sum_parts_norm.ts";
import { qkvAttentionProj } from "../kernels/ops/qkv_attention_proj.ts";
import { sumPartsMlpUp } from "../kernels/ops/sum_parts_mlp_up.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel, type WorldActionOutputs } from "../models/world_action/model.ts";
import { decodeDefaults, fusesGreedyStep, KvCache } from "../models/world_action/kv_cache.ts";
import { assertClose, randArray } from "./helpers/reference.ts";
import { geluErf64 } from "./helpers/cpu_ops.ts";
import { SeedStream } from "../util/rng.ts";

const rt = await initRuntime();
const f32t = (a: Float64Array, shape: number[]) => tensor(Float32Array.from(a), shape);
const fr = (a: Float64Array) => a.map(Math.fround);

interface Weights {
  g1: Float64Array;
  b1n: Float64Array;
  wqkv: Float64Array;
  bqkv: Float64Array;
  wp: Float64Array;
  bp: Float64Array;
  g2: Float64Array;
  b2n: Float64Array;
  w1: Float64Array;
  b1: Float64Array;
  w2: Float64Array;
  b2: Float64Array;
}

function weights(d: number, seed: number): Weights {
  const F = 4 * d;
  const r = (n: number, k: number, lo = -0.3, hi = 0.3) => fr(randArray(n, seed + k, lo, hi));
  return {
    g1: r(d, 1, 0.5, 1.5),
    b1n: r(d, 2),
    wqkv: r(3 * d * d, 3),
    bqkv: r(3 * d, 4),
    wp: r(d * d, 5),
    bp: r(d, 6),
    g2: r(d, 7, 0.5, 1.5),
    b2n: r(d, 8),
    w1: r(F * d, 9),
    b1: r(F, 10),
    w2: r(d * F, 11),
    b2: r(d, 12),
  };
}

function ln64(x: Float64Array, g: Float64Array, b: Float64Array): Float64Array {
  const d = g.length, out = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    const row = x.subarray(r * d, (r + 1) * d);
    const mean = row.reduce((a, v) => a + v, 0) / d;
    const vr = row.reduce((a, v) => a + (v - mean) ** 2, 0) / d;
    for (let j = 0; j < d; j++) {
      out[r * d + j] = (row[j] - mean) / Math.sqrt(vr + 1e-5) * g[j] + b[j];
    }
  }
  return out;
}

/** x [M, K] · w [N, K]^T + b. */
function lin64(x: Float64Array, w: Float64Array, b: Float64Array | null, K: number) {
  const M = x.length / K, N = w.length / K, out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let v = b ? b[n] : 0;
      for (let k = 0; k < K; k++) v += x[m * K + k] * w[n * K + k];
      out[m * N + n] = v;
    }
  }
  return out;
}

/**
 * float64 layer on x [N t, d] with cache [2, N, H, cap, D] (positions < start valid; the new
 * keys and values written into `cache`, rounded by `round`): the layer's output.
 */
function layer64(
  x: Float64Array,
  cache: Float64Array,
  w: Weights,
  N: number,
  t: number,
  H: number,
  D: number,
  cap: number,
  start: number,
  round: (v: number) => number,
): Float64Array {
  const d = H * D;
  const qkv = lin64(ln64(x, w.g1, w.b1n), w.wqkv, w.bqkv, d);
  const at = (half: number, n: number, h: number, p: number) =>
    (((half * N + n) * H + h) * cap + p) * D;
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < t; i++) {
      for (let h = 0; h < H; h++) {
        for (let c = 0; c < D; c++) {
          for (let half = 0; half < 2; half++) {
            cache[at(half, n, h, start + i) + c] = round(
              qkv[(n * t + i) * 3 * d + (1 + half) * d + h * D + c],
            );
          }
        }
      }
    }
  }
  const y = new Float64Array(N * t * d);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < t; i++) {
      for (let h = 0; h < H; h++) {
        const s: number[] = [];
        for (let j = 0; j <= start + i; j++) {
          let v = 0;
          for (let c = 0; c < D; c++) {
            v += qkv[(n * t + i) * 3 * d + h * D + c] * cache[at(0, n, h, j) + c];
          }
          s.push(v / Math.sqrt(D));
        }
        const m = Math.max(...s);
        const e = s.map((v) => Math.exp(v - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let c = 0; c < D; c++) {
          let o = 0;
          for (let j = 0; j <= start + i; j++) o += (e[j] / z) * cache[at(1, n, h, j) + c];
          y[(n * t + i) * d + h * D + c] = o;
        }
      }
    }
  }
  const hmid = lin64(y, w.wp, w.bp, d).map((v, i) => v + x[i]);
  const u = lin64(ln64(hmid, w.g2, w.b2n), w.w1, w.b1, d).map(geluErf64);
  return lin64(u, w.w2, w.b2, 4 * d).map((v, i) => v + hmid[i]);
}

const f16r = (v: number) => {
  const c = Math.max(-65504, Math.min(65504, v));
  return new Float16Array([c])[0];
};

Deno.test("compact decode layer: 3 dispatches = float64 and the 5-dispatch composition", async () => {
  const cases = [
    // H, D, N, t, start, cap, f16 cache
    [2, 16, 1, 1, 7, 13, false],
    [3, 12, 3, 1, 12, 13, false], // fills the cache
    [2, 16, 4, 1, 5, 13, false],
    [3, 12, 2, 2, 9, 11, false], // two tokens per sequence, fills the cache
    [2, 16, 3, 1, 10, 13, true],
    [2, 16, 5, 2, 3, 13, false], // 10 rows: two row blocks in sumPartsMlpUp
  ] as const;
  for (const [H, D, N, t, start, cap, half] of cases) {
    const d = H * D, F = 4 * d, rows = N * t;
    const what = `H ${H} D ${D} N ${N} t ${t} start ${start}${half ? " f16" : ""}`;
    const w = weights(d, 20 + H + N);
    const x = fr(randArray(rows * d, 3 + N, -2, 2));
    const round = half ? f16r : Math.fround;
    const init = randArray(2 * N * H * cap * D, 5 + H, -1.5, 1.5).map(round);
    const cache64 = Float64Array.from(init);
    const want = layer64(x, cache64, w, N, t, H, D, cap, start, round);
    const got = noGrad(() =>
      tidy(() => {
        const T = (a: Float64Array, s: number[]) => f32t(a, s);
        const xs = T(x, [N, t, d]);
        const mk = () => {
          const c = T(init, [2, N, H, cap, D]);
          return half ? cast(c, "f16") : c;
        };
        const c1 = mk(), c2 = mk();
        const W = {
          g1: T(w.g1, [d]),
          b1n: T(w.b1n, [d]),
          wqkv: T(w.wqkv, [3 * d, d]),
          bqkv: T(w.bqkv, [3 * d]),
          wp: T(w.wp, [d, d]),
          bp: T(w.bp, [d]),
          g2: T(w.g2, [d]),
          b2n: T(w.b2n, [d]),
          w1: T(w.w1, [F, d]),
          b1: T(w.b1, [F]),
          w2: T(w.w2, [d, F]),
          b2: T(w.b2, [d]),
        };
        const ln2 = { weight: W.g2, bias: W.b2n };
        const compact = () => {
          const parts = qkvAttentionProj(xs, c1, start, {
            lnWeight: W.g1,
            lnBias: W.b1n,
            lnEps: 1e-5,
            qkvWeight: W.wqkv,
            qkvBias: W.bqkv,
            projWeight: W.wp,
          });
          const { h, u } = sumPartsMlpUp(parts.view([H, N, t, d]), xs, W.bp, ln2, {
            w1: W.w1,
            b1: W.b1,
            activation: "gelu_erf",
          });
          return matmul(u, W.w2, { transB: true, bias: W.b2, residual: h });
        };
        compact(); // warms the row buckets (compiles, no dispatch)
        const c0 = rt.dispatchCount;
        const a = compact();
        const n = rt.dispatchCount - c0;
        // The 5-dispatch layer: ln1 + qkv + KV write; attention + proj; sum + ln2; fc1; fc2.
        const qkv = matmul(xs, W.wqkv, {
          transB: true,
          bias: W.bqkv,
          layerNorm: { weight: W.g1, bias: W.b1n },
          kvCache: { cache: c2, start },
        });
        const parts = cachedAttentionProj(qkv, c2, start, W.wp);
        const { h, n: nn } = sumPartsNorm(parts.view([H, N, t, d]), xs, W.bp, ln2);
        const u = matmul(nn, W.w1, { transB: true, bias: W.b1, activation: "gelu_erf" });
        const b = matmul(u, W.w2, { transB: true, bias: W.b2, residual: h });
        const k1 = half ? cast(c1, "f32") : c1, k2 = half ? cast(c2, "f32") : c2;
        return { n, reads: readAll([a, b, k1, k2]) };
      })
    );
    const [a, b, k1, k2] = await got.reads;
    assert.equal(got.n, 3, `${what}: dispatches`);
    // Inputs are O(1) and a row's sums have <= 4d terms: f32 rounding stays near 1e-6; an f16
    // cache rounds each key and value by 2^-11 relative, where the two paths' keys may round
    // apart by one f16 ulp.
    const tol = half ? { atol: 4e-3, rtol: 4e-3 } : { atol: 3e-5, rtol: 1e-4 };
    assertClose(a, want, { ...tol, what: `${what}: compact vs float64` });
    assertClose(b, want, { ...tol, what: `${what}: 5-dispatch vs float64` });
    assertClose(a, b, { ...tol, what: `${what}: compact vs 5-dispatch` });
    assertClose(k1, cache64, { ...tol, what: `${what}: cache vs float64` });
    assertClose(k1, k2, { ...tol, what: `${what}: caches` });
    // Only positions start .. start + t - 1 changed.
    let changed = 0;
    k1.forEach((v, i) => (changed += v !== init[i] ? 1 : 0));
    assert.ok(
      changed <= 2 * N * H * t * D && changed > N * H * t * D,
      `${what}: ${changed} written`,
    );
  }
});

/** A tiny model with every weight perturbed (norms included). */
async function tinyModel(): Promise<WorldActionModel> {
  const cfg = worldActionConfig("tiny", { layers: 2, seed: 4 });
  const model = new WorldActionModel(cfg);
  const state = await model.stateDict();
  const r = randArray(1 << 14, 31);
  let k = 0;
  for (const v of state.values()) {
    for (let i = 0; i < v.data.length; i++) v.data[i] += 0.2 * r[k++ % r.length];
  }
  model.loadStateDict(state);
  model.eval();
  return model;
}

Deno.test("decodeStep compact layer: heads and caches = the 5-dispatch layer; greedy prologue", async () => {
  // The GPU default ("auto" takes the 5-dispatch layer on a CPU adapter such as this one).
  decodeDefaults.compactLayer = true;
  const model = await tinyModel();
  const cfg = model.cfg;
  const N = 4, pre = 36, cap = 43; // 36 + 7 steps fill the cache
  const toks = Int32Array.from({ length: N * pre }, (_, i) => (i * 11) % cfg.obsVocab);
  const tasks = tensor([0, 3, 5, 1], [N], "i32");
  const caches = [0, 1, 2].map(() => KvCache.create(cfg, tasks, cap, "f32"));
  const [off, on, greedy] = caches;
  const got = noGrad(() =>
    tidy(() => {
      for (const c of caches) {
        model.step(c, tensor(toks, [N, pre], "i32"), { lastQOnly: true, compactLayer: false });
      }
      const reads: Tensor[] = [];
      const tokens: Tensor[] = [];
      const counts: number[][] = [];
      const obs = Tensor.empty([N, cfg.obsTokens], "i32");
      // Position 36 (action), 37..42 (observation tokens): the greedy cache takes its
      // observation tokens from its own previous logits from position 39 on.
      let prevOn: WorldActionOutputs | null = null, prevG: WorldActionOutputs | null = null;
      for (let s = 0; s < 7; s++) {
        const ids = s === 0
          ? tensor([1, 0, 2, 5], [N, 1], "i32")
          : prevOn && s > 2
          ? argmax(prevOn.obsLogits!, -1).view([N, 1])
          : tensor([s, 7, 9, 60 - s], [N, 1], "i32");
        const c0 = rt.dispatchCount;
        const a = model.step(off, ids, { compactLayer: false });
        const c1 = rt.dispatchCount;
        const b = model.step(on, ids);
        const c2 = rt.dispatchCount;
        let g: WorldActionOutputs;
        if (s > 2) {
          assert.ok(fusesGreedyStep(model, greedy), `step ${s} fuses greedy`);
          const into = Tensor.empty([N, 1], "i32");
          g = model.step(greedy, into, {
            greedy: { logits: prevG!.obsLogits!.view([N, cfg.obsVocab]), obs, column: s },
          });
          tokens.push(ids, into);
        } else g = model.step(greedy, ids);
        counts.push([c1 - c0, c2 - c1, rt.dispatchCount - c2]);
        for (const k of ["obsLogits", "rewardLogits", "endLogits"] as const) {
          assert.equal(a[k] === null, b[k] === null, k);
          if (a[k]) reads.push(a[k]!, b[k]!, a[k]!, g[k]!);
        }
        if (a.q) reads.push(a.q.values, b.q!.values, a.q.values, g.q!.values);
        prevOn = b;
        prevG = g;
      }
      const layers = caches.flatMap((c) => c.layers);
      return {
        counts,
        obs,
        reads: readAll(reads),
        tokens: readAll(tokens),
        caches: readAll(layers),
      };
    })
  );
  const outs = await got.reads;
  // The d = 32 model's 5-dispatch layer takes more (its products are not skinny); the
  // greedy step has no embedding dispatch (the first layer's kernel embeds).
  got.counts.forEach(([off5, on3, g], s) => {
    assert.ok(on3 < off5, `step ${s}: compact ${on3} < ${off5} dispatches`);
    assert.equal(g, s > 2 ? on3 - 1 : on3, `step ${s}: greedy step dispatches`);
  });
  // Greedy tokens: the same as argmax of the compact layer's logits.
  const gt = await got.tokens;
  assert.equal(gt.length, 8);
  for (let i = 0; i < gt.length; i += 2) {
    assert.deepEqual([...gt[i + 1]], [...gt[i]], `greedy tokens ${i / 2}`);
  }
  for (let i = 0; i < outs.length; i += 2) {
    assertClose(outs[i + 1], outs[i], { atol: 3e-5, rtol: 1e-4, what: `output ${i}` });
  }
  // Column s of the imagined observation holds step s's greedy token.
  const [obsCols] = await readAll([got.obs]);
  for (let s = 3; s < 7; s++) {
    const col = Array.from({ length: N }, (_, n) => obsCols[n * cfg.obsTokens + s]);
    assert.deepEqual(col, [...gt[2 * (s - 3) + 1]], `obs column ${s}`);
  }
  // Every layer's keys and values at the filled positions agree.
  const cl = await got.caches;
  const L = cfg.layers;
  for (let l = 0; l < L; l++) {
    for (const other of [1, 2]) {
      const a = cl[l], b = cl[other * L + l]; // all 43 positions filled
      assertClose(b, a, { atol: 3e-5, rtol: 1e-4, what: `layer ${l} cache ${other}` });
    }
  }
  decodeDefaults.compactLayer = "auto";
  // One layer through the model's block: 3 dispatches.
  const n = noGrad(() =>
    tidy(() => {
      const x = tensor(Float32Array.from(randArray(N * cfg.d, 40)), [N, 1, cfg.d]);
      const layer = Tensor.empty([2, N, cfg.heads, 8, cfg.d / cfg.heads]);
      const c0 = rt.dispatchCount;
      model.blocks[1].decodeCompact(x, layer, 5, new SeedStream(0));
      return rt.dispatchCount - c0;
    })
  );
  assert.equal(n, 3, "Block.decodeCompact dispatches");
  for (const c of caches) c.dispose();
  for (const p of model.parameters()) p.dispose();
});
