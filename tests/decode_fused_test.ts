/**
 * Fused decoding: the layer-norm prologue of the skinny matmul (matmul's `layerNorm` option)
 * against float64 and the unfused composition (layerNorm op, then matmul), and the fused
 * decode path of the world-action model (transformer.ts `decodeQkv` / `decodeTail`: ln1 in
 * qkv; proj + residual; ln2 in fc1 + GELU; fc2 + residual) against the unfused full forward,
 * on a width (d 264) where decode rows take the skinny kernel; the Q head's fused decode (LN +
 * Mish prologues, the one-dispatch ensemble distribution) against its forward and float64.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { noGrad } from "../kernels/core/autograd.ts";
import { readAll, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { layerNorm, matmul } from "../kernels/ops/mod.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel, type WorldActionOutputs } from "../models/world_action/model.ts";
import { SeedStream } from "../util/rng.ts";
import { ensembleDistribution } from "../kernels/ops/ensemble_distribution.ts";
import { qDistribution } from "../models/world_action/heads.ts";
import { assertClose, randArray, rng } from "./helpers/reference.ts";
import { erf64 } from "./helpers/cpu_ops.ts";
import { perturbWeights } from "./helpers/perturb.ts";

const rt = await initRuntime();

/** float64 act(LN(x)·W^T + b) + r. */
function reference(
  x: Float64Array,
  g: Float64Array,
  be: Float64Array,
  w: Float64Array,
  b: Float64Array,
  r: Float64Array | null,
  [M, N, K]: number[],
  erf: boolean,
): Float64Array {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    const row = x.subarray(i * K, (i + 1) * K);
    const mean = row.reduce((s, v) => s + v, 0) / K;
    const v = row.reduce((s, u) => s + (u - mean) ** 2, 0) / K;
    const xn = row.map((u, k) => ((u - mean) / Math.sqrt(v + 1e-5)) * g[k] + be[k]);
    for (let j = 0; j < N; j++) {
      let s = b[j];
      for (let k = 0; k < K; k++) s += xn[k] * w[j * K + k];
      if (erf) s = 0.5 * s * (1 + erf64(s / Math.SQRT2));
      out[i * N + j] = s + (r ? r[i * N + j] : 0);
    }
  }
  return out;
}

Deno.test("decode fused: layer-norm prologue = float64 = layerNorm op + matmul, one dispatch", async () => {
  let seed = 1;
  // vec4 and scalar loads (K % 4), M = 1 / 4 / 16, rows with a large mean (two-pass variance).
  for (const [M, N, K] of [[4, 40, 300], [1, 24, 301], [16, 36, 520]]) {
    for (const [erf, withRes] of [[false, false], [true, false], [false, true]]) {
      const x = randArray(M * K, seed++, -2, 2).map((v, i) => (i < K ? v + 50 : v));
      const g = randArray(K, seed++, 0.5, 1.5), be = randArray(K, seed++);
      const w = randArray(N * K, seed++, -0.1, 0.1), b = randArray(N, seed++);
      const r = withRes ? randArray(M * N, seed++) : null;
      const want = reference(x, g, be, w, b, r, [M, N, K], erf);
      const before = rt.dispatchCount;
      const out = tidy(() => {
        const f = (a: Float64Array, shape: number[]) => tensor(Float32Array.from(a), shape);
        const [tx, tg, tbe, tw, tb] = [
          f(x, [M, K]),
          f(g, [K]),
          f(be, [K]),
          f(w, [N, K]),
          f(b, [N]),
        ];
        const opts = {
          transB: true,
          bias: tb,
          activation: erf ? "gelu_erf" as const : undefined,
          residual: r ? f(r, [M, N]) : undefined,
        };
        const fused = matmul(tx, tw, { ...opts, layerNorm: { weight: tg, bias: tbe } });
        const n = rt.dispatchCount - before;
        const unfused = matmul(layerNorm(tx, tg, tbe), tw, opts);
        return { fused, unfused, n };
      });
      const what = `${M}x${N}x${K} erf ${erf} res ${withRes}`;
      assert.equal(out.n, 1, `${what}: one dispatch`);
      const [got, unfused] = await readAll([out.fused, out.unfused]);
      out.fused.dispose();
      out.unfused.dispose();
      assertClose(got, want, { atol: 2e-5, rtol: 1e-4, what: `${what} vs float64` });
      assertClose(got, unfused, { atol: 1e-5, rtol: 1e-5, what: `${what} vs unfused` });
    }
  }
  // Shapes the skinny kernel does not take fall back to the composition (same values).
  const x = tensor(Float32Array.from(randArray(40 * 8, 3)), [40, 8]);
  const w = tensor(Float32Array.from(randArray(12 * 8, 4)), [12, 8]);
  const ln = {
    weight: tensor(new Float32Array(8).fill(2), [8]),
    bias: tensor(new Float32Array(8), [8]),
  };
  const [a, c] = await readAll([
    matmul(x, w, { transB: true, layerNorm: ln }),
    matmul(layerNorm(x, ln.weight, ln.bias), w, { transB: true }),
  ]);
  assertClose(a, c, { atol: 0, rtol: 0, what: "fallback" });
  assert.throws(
    () => matmul(x, w, { transB: true, layerNorm: { ...ln, weight: tensor([1, 2], [2]) } }),
    /layerNorm weight .* must be f32 \[8\]/,
  );
});

