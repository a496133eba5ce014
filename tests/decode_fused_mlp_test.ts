/**
 * The one-dispatch decode MLP (kernels/ops/decode_mlp.ts `mlpSumParts`): the partial-sum
 * prologue, layer norm, fc1, activation and fc2 as per-workgroup partial products, against
 * float64 and the unfused composition (sum + add + layerNorm + matmul + act + matmul), on
 * awkward shapes (K not a multiple of the k-groups, F not a multiple of 64 columns, rows in
 * blocks); the consumer's prologue (`matmulSumParts` with the KV-cache epilogue) summing
 * the partials; the Q head's fused decode (LN + Mish prologues, one-dispatch ensemble
 * distribution) against its forward; the observation head's partial logits (`obsParts`).
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { noGrad } from "../kernels/core/autograd.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { add, layerNorm, matmul, sum } from "../kernels/ops/mod.ts";
import { fusesMlp, mlpSumParts } from "../kernels/ops/decode_mlp.ts";
import { matmulSumParts } from "../kernels/ops/matmul.ts";
import { appendKv } from "../kernels/ops/cached_attention.ts";
import type { EpilogueActivation } from "../kernels/codegen/activation.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { SeedStream } from "../util/rng.ts";
import { ensembleDistribution } from "../kernels/ops/ensemble_distribution.ts";
import { qDistribution } from "../models/world_action/heads.ts";
import { assertClose, randArray } from "./helpers/reference.ts";
import { erf64 } from "./helpers/cpu_ops.ts";

const rt = await initRuntime();
const f32t = (a: Float64Array, shape: number[]) => tensor(Float32Array.from(a), shape);

function act64(kind: EpilogueActivation, x: number): number {
  if (kind === "relu") return Math.max(x, 0);
  if (kind === "gelu_erf") return 0.5 * x * (1 + erf64(x / Math.SQRT2));
  return 0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)));
}

/** float64 h and y = act(LN(h) W1^T + b1) W2^T (no fc2 bias). */
function mlp64(
  parts: Float64Array,
  r: Float64Array,
  pb: Float64Array,
  g: Float64Array,
  be: Float64Array,
  w1: Float64Array,
  b1: Float64Array,
  w2: Float64Array,
  [P, M, K, F, N]: number[],
  kind: EpilogueActivation,
): { h: Float64Array; y: Float64Array } {
  const h = new Float64Array(M * K);
  for (let e = 0; e < M * K; e++) {
    let v = r[e] + pb[e % K];
    for (let p = 0; p < P; p++) v += parts[p * M * K + e];
    h[e] = v;
  }
  const y = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    const row = h.subarray(i * K, (i + 1) * K);
    const mean = row.reduce((s, v) => s + v, 0) / K;
    const v = row.reduce((s, u) => s + (u - mean) ** 2, 0) / K;
    const xn = row.map((u, k) => ((u - mean) / Math.sqrt(v + 1e-5)) * g[k] + be[k]);
    const u = new Float64Array(F);
    for (let j = 0; j < F; j++) {
      let s = b1[j];
      for (let k = 0; k < K; k++) s += xn[k] * w1[j * K + k];
      u[j] = act64(kind, s);
    }
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let j = 0; j < F; j++) s += u[j] * w2[n * F + j];
      y[i * N + n] = s;
    }
  }
  return { h, y };
}

/** Sum of the G partials [G, M * N] (float64). */
function sumPartials(out: Float32Array, G: number, size: number): Float64Array {
  const s = new Float64Array(size);
  for (let gi = 0; gi < G; gi++) for (let e = 0; e < size; e++) s[e] += out[gi * size + e];
  return s;
}

