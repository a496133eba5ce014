/**
 * The f16 KV cache (`--precision f16`): every kernel that writes or reads a layer's cache
 * (kernels/ops/cached_attention.ts appendKv, cachedAttention, cachedAttentionProj,
 * gatherCache; the skinny qkv product's KV epilogue, codegen/matmul/skinny.ts) with an f16
 * cache against
 * - the stored values: each within one f16 spacing of its f32 source (a neighbouring f16),
 *   saturated at +-65504 beyond the f16 range, written identically by the fused epilogue and
 *   appendKv, copied bit for bit by the gather;
 * - a float64 reference over the f16 values the cache holds, with a bound derived from the f32
 *   arithmetic (below);
 * - the f32 cache: the same kernels differ only by the keys' and values' f16 rounding.
 * Plus the part planner: an f16 cache needs half the bytes, so half the parts.
 */
import assert from "node:assert/strict";
import { noGrad } from "../kernels/core/autograd.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import {
  appendKv,
  cachedAttention,
  cachedAttentionProj,
  gatherCache,
} from "../kernels/ops/cached_attention.ts";
import { matmul } from "../kernels/ops/matmul.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import {
  groupsPerPart,
  kvCacheLimits,
  layerBytes,
  partRanges,
} from "../models/world_action/_kv_cache_parts.ts";
import { randArray } from "./helpers/reference.ts";

const rt = await initRuntime();
const HAS_F16 = rt.ctx.hasF16;
const GPU_TEST = { sanitizeOps: false, sanitizeResources: false };
const EPS32 = 2 ** -24;

/** Spacing of the f16 values around x (normal range; subnormals: 2^-24). */
function f16Spacing(x: number): number {
  const a = Math.abs(x);
  return a < 2 ** -14 ? 2 ** -24 : 2 ** (Math.floor(Math.log2(a)) - 10);
}

/** Stored f16 `got` is a neighbouring f16 of x (or +-65504 beyond the range). */
function assertHalfOf(got: number, x: number, what: string): void {
  if (Math.abs(x) > 65504) {
    assert.equal(got, Math.sign(x) * 65504, `${what}: ${x} saturates`);
    return;
  }
  assert.equal(Math.f16round(got), got, `${what}: ${got} is an f16`);
  assert.ok(Math.abs(got - x) < f16Spacing(x) * 1.0001, `${what}: ${got} is no f16 next to ${x}`);
}

// qkv rows [N, S, 3, H, D]; keys and values get a few values beyond the f16 range.
const [N, H, D, cap, S] = [3, 2, 16, 40, 37];
const W = 3 * H * D;
const all = Float32Array.from(randArray(N * S * W, 17, -2, 2));
for (const [i, v] of [[5, 1e5], [W + H * D + 3, -7e4], [7 * W + 2 * H * D + 1, 66000]]) {
  all[i] = v;
}

/** Rows [from, to) of every sequence as a tensor [N, to - from, W]. */
function rows(from: number, to: number): Tensor {
  const out = new Float32Array(N * (to - from) * W);
  for (let n = 0; n < N; n++) {
    out.set(all.subarray((n * S + from) * W, (n * S + to) * W), n * (to - from) * W);
  }
  return tensor(out, [N, to - from, W]);
}

/** Cache index of (half, sequence, head, position, c). */
const at = (half: number, n: number, h: number, p: number, c: number, seqs = N) =>
  (((half * seqs + n) * H + h) * cap + p) * D + c;
/** qkv index of (sequence, position, slot q/k/v, head, c). */
const src = (n: number, p: number, slot: number, h: number, c: number) =>
  (n * S + p) * W + (slot * H + h) * D + c;

/**
 * float64 causal attention of query row (n, qp) over keys/values 0..qp read from `kv` (the
 * cache as stored), with the bound on the f32 kernel's error: scores carry
 * ds = (D + 2) eps32 scale max_j sum_c |q k| (dot products), exp adds (3 + 2 |s - m|) eps32
 * relative (WGSL's exp accuracy) and the sums (keys + D + 4) eps32 relative; a relative error
 * e of every p_j moves output c by at most e sum_j p_j |v_jc| (twice: numerator and total).
 */
function attentionRef(kv: ArrayLike<number>, n: number, qp: number, h: number) {
  const scale = 1 / Math.sqrt(D);
  const q = Array.from({ length: D }, (_, c) => all[src(n, qp, 0, h, c)]);
  const s: number[] = [];
  let mag = 0;
  for (let j = 0; j <= qp; j++) {
    let v = 0, m = 0;
    for (let c = 0; c < D; c++) {
      v += q[c] * kv[at(0, n, h, j, c)];
      m += Math.abs(q[c] * kv[at(0, n, h, j, c)]);
    }
    s.push(v * scale);
    mag = Math.max(mag, m * scale);
  }
  const mx = Math.max(...s);
  const e = s.map((v) => Math.exp(v - mx));
  const z = e.reduce((a, b) => a + b, 0);
  const spread = Math.max(...s.map((v) => mx - v));
  const rel = 2 * (D + 2) * EPS32 * mag + (3 + 2 * spread) * EPS32 + (qp + 1 + D + 4) * EPS32;
  const o = new Float64Array(D), tol = new Float64Array(D), pv = new Float64Array(D);
  for (let c = 0; c < D; c++) {
    let acc = 0, absAcc = 0;
    for (let j = 0; j <= qp; j++) {
      acc += (e[j] / z) * kv[at(1, n, h, j, c)];
      absAcc += (e[j] / z) * Math.abs(kv[at(1, n, h, j, c)]);
    }
    o[c] = acc;
    pv[c] = absAcc;
    tol[c] = 2 * rel * absAcc + 1e-30;
  }
  return { o, tol, mag, pv };
}