// A width above 256 so the decode matmuls (K = d, 4d) take the skinny kernel.
const cfg = worldActionConfig("tiny", { d: 264, heads: 2, layers: 2, timesteps: 2, seed: 5 });
const model = new WorldActionModel(cfg);
// Every weight perturbed (layer norms included) so the norms' gamma/beta matter.
await perturbWeights(model, 6);
model.eval();

Deno.test("decode fused: a decode layer is 4 dispatches around attention (1 + attn + 3)", () => {
  const b = model.blocks[0];
  const x = tensor(Float32Array.from(randArray(4 * cfg.d, 9)), [4, 1, cfg.d]);
  noGrad(() =>
    tidy(() => {
      const c0 = rt.dispatchCount;
      const qkv = b.decodeQkv(x);
      assert.equal(rt.dispatchCount - c0, 1, "ln1 + qkv");
      const y = tensor(Float32Array.from(randArray(4 * cfg.d, 10)), [4, 1, cfg.d]);
      const c1 = rt.dispatchCount;
      b.decodeTail(x, y, new SeedStream(0));
      assert.equal(rt.dispatchCount - c1, 3, "proj + res, ln2 + fc1 + gelu, fc2 + res");
      return qkv;
    })
  ).dispose();
  x.dispose();
});

/** Heads' values per (sequence, absolute position): key -> "n:pos" -> values. */
async function collect(outs: WorldActionOutputs[], N: number): Promise<Map<string, Float32Array>> {
  const parts: { key: string; rows: number[]; start: number; t: Tensor }[] = [];
  for (const o of outs) {
    const add = (key: string, rows: number[], t: Tensor | null) => {
      if (t) parts.push({ key, rows, start: o.start, t });
    };
    add("obs", o.rows.obs, o.obsLogits);
    add("reward", o.rows.action, o.rewardLogits);
    add("end", o.rows.action, o.endLogits);
    add("qValue", o.rows.q, o.q?.values ?? null);
  }
  const vals = await readAll(parts.map((p) => p.t));
  const out = new Map<string, Float32Array>();
  parts.forEach((p, k) => {
    const v = vals[k] as Float32Array;
    const per = v.length / (N * p.rows.length);
    for (let n = 0; n < N; n++) {
      p.rows.forEach((r, j) => {
        const at = (n * p.rows.length + j) * per;
        out.set(`${p.key} ${n}:${p.start + r}`, v.slice(at, at + per));
      });
    }
  });
  for (const p of parts) p.t.dispose();
  return out;
}

Deno.test("decode fused: single-token steps equal the unfused full forward within 1e-5", async () => {
  const N = 4, T = 2 * 37;
  const r = rng(12);
  const toks = Int32Array.from(
    { length: N * T },
    (_, i) => (i % T) % 37 === 36 ? Math.floor(r() * cfg.actions) : Math.floor(r() * cfg.obsVocab),
  );
  const tasks = tensor([1, 7, 3, 7], [N], "i32");
  const full = await collect([model.forward(tensor(toks, [N, T], "i32"), tasks)], N);
  const cols = (from: number, to: number) => {
    const out = new Int32Array(N * (to - from));
    for (let n = 0; n < N; n++) out.set(toks.subarray(n * T + from, n * T + to), n * (to - from));
    return tensor(out, [N, to - from], "i32");
  };
  const cache = model.newCache(tasks);
  // Prefill (many rows: the unfused composition), then 4-row steps (fused, skinny).
  const outs = [model.step(cache, cols(0, 30))];
  for (let p = 30; p < T; p++) outs.push(model.step(cache, cols(p, p + 1)));
  const decoded = await collect(outs, N);
  let count = 0;
  for (const [key, v] of decoded) {
    const want = full.get(key);
    assert.ok(want, `full forward lacks ${key}`);
    assertClose(v, want, { atol: 1e-5, rtol: 1e-5, what: key });
    count++;
  }
  assert.ok(count > 100, `${count} rows compared`);
  cache.dispose();
});

/** A model whose Q head is wide enough for the skinny kernels (d, qHidden > 256), perturbed. */
async function wideQModel(): Promise<WorldActionModel> {
  const cfg = worldActionConfig("tiny", {
    d: 264,
    heads: 2,
    layers: 1,
    timesteps: 2,
    qHidden: 300,
    qEnsemble: 3,
    seed: 9,
  });
  const m = new WorldActionModel(cfg);
  await perturbWeights(m, 77);
  m.eval();
  return m;
}

const f32t = (a: Float64Array, shape: number[]) => tensor(Float32Array.from(a), shape);

Deno.test("QHead.decode: norms fused into the Linears (LN + Mish prologue) = forward(lnF(x))", async () => {
  const model = await wideQModel();
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