Deno.test("mlpSumParts: one dispatch = float64 = the unfused composition", async () => {
  let seed = 70;
  for (
    const [P, M, K, F, N, kind] of [
      // K / 4 = 66 chunks over 4 k-groups; F = 200: the last workgroup has 8 columns.
      [2, 3, 264, 200, 72, "relu"],
      // 16 rows x 768: h does not fit 32 KiB at once: row blocks.
      [3, 16, 768, 136, 40, "gelu_erf"],
      [1, 1, 8, 4, 5, "gelu"],
      [12, 5, 300, 1200, 300, "gelu_erf"],
    ] as const
  ) {
    const parts = randArray(P * M * K, seed++), r = randArray(M * K, seed++);
    const pb = randArray(K, seed++), g = randArray(K, seed++, 0.5, 1.5);
    const be = randArray(K, seed++), w1 = randArray(F * K, seed++, -0.1, 0.1);
    const b1 = randArray(F, seed++), w2 = randArray(N * F, seed++, -0.1, 0.1);
    const want = mlp64(parts, r, pb, g, be, w1, b1, w2, [P, M, K, F, N], kind);
    const what = `P ${P} M ${M} ${K} -> ${F} -> ${N} ${kind}`;
    assert.ok(fusesMlp(M, K, F, N, P), `${what}: fuses`);
    const got = await noGrad(() =>
      tidy(() => {
        const tp = f32t(parts, [P, M, 1, K]), tr = f32t(r, [M, 1, K]), tpb = f32t(pb, [K]);
        const ln = { weight: f32t(g, [K]), bias: f32t(be, [K]) };
        const tw1 = f32t(w1, [F, K]), tb1 = f32t(b1, [F]), tw2 = f32t(w2, [N, F]);
        const before = rt.dispatchCount;
        const fused = mlpSumParts(tp, tr, tpb, {
          lnWeight: ln.weight,
          lnBias: ln.bias,
          lnEps: 1e-5,
          w1: tw1,
          b1: tb1,
          w2: tw2,
          activation: kind,
        });
        const n = rt.dispatchCount - before;
        const h = add(add(tr, tpb), sum(tp, 0));
        const u = matmul(layerNorm(h, ln.weight, ln.bias), tw1, {
          transB: true,
          bias: tb1,
          activation: kind,
        });
        const y = matmul(u, tw2, { transB: true });
        return {
          n,
          G: fused.parts.shape[0],
          shape: fused.parts.shape,
          reads: readAll([fused.parts, fused.h, y, h]),
        };
      })
    );
    const [outP, h, y, h2] = await got.reads;
    assert.equal(got.n, 1, `${what}: one dispatch`);
    assert.deepEqual(got.shape, [Math.ceil(F / 64), M, 1, N], `${what}: partials`);
    const out = sumPartials(outP as Float32Array, got.G, M * N);
    assertClose(h, want.h, { atol: 1e-5, rtol: 1e-5, what: `${what} h vs float64` });
    assertClose(h, h2, { atol: 1e-6, rtol: 1e-6, what: `${what} h vs add + sum` });
    assertClose(out, want.y, { atol: 5e-5, rtol: 1e-4, what: `${what} vs float64` });
    assertClose(out, y, { atol: 2e-5, rtol: 1e-4, what: `${what} vs unfused` });
  }
  const z = (s: number[]) => tensor(new Float32Array(s.reduce((a, b) => a * b, 1)), s);
  const w = { lnWeight: z([8]), lnBias: z([8]), lnEps: 1e-5, w1: z([4, 8]), b1: z([4]) };
  assert.throws(
    () => mlpSumParts(z([2, 3, 8]), z([3, 8]), z([8]), { ...w, w2: z([5, 3]), activation: "relu" }),
    /w2 \[5,3\] must be f32 \[5,4\]/,
  );
  assert.throws(
    () => mlpSumParts(z([2, 3, 8]), z([3, 7]), z([8]), { ...w, w2: z([5, 4]), activation: "relu" }),
    /parts \[2,3,8\] must be \[P, 3,7\]/,
  );
  assert.equal(fusesMlp(17, 8, 4, 5, 1), false, "17 rows do not fuse");
  assert.equal(fusesMlp(4, 6, 4, 5, 1), false, "K % 4 != 0 does not fuse");
});

Deno.test("matmulSumParts with kvCache: the partials' sum + ln1 + qkv + KV write in one dispatch", async () => {
  // A decode layer's first kernel after the fused MLP: h = x + b2 + sum_g parts[g].
  const G = 5, seqs = 3, K = 264, H = 2, D = 12, cap = 6, start = 4, N = 3 * H * D;
  const parts = randArray(G * seqs * K, 90), r = randArray(seqs * K, 91);
  const pb = randArray(K, 92), g = randArray(K, 93, 0.5, 1.5), be = randArray(K, 94);
  const w = randArray(N * K, 95, -0.1, 0.1), b = randArray(N, 96);
  const init = randArray(2 * seqs * H * cap * D, 97);
  const got = await noGrad(() =>
    tidy(() => {
      const tp = f32t(parts, [G, seqs, 1, K]), tr = f32t(r, [seqs, 1, K]);
      const tpb = f32t(pb, [K]), tw = f32t(w, [N, K]), tb = f32t(b, [N]);
      const ln = { weight: f32t(g, [K]), bias: f32t(be, [K]) };
      const c1 = f32t(init, [2, seqs, H, cap, D]), c2 = f32t(init, [2, seqs, H, cap, D]);
      const before = rt.dispatchCount;
      const fused = matmulSumParts(tp, tr, tpb, tw, {
        transB: true,
        bias: tb,
        layerNorm: ln,
        kvCache: { cache: c1, start },
      });
      const n = rt.dispatchCount - before;
      const h = add(add(tr, tpb), sum(tp, 0));
      const plain = matmul(layerNorm(h, ln.weight, ln.bias), tw, { transB: true, bias: tb });
      appendKv(plain, c2, start);
      return { n, reads: readAll([fused.out, fused.h, plain, h, c1, c2]) };
    })
  );
  const [out, h, plain, h2, k1, k2] = await got.reads;
  assert.equal(got.n, 1, "one dispatch");
  assertClose(h, h2, { atol: 1e-6, rtol: 1e-6, what: "h" });
  assertClose(out, plain, { atol: 1e-5, rtol: 1e-5, what: "qkv" });
  assertClose(k1, k2, { atol: 1e-5, rtol: 1e-5, what: "cache" });
  let changed = 0;
  k1.forEach((v, i) => (changed += v !== Math.fround(init[i]) ? 1 : 0));
  assert.equal(changed, 2 * seqs * H * D, "entries written");
});