Deno.test({
  name: "f16 cache: appendKv rounds (saturating), attention equals float64 on the stored " +
    "values, gatherCache copies bits; f32 cache within the f16 rounding",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const half = Tensor.empty([2, N, H, cap, D], "f16");
    const full = Tensor.empty([2, N, H, cap, D]);
    const weight = Float32Array.from(randArray(H * D * H * D, 5));
    const wt = tensor(weight, [H * D, H * D]);
    let worst = 0, worstProj = 0, fromF32 = 0;
    // Pieces as a prefill then decode steps: 0..20 (from empty), 20..21, 21..30, 30..37.
    const cuts = [0, 20, 21, 30, 37];
    for (let k = 0; k + 1 < cuts.length; k++) {
      const [a, b] = [cuts[k], cuts[k + 1]];
      const t = b - a;
      const qkv = rows(a, b);
      appendKv(qkv, half, a);
      appendKv(qkv, full, a);
      const outs = [
        cachedAttention(qkv, half, a),
        cachedAttentionProj(qkv, half, a, wt),
        cachedAttention(qkv, full, a),
      ];
      const [y16, p16, y32, kv] = await readAll([...outs, half]);
      outs.forEach((o) => o.dispose());
      qkv.dispose();
      for (let n = 0; n < N; n++) {
        for (let h = 0; h < H; h++) {
          for (let p = a; p < b; p++) {
            for (let c = 0; c < D; c++) {
              for (const slot of [1, 2]) {
                const x = all[src(n, p, slot, h, c)];
                assertHalfOf(kv[at(slot - 1, n, h, p, c)], x, `stored ${slot} ${n} ${h} ${p}`);
              }
            }
          }
          for (let i = 0; i < t; i++) {
            const r = n * t + i;
            const { o, tol, mag, pv } = attentionRef(kv, n, a + i, h);
            for (let c = 0; c < D; c++) {
              const got = y16[(r * H + h) * D + c];
              const err = Math.abs(got - o[c]);
              assert.ok(err <= tol[c], `attention ${n} ${h} ${a + i} ${c}: ${got} vs ${o[c]}`);
              worst = Math.max(worst, err / tol[c]);
              if (n === 0) continue; // sequence 0 holds the saturated outliers
              // The f32 cache: keys and values moved by <= 2^-11 relative move the scores by
              // <= 2^-11 mag, so each p_j by <= 2 2^-11 mag relative (first order, x1.5).
              const diff = Math.abs(got - y32[(r * H + h) * D + c]);
              const bound = 1.5 * (2 * 2 ** -11 * mag + 2 ** -11) * pv[c] + 2 * tol[c];
              assert.ok(diff <= bound, `f16 vs f32 cache ${n} ${h} ${a + i} ${c}: ${diff}`);
              fromF32 = Math.max(fromF32, diff / bound);
            }
            // Projection partials: out[h, r, col] = sum_c y_c W[col, hD + c].
            for (let col = 0; col < H * D; col++) {
              let want = 0, pTol = 0;
              for (let c = 0; c < D; c++) {
                const w = weight[col * H * D + h * D + c];
                want += o[c] * w;
                pTol += tol[c] * Math.abs(w) + (D + 2) * EPS32 * Math.abs(o[c] * w);
              }
              const got = p16[(h * N * t + r) * H * D + col];
              const err = Math.abs(got - want);
              assert.ok(err <= pTol, `proj ${h} ${r} ${col}: ${got} vs ${want} (${pTol})`);
              worstProj = Math.max(worstProj, err / pTol);
            }
          }
        }
      }
    }
    // The f32 cache's attention differs by the f16 rounding of keys and values: visibly.
    assert.ok(fromF32 > 1e-3, `the f16 cache was rounded (${fromF32} of the bound)`);
    console.log(
      `f16 cache: error / bound ${worst.toExponential(2)} (attention), ` +
        `${worstProj.toExponential(2)} (with proj); f16 vs f32 cache ${fromF32.toExponential(2)}`,
    );

    // Gather: bits of positions < S of each parent, in the parent's dtype.
    const parents = [2, 2, 0, 1];
    const child = gatherCache(half, tensor(parents, [4], "i32"), S);
    assert.equal(child.dtype, "f16");
    const [srcBits, dstBits] = (await readAll([half, child])).map((v) =>
      new Uint16Array(v.buffer, v.byteOffset, v.length)
    );
    for (let hf = 0; hf < 2; hf++) {
      parents.forEach((p, m) => {
        for (let h = 0; h < H; h++) {
          const s0 = at(hf, p, h, 0, 0), d0 = at(hf, m, h, 0, 0, parents.length);
          assert.deepEqual(dstBits.subarray(d0, d0 + S * D), srcBits.subarray(s0, s0 + S * D));
        }
      });
    }
    for (const x of [half, full, child, wt]) x.dispose();
  },
});

