/**
 * The decode kernels of kernels/ops/cached_attention.ts against float64 references at the
 * head sizes of the real configs (D = 64: 40M/70M/150M; D = 128; D = 16: tiny), for single
 * tokens and chunks at several offsets, and the cache gather.
 */
import assert from "node:assert/strict";
import { appendKv, cachedAttention, gatherCache } from "../kernels/ops/cached_attention.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, Tensor, tensor } from "../kernels/core/tensor.ts";
import { assertClose, randArray } from "./helpers/reference.ts";

await initRuntime();

/** Causal attention of the last t of S positions; qkv rows [S, 3, H, D] per sequence. */
function reference(all: Float64Array, N: number, S: number, t: number, H: number, D: number) {
  const out = new Float64Array(N * t * H * D);
  const at = (n: number, p: number, slot: number, h: number, c: number) =>
    all[(((n * S + p) * 3 + slot) * H + h) * D + c];
  for (let n = 0; n < N; n++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < t; i++) {
        const qp = S - t + i;
        const s: number[] = [];
        for (let j = 0; j <= qp; j++) {
          let v = 0;
          for (let c = 0; c < D; c++) v += at(n, qp, 0, h, c) * at(n, j, 1, h, c);
          s.push(v / Math.sqrt(D));
        }
        const m = Math.max(...s);
        const e = s.map((v) => Math.exp(v - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let c = 0; c < D; c++) {
          let o = 0;
          for (let j = 0; j <= qp; j++) o += (e[j] / z) * at(n, j, 2, h, c);
          out[((n * t + i) * H + h) * D + c] = o;
        }
      }
    }
  }
  return out;
}

/** Rows [from, to) of every sequence of all [N, S, 3HD] as a GPU tensor [N, to-from, 3HD]. */
function rows(all: Float64Array, N: number, S: number, W: number, from: number, to: number) {
  const out = new Float32Array(N * (to - from) * W);
  for (let n = 0; n < N; n++) {
    out.set(
      Float32Array.from(all.subarray((n * S + from) * W, (n * S + to) * W)),
      n * (to - from) * W,
    );
  }
  return tensor(out, [N, to - from, W]);
}

for (const D of [16, 64, 128]) {
  Deno.test(`cachedAttention D=${D}: chunks and single tokens at offsets equal float64`, async () => {
    const N = 3;
    const H = 2;
    const cap = 40;
    const W = 3 * H * D;
    const S = 37;
    const all = randArray(N * S * W, D, -2, 2);
    const cache = Tensor.empty([2, N, H, cap, D]);
    // Append in pieces: 0..20 (chunk from empty), 20..21, 21..30, 30..37.
    const cuts = [0, 20, 21, 30, 37];
    for (let k = 0; k + 1 < cuts.length; k++) {
      const [a, b] = [cuts[k], cuts[k + 1]];
      const qkv = rows(all, N, S, W, a, b);
      appendKv(qkv, cache, a);
      const y = cachedAttention(qkv, cache, a);
      const [got] = await readAll([y]);
      const want = reference(
        Float64Array.from(
          Array.from({ length: N }, (_, n) => [...all.subarray(n * S * W, (n * S + b) * W)]).flat(),
        ),
        N,
        b,
        b - a,
        H,
        D,
      );
      assertClose(got, want, { atol: 2e-5, rtol: 1e-4, what: `D=${D} positions ${a}..${b}` });
      qkv.dispose();
      y.dispose();
    }
    // Gather: child m copies parent parents[m]; positions >= length are not compared.
    const parents = [2, 2, 0, 1];
    const child = gatherCache(cache, tensor(parents, [4], "i32"), S);
    const [src, dst] = await readAll([cache, child]);
    const per = cap * D;
    for (let half = 0; half < 2; half++) {
      parents.forEach((p, m) => {
        for (let h = 0; h < H; h++) {
          const s0 = ((half * N + p) * H + h) * per;
          const d0 = ((half * parents.length + m) * H + h) * per;
          assert.deepEqual(dst.subarray(d0, d0 + S * D), src.subarray(s0, s0 + S * D));
        }
      });
    }
    assert.throws(() => appendKv(rows(all, N, S, W, 0, 5), cache, 36), /exceed the capacity 40/);
    cache.dispose();
    child.dispose();
  });
}