/** A model wide enough for the skinny kernels (d, qHidden > 256), weights perturbed. */
async function wideModel(): Promise<WorldActionModel> {
  const cfg = worldActionConfig("tiny", {
    d: 264,
    heads: 2,
    layers: 2,
    timesteps: 2,
    qHidden: 300,
    qEnsemble: 3,
    seed: 9,
  });
  const model = new WorldActionModel(cfg);
  const state = await model.stateDict();
  const r = randArray(1 << 16, 77);
  let k = 0;
  for (const v of state.values()) {
    for (let i = 0; i < v.data.length; i++) v.data[i] += 0.1 * r[k++ % r.length];
  }
  model.loadStateDict(state);
  model.eval();
  return model;
}

Deno.test("QHead.decode: norms fused into the Linears (LN + Mish prologue) = forward(lnF(x))", async () => {
  const model = await wideModel();
  const cfg = model.cfg;
  const x = tensor(Float32Array.from(randArray(5 * cfg.d, 31)), [5, 1, cfg.d]);
  const got = await noGrad(() =>
    tidy(() => {
      const before = rt.dispatchCount;
      const a = model.headQ.decode(x, model.lnF, new SeedStream(0), model.support);
      const n = rt.dispatchCount - before;
      const b = model.headQ.forward(model.lnF.forward(x), new SeedStream(0), model.support);
      const ts = [a.values, b.values, a.probs, b.probs, a.logProbs, b.logProbs];
      return { n, reads: readAll([...ts, ...a.logits.flatMap((l, e) => [l, b.logits[e]])]) };
    })
  );
  // One dispatch per Linear of each member, one for the ensemble distribution.
  assert.equal(got.n, cfg.qEnsemble * cfg.qLayers + 1, "dispatches");
  const r = await got.reads;
  for (let k = 0; k < r.length; k += 2) {
    assertClose(r[k], r[k + 1], { atol: 2e-5, rtol: 1e-4, what: `output ${k / 2}` });
  }
  x.dispose();
  for (const p of model.parameters()) p.dispose();
});

Deno.test("decode obsParts: the observation head's partial logits sum to obsLogits", async () => {
  const model = await wideModel();
  const cfg = model.cfg;
  const N = 3, pre = 40;
  const toks = Int32Array.from({ length: N * pre }, (_, i) => (i * 7) % cfg.obsVocab);
  const tasks = tensor([1, 4, 2], [N], "i32");
  const a = model.newCache(tasks), b = model.newCache(tasks);
  // Position 40 is an observation token predicting one: obs logits (+ the last block pending).
  const step = tensor([3, 9, 1], [N, 1], "i32");
  const got = await noGrad(() =>
    tidy(() => {
      for (const c of [a, b]) model.step(c, tensor(toks, [N, pre], "i32"), { lastQOnly: true });
      const plain = model.step(a, step);
      const before = rt.dispatchCount;
      // The fused MLP path is opt-in (kv_cache.ts StepOptions.fusedMlp: measured slower).
      const parts = model.step(b, step, { obsParts: true, fusedMlp: true });
      const n = rt.dispatchCount - before;
      const lp = parts.obsLogitParts!;
      return {
        n,
        G: lp.parts.shape[0],
        none: parts.obsLogits === null && plain.obsLogitParts === undefined,
        reads: readAll([plain.obsLogits!, lp.parts, lp.bias]),
      };
    })
  );
  const [plain, partials, bias] = await got.reads;
  assert.ok(got.none, "obsParts gives parts instead of logits");
  // embedding 1, layer 0: 3, layer 1: qkv + attention + fused MLP, the head: 1.
  assert.equal(got.n, 1 + 3 + 3 + 1, "dispatches");
  const V = cfg.obsVocab;
  const sum = sumPartials(partials as Float32Array, got.G, N * V);
  for (let e = 0; e < N * V; e++) sum[e] += bias[e % V];
  assertClose(sum, plain, { atol: 2e-5, rtol: 1e-4, what: "logits" });
  a.dispose();
  b.dispose();
  for (const p of model.parameters()) p.dispose();
});