Deno.test({
  name: "f16 cache: the skinny qkv product's KV epilogue stores what appendKv stores",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    // K > 256 takes the skinny kernel (M <= 16 rows): 2 sequences x 3 tokens at position 5,
    // with run-time rows (noGrad) and baked rows (grad mode, nothing requires a gradient).
    const [seqs, t, start, K] = [2, 3, 5, 272];
    const x = Float32Array.from(randArray(seqs * t * K, 21));
    const w = Float32Array.from(randArray(W * K, 22, -0.3, 0.3));
    w[40 * K + 1] = 3000; // key column 40 (in [H D, 2 H D)) overflows f16 at row 0
    x[1] = 40;
    for (const generic of [true, false]) {
      const caches = [0, 1, 2].map((i) =>
        Tensor.empty([2, seqs, H, cap, D], i < 2 ? "f16" : "f32")
      );
      const run = (cache?: Tensor) =>
        tidy(() =>
          matmul(tensor(x, [seqs, t, K]), tensor(w, [W, K]), {
            transB: true,
            kvCache: cache && { cache, start },
          })
        );
      const fused = generic ? noGrad(() => run(caches[0])) : run(caches[0]);
      const f32Out = generic ? noGrad(() => run(caches[2])) : run(caches[2]);
      appendKv(f32Out, caches[1], start);
      const [y16, y32, viaEpilogue, viaAppend] = await readAll([
        fused,
        f32Out,
        ...caches.slice(0, 2),
      ]);
      assert.deepEqual(y16, y32, "the product itself is the f32 cache's");
      const bits = (v: Float16Array | Float32Array | Int32Array | Uint32Array) =>
        new Uint16Array(v.buffer, v.byteOffset, v.length);
      let saturated = 0;
      for (let hf = 0; hf < 2; hf++) {
        for (let n = 0; n < seqs; n++) {
          for (let h = 0; h < H; h++) {
            const i0 = at(hf, n, h, start, 0, seqs);
            const a = bits(viaEpilogue).subarray(i0, i0 + t * D);
            assert.deepEqual(a, bits(viaAppend).subarray(i0, i0 + t * D), `${hf} ${n} ${h}`);
            for (let i = 0; i < t; i++) {
              for (let c = 0; c < D; c++) {
                const v = y32[(n * t + i) * W + (hf + 1) * H * D + h * D + c];
                const got = viaEpilogue[i0 + i * D + c];
                assertHalfOf(got, v, `epilogue ${hf} ${n} ${h} ${i} ${c}`);
                if (Math.abs(got) === 65504) saturated++;
              }
            }
          }
        }
      }
      assert.ok(saturated > 0, "a key beyond the f16 range was saturated");
      for (const c of [...caches, fused, f32Out]) c.dispose();
    }
  },
});

Deno.test("KV cache parts: an f16 cache takes half the bytes and half the parts", () => {
  // 150M planning with 16 environments x 16 sequences (K = 4 beams, 4 candidates each) on a
  // 128 MiB binding: 4 parts in f32, 2 in f16. No cache is allocated.
  const cfg = worldActionConfig("150M");
  kvCacheLimits.maxPartBytes = 128 * 2 ** 20;
  try {
    for (const n of [1, 16, 256]) {
      assert.equal(layerBytes(cfg, n, 296, "f16") * 2, layerBytes(cfg, n, 296, "f32"));
    }
    const parts = (dtype: "f32" | "f16") => {
      const per = groupsPerPart(cfg, 16, 16, 296, 0, dtype);
      return per === 0 ? 1 : partRanges(16, per, 16).length;
    };
    assert.equal(parts("f32"), 4);
    assert.equal(parts("f16"), 2);
    // An environment's 16 sequences take 29 MB a layer in f32, 14.5 MB in f16: 4 environments
    // fit one binding in both, 8 only in f16.
    assert.equal(groupsPerPart(cfg, 4, 16, 296, 0, "f32"), 0);
    assert.equal(groupsPerPart(cfg, 4, 16, 296, 0, "f16"), 0);
    assert.equal(groupsPerPart(cfg, 8, 16, 296, 0, "f16"), 0);
    assert.equal(groupsPerPart(cfg, 8, 16, 296, 0, "f32"), 4);
    kvCacheLimits.maxPartBytes = 40 * 2 ** 20; // 29 MB / 15 MB per environment (f32 / f16)
    assert.equal(groupsPerPart(cfg, 16, 16, 296, 0, "f32"), 1);
    assert.equal(groupsPerPart(cfg, 16, 16, 296, 0, "f16"), 2);
  } finally {
    kvCacheLimits.maxPartBytes = 0;
  }
});