Deno.test("decodeStep fusedMlp: the 3-dispatch layer = the default layer (heads, 3 steps)", async () => {
  const model = await wideModel();
  const cfg = model.cfg;
  const N = 2, pre = 36;
  const toks = Int32Array.from({ length: N * pre }, (_, i) => (i * 5) % cfg.obsVocab);
  const tasks = tensor([3, 1], [N], "i32");
  const a = model.newCache(tasks), b = model.newCache(tasks);
  const got = noGrad(() =>
    tidy(() => {
      const reads: Tensor[] = [];
      for (const c of [a, b]) model.step(c, tensor(toks, [N, pre], "i32"), { lastQOnly: true });
      // Positions 36 (obs), 37 (action: reward, end, Q), 38 (obs).
      for (const ids of [[2, 7], [1, 0], [4, 4]]) {
        const step = tensor(ids, [N, 1], "i32");
        const c0 = rt.dispatchCount;
        // Against the 5-dispatch layer (the compact 3-dispatch one is the default now).
        const plain = model.step(a, step, { compactLayer: false });
        const c1 = rt.dispatchCount;
        const fused = model.step(b, step, { fusedMlp: true });
        // The fused path ran: 2 layers of 3 instead of 5 dispatches (the last layer's MLP
        // partials summed by the observation head or, after an action, by the next step).
        assert.ok(rt.dispatchCount - c1 < c1 - c0, `fused ${rt.dispatchCount - c1} vs ${c1 - c0}`);
        for (const k of ["obsLogits", "rewardLogits", "endLogits"] as const) {
          assert.equal(plain[k] === null, fused[k] === null, k);
          if (plain[k]) reads.push(plain[k]!, fused[k]!);
        }
        if (plain.q) reads.push(plain.q.probs, fused.q!.probs, plain.q.values, fused.q!.values);
      }
      return { reads: readAll(reads) };
    })
  );
  const outs = await got.reads;
  assert.ok(outs.length >= 8, `${outs.length} outputs compared`);
  for (let i = 0; i < outs.length; i += 2) {
    assertClose(outs[i + 1], outs[i], { atol: 2e-5, rtol: 1e-4, what: `output ${i / 2}` });
  }
  a.dispose();
  b.dispose();
  for (const p of model.parameters()) p.dispose();
});

Deno.test("ensembleDistribution: one dispatch = qDistribution (E = 1, 2) and float64", async () => {
  for (const E of [1, 2]) {
    const shape = [2, 3, 5], atoms = 5, rows = 6;
    const ls = Array.from({ length: E }, (_, e) => randArray(rows * atoms, 50 + e, -4, 4));
    const sup = randArray(atoms, 60, -10, 10);
    const got = await noGrad(() =>
      tidy(() => {
        const lt = ls.map((l) => f32t(l, shape)), st = f32t(sup, [atoms]);
        const before = rt.dispatchCount;
        const a = ensembleDistribution(lt, st);
        const n = rt.dispatchCount - before;
        const b = qDistribution(lt, st);
        return {
          n,
          reads: readAll([a.logProbs, b.logProbs, a.probs, b.probs, a.values, b.values]),
        };
      })
    );
    assert.equal(got.n, 1, "one dispatch");
    const [lp, lp2, p, p2, v, v2] = await got.reads;
    // float64: log mean_e softmax(l_e), its exp, and the expected value.
    const want = new Float64Array(rows * atoms), wantV = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < atoms; k++) {
        let m = 0;
        for (const l of ls) {
          const row = l.subarray(r * atoms, (r + 1) * atoms);
          m += Math.exp(row[k]) / row.reduce((s, x) => s + Math.exp(x), 0) / E;
        }
        want[r * atoms + k] = Math.log(m);
        wantV[r] += m * sup[k];
      }
    }
    const what = `E ${E}`;
    assertClose(lp, want, { atol: 1e-5, rtol: 1e-5, what: `${what} logProbs vs float64` });
    assertClose(v, wantV, { atol: 1e-5, rtol: 1e-5, what: `${what} values vs float64` });
    assertClose(lp, lp2, { atol: 1e-6, rtol: 1e-6, what: `${what} logProbs` });
    assertClose(p, p2, { atol: 1e-6, rtol: 1e-6, what: `${what} probs` });
    assertClose(v, v2, { atol: 1e-5, rtol: 1e-6, what: `${what} values` });
  }
});
