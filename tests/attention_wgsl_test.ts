import { mulberry32 } from "../util/rng.ts";
/**
 * Fused attention WGSL kernels on the local WebGPU adapter vs the float64 CPU reference:
 * forward (O and logsumexp) and backward (dQ, dK, dV) for causal, full, causal with an
 * offset (KV-cache decode), T = 1, primes, multi-block shapes, the bthd and packed_qkv
 * layouts, a folded grid, and dropout with the hash mask rebuilt on the CPU. The reference
 * gradients are themselves checked against central finite differences.
 */

import assert from "node:assert/strict";
import { gpu } from "../kernels/core/device.ts";
import {
  type AttentionLimits,
  type AttentionSpec,
  dropoutKeep,
  dropoutThreshold,
  pcgHash,
  planAttentionBackward,
  planAttentionForward,
} from "../kernels/codegen/attention/plan.ts";
import {
  attentionBackwardRef,
  attentionForwardRef,
  type RefSpec,
} from "./helpers/attention_reference.ts";
import {
  compilePlan,
  paramsBuffer,
  readBack,
  runPlans,
  storageBuffer,
} from "./helpers/attention_dispatch.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Deterministic uniform values in [-1, 1) (mulberry32). */
function randoms(n: number, seed: number): Float32Array<ArrayBuffer> {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

/**
 * Asserts max |got - want| <= tol * max |want|. Unless `mayBeZero` (e.g. dQ, dK when S = 1:
 * softmax over one key has no gradient), a (near-)zero reference fails: it would prove little.
 */
function expectClose(
  what: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
  mayBeZero = false,
) {
  assert.equal(got.length, want.length, `${what}: length`);
  let err = 0, mag = 0;
  for (let x = 0; x < want.length; x++) {
    err = Math.max(err, Math.abs(got[x] - want[x]));
    mag = Math.max(mag, Math.abs(want[x]));
  }
  if (!mayBeZero) assert.ok(mag > 1e-3, `${what}: reference is ~0, the check would be vacuous`);
  const e = err / Math.max(mag, 1e-3);
  assert.ok(e < tol, `${what}: relative max error ${e.toExponential(2)} >= ${tol}`);
}

// ---- layouts: logical [BH, T, D] <-> buffer contents ---------------------------------

/** [BH, T, D] -> [B, T, H, D]. */
function toBthd(x: Float32Array, H: number, T: number, D: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(x.length);
  const B = x.length / (H * T * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const src = ((b * H + h) * T + t) * D, dst = ((b * T + t) * H + h) * D;
        out.set(x.subarray(src, src + D), dst);
      }
    }
  }
  return out;
}

/** [B, T, H, D] -> [BH, T, D]. */
function fromBthd(x: Float32Array, H: number, T: number, D: number): Float32Array {
  const out = new Float32Array(x.length);
  const B = x.length / (H * T * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const dst = ((b * H + h) * T + t) * D, src = ((b * T + t) * H + h) * D;
        out.set(x.subarray(src, src + D), dst);
      }
    }
  }
  return out;
}

/** Three [BH, T, D] -> one [B, T, 3, H, D]. */
function packQkv(xs: Float32Array[], H: number, T: number, D: number): Float32Array<ArrayBuffer> {
  const B = xs[0].length / (H * T * D);
  const out = new Float32Array(3 * xs[0].length);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let s = 0; s < 3; s++) {
        for (let h = 0; h < H; h++) {
          const src = ((b * H + h) * T + t) * D;
          out.set(xs[s].subarray(src, src + D), (((b * T + t) * 3 + s) * H + h) * D);
        }
      }
    }
  }
  return out;
}

/** One [B, T, 3, H, D] -> three [BH, T, D]. */
function unpackQkv(x: Float32Array, H: number, T: number, D: number): Float32Array[] {
  const B = x.length / (3 * H * T * D);
  const outs = [0, 1, 2].map(() => new Float32Array(B * H * T * D));
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let s = 0; s < 3; s++) {
        for (let h = 0; h < H; h++) {
          const src = (((b * T + t) * 3 + s) * H + h) * D;
          outs[s].set(x.subarray(src, src + D), ((b * H + h) * T + t) * D);
        }
      }
    }
  }
  return outs;
}

// ---- running a case on the GPU -------------------------------------------------------

interface GpuResult {
  o: Float32Array;
  lse: Float32Array;
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
}

interface Inputs {
  q: Float32Array<ArrayBuffer>;
  k: Float32Array<ArrayBuffer>;
  v: Float32Array<ArrayBuffer>;
  dO: Float32Array<ArrayBuffer>;
}

function makeInputs(spec: AttentionSpec, seed: number): Inputs {
  const { batchHeads: BH, Tq, S, D } = spec;
  return {
    q: randoms(BH * Tq * D, seed),
    k: randoms(BH * S * D, seed + 1),
    v: randoms(BH * S * D, seed + 2),
    dO: randoms(BH * Tq * D, seed + 3),
  };
}

/** Run forward (+ backward unless fwdOnly) of `spec` on the GPU; results in [BH, T, D]. */
async function runGpu(
  spec: AttentionSpec,
  x: Inputs,
  drop: { seed: number; p: number },
  limitsOverride: Partial<AttentionLimits> = {},
  fwdOnly = false,
  bwdOptions: { prefetch?: boolean } = {},
): Promise<GpuResult> {
  const ctx = await gpu();
  const device = ctx.device;
  const limits = { ...ctx.limits, ...limitsOverride };
  const { batchHeads: BH, Tq, S, D } = spec;
  const H = spec.heads ?? 1;
  const layout = spec.layout ?? "bhtd";
  const enc = (a: Float32Array<ArrayBuffer>, T: number) =>
    layout === "bhtd" ? a : toBthd(a, H, T, D);
  const dec = (a: Float32Array, T: number) => layout === "bhtd" ? a : fromBthd(a, H, T, D);
  const bufs: Record<string, GPUBuffer> = {
    o: storageBuffer(device, BH * Tq * D * 4),
    lse: storageBuffer(device, BH * Tq * 4),
    delta: storageBuffer(device, BH * Tq * 4),
    dO: storageBuffer(device, enc(x.dO, Tq)),
    params: paramsBuffer(device, drop.seed, drop.p),
  };
  if (layout === "packed_qkv") {
    bufs.qkv = storageBuffer(device, packQkv([x.q, x.k, x.v], H, S, D));
    bufs.dqkv = storageBuffer(device, 3 * BH * S * D * 4);
  } else {
    bufs.q = storageBuffer(device, enc(x.q, Tq));
    bufs.k = storageBuffer(device, enc(x.k, S));
    bufs.v = storageBuffer(device, enc(x.v, S));
    bufs.dQ = storageBuffer(device, BH * Tq * D * 4);
    bufs.dK = storageBuffer(device, BH * S * D * 4);
    bufs.dV = storageBuffer(device, BH * S * D * 4);
  }
  const fwd = await compilePlan(device, planAttentionForward(spec, limits));
  for (const [name, bytes] of Object.entries(fwd.plan.bindingBytes)) {
    assert.ok(bufs[name].size >= bytes, `${name} smaller than the plan needs`);
  }
  await runPlans(device, [fwd], bufs);
  const o = dec(await readBack(device, bufs.o, BH * Tq * D), Tq);
  const lse = await readBack(device, bufs.lse, BH * Tq);
  let dq: Float32Array = new Float32Array(0), dk = dq, dv = dq;
  if (!fwdOnly) {
    const bwd = await Promise.all(
      planAttentionBackward(spec, limits, bwdOptions).map((p) => compilePlan(device, p)),
    );
    await runPlans(device, bwd, bufs);
    if (layout === "packed_qkv") {
      [dq, dk, dv] = unpackQkv(await readBack(device, bufs.dqkv, 3 * BH * S * D), H, S, D);
    } else {
      dq = dec(await readBack(device, bufs.dQ, BH * Tq * D), Tq);
      dk = dec(await readBack(device, bufs.dK, BH * S * D), S);
      dv = dec(await readBack(device, bufs.dV, BH * S * D), S);
    }
  }
  for (const b of Object.values(bufs)) b.destroy();
  return { o, lse, dq, dk, dv };
}

function refSpec(spec: AttentionSpec, drop?: { seed: number; p: number }): RefSpec {
  return {
    BH: spec.batchHeads,
    Tq: spec.Tq,
    S: spec.S,
    D: spec.D,
    causal: spec.causal,
    scale: spec.scale,
    dropout: drop,
  };
}

/** Forward + backward of `spec` on the GPU vs the float64 reference. */
async function checkCase(
  spec: AttentionSpec,
  drop = { seed: 0, p: 0 },
  limitsOverride: Partial<AttentionLimits> = {},
  bwdOptions: { prefetch?: boolean } = {},
): Promise<void> {
  const x = makeInputs(spec, 17 * spec.Tq + spec.S);
  const got = await runGpu(spec, x, drop, limitsOverride, false, bwdOptions);
  const rs = refSpec(spec, drop);
  const want = attentionForwardRef(rs, x.q, x.k, x.v);
  const grads = attentionBackwardRef(rs, x.q, x.k, x.v, x.dO);
  const name = planAttentionForward(spec, { ...(await gpu()).limits }).label;
  expectClose(`${name}: O`, got.o, want.o, 2e-5);
  expectClose(`${name}: lse`, got.lse, want.lse, 2e-5);
  expectClose(`${name}: dQ`, got.dq, grads.dq, 5e-5, spec.S === 1);
  expectClose(`${name}: dK`, got.dk, grads.dk, 5e-5, spec.S === 1);
  expectClose(`${name}: dV`, got.dv, grads.dv, 5e-5);
}

// ---- tests ---------------------------------------------------------------------------

Deno.test("attention: full (tokenizer-like), prime T=37, D=64", opts, async () => {
  await checkCase({ batchHeads: 3, Tq: 37, S: 37, D: 64, causal: false });
});

Deno.test("attention: causal, bthd layout, T=80 (several query blocks)", opts, async () => {
  await checkCase({ batchHeads: 4, heads: 2, Tq: 80, S: 80, D: 64, causal: true, layout: "bthd" });
});

Deno.test("attention: causal with offset (KV-cache), Tq=5 of S=37", opts, async () => {
  await checkCase({ batchHeads: 2, Tq: 5, S: 37, D: 64, causal: true });
});

Deno.test("attention: decode Tq=1 of S=23, and T=1", opts, async () => {
  await checkCase({ batchHeads: 3, Tq: 1, S: 23, D: 64, causal: true });
  await checkCase({ batchHeads: 2, Tq: 1, S: 1, D: 64, causal: true });
  await checkCase({ batchHeads: 2, Tq: 1, S: 1, D: 64, causal: false });
});

Deno.test("attention: full attention with Tq < S, custom scale, D=32", opts, async () => {
  await checkCase({ batchHeads: 2, Tq: 11, S: 29, D: 32, causal: false, scale: 0.3 });
});

Deno.test(
  "attention: JOWA shapes: causal T=296 (bthd), tokenizer 6x6 full + dropout",
  opts,
  async () => {
    await checkCase({
      batchHeads: 2,
      heads: 2,
      Tq: 296,
      S: 296,
      D: 64,
      causal: true,
      layout: "bthd",
    });
    const tok: AttentionSpec = { batchHeads: 3, Tq: 36, S: 36, D: 64, causal: false, dropout: 0.1 };
    await checkCase(tok, { seed: 77, p: 0.1 });
  },
);

Deno.test(
  "attention: offset spanning several query blocks (Tq=70 of S=100), D=128",
  opts,
  async () => {
    await checkCase({ batchHeads: 2, Tq: 70, S: 100, D: 64, causal: true });
    await checkCase({ batchHeads: 1, Tq: 9, S: 19, D: 128, causal: true, dropout: 0.2 }, {
      seed: 3,
      p: 0.2,
    });
  },
);

Deno.test(
  "attention: odd tile overrides (partial tiles everywhere), split 1/2/4, 1-4 rows/keys per thread",
  opts,
  async () => {
    const base: AttentionSpec = { batchHeads: 2, Tq: 20, S: 37, D: 64, causal: true, dropout: 0.1 };
    await checkCase({
      ...base,
      tiles: {
        forward: [16, 8],
        forwardRows: 2,
        dkdv: [8, 4],
        dkdvCols: 2,
        dq: [8, 8],
        dqRows: 2,
        split: 1,
      },
    }, {
      seed: 8,
      p: 0.1,
    });
    await checkCase({
      ...base,
      tiles: {
        forward: [9, 5],
        forwardRows: 3,
        dkdv: [12, 4],
        dkdvCols: 4,
        dq: [6, 4],
        dqRows: 2,
        split: 4,
      },
    }, {
      seed: 8,
      p: 0.1,
    });
    // One key / row per thread (R = 1), 2 groups, blocks that divide nothing.
    const r1: AttentionSpec = {
      ...base,
      tiles: { dkdv: [5, 6], dkdvCols: 1, dq: [7, 2], dqRows: 1, split: 2 },
    };
    await checkCase(r1, { seed: 8, p: 0.1 });
    // Tiles loaded between the barriers instead of prefetched into registers.
    await checkCase(r1, { seed: 8, p: 0.1 }, {}, { prefetch: false });
    const limits = (await gpu()).limits;
    assert.throws(() => planAttentionForward({ ...base, tiles: { split: 3 } }, limits), /divide/);
    assert.throws(
      () => planAttentionBackward({ ...base, tiles: { dkdvCols: 3 } }, limits),
      /1, 2 or 4 items per thread/,
    );
    assert.throws(
      () => planAttentionBackward({ ...base, tiles: { dq: [8, 6], split: 4 } }, limits),
      /backward dq tile 8,6 exceeds device limits/,
    );
    assert.throws(
      () => planAttentionForward({ ...base, tiles: { forward: [4096, 64] } }, limits),
      /exceeds device limits/,
    );
  },
);

Deno.test("attention: packed_qkv layout, causal with dropout", opts, async () => {
  const spec: AttentionSpec = {
    batchHeads: 4,
    heads: 2,
    Tq: 37,
    S: 37,
    D: 64,
    causal: true,
    dropout: 0.1,
    layout: "packed_qkv",
  };
  await checkCase(spec, { seed: 1234, p: 0.1 });
});

Deno.test(
  "attention backward (register-blocked): JOWA training shape T=296 packed + dropout; D=16",
  opts,
  async () => {
    // The 40M training step's backward (causal, dropout, packed qkv), at 2 heads.
    const jowa: AttentionSpec = {
      batchHeads: 2,
      heads: 2,
      Tq: 296,
      S: 296,
      D: 64,
      causal: true,
      dropout: 0.1,
      layout: "packed_qkv",
    };
    await checkCase(jowa, { seed: 31, p: 0.1 });
    // D = 16 (2 groups of 8 dims), T not a multiple of any block, causal and full.
    await checkCase({ batchHeads: 3, Tq: 45, S: 45, D: 16, causal: true, dropout: 0.2 }, {
      seed: 2,
      p: 0.2,
    });
    await checkCase({ batchHeads: 2, Tq: 33, S: 51, D: 16, causal: false });
    // 4 query rows per thread in the dK/dV scores (inner = 4 x G), 4 keys per thread in the dQ scores.
    await checkCase({ ...jowa, Tq: 53, S: 53, tiles: { dkdv: [16, 32], dq: [16, 32] } }, {
      seed: 4,
      p: 0.1,
    });
  },
);

Deno.test(
  "attention backward: deterministic, prefetch-independent, default tile under 32 KiB",
  opts,
  async () => {
    const spec: AttentionSpec = { batchHeads: 2, Tq: 41, S: 41, D: 64, causal: true, dropout: 0.1 };
    const x = makeInputs(spec, 9);
    const a = await runGpu(spec, x, { seed: 6, p: 0.1 });
    const b = await runGpu(spec, x, { seed: 6, p: 0.1 });
    assert.deepEqual([b.dq, b.dk, b.dv], [a.dq, a.dk, a.dv], "backward must be bit-reproducible");
    // Prefetching the next tile changes when data moves, not the arithmetic: same bits.
    const c = await runGpu(spec, x, { seed: 6, p: 0.1 }, {}, false, { prefetch: false });
    assert.deepEqual([c.dq, c.dk, c.dv], [a.dq, a.dk, a.dv], "prefetch on/off must agree");
    // The JOWA-40M step's shape plans the same kernels on lavapipe (32 KiB) and an H100 (48 KiB).
    const big: AttentionSpec = { ...spec, batchHeads: 512, heads: 8, Tq: 296, S: 296 };
    const codes = [32768, 49152].map((bytes) =>
      planAttentionBackward(big, {
        maxComputeWorkgroupStorageSize: bytes,
        maxComputeInvocationsPerWorkgroup: 256,
        maxComputeWorkgroupsPerDimension: 65535,
      })
    );
    assert.deepEqual(codes[0].map((p) => p.code), codes[1].map((p) => p.code));
    const [dq, dkdv] = codes[0];
    assert.match(dkdv.code, /32 keys x 16-query tiles, 4 keys x 8 dims per thread/);
    assert.match(dq.code, /32 rows x 16-key tiles, 4 rows x 8 dims per thread/);
    for (const p of [dkdv, dq]) {
      assert.match(p.code, /@workgroup_size\(64\)/);
      assert.equal(p.workgroups[0] * p.workgroups[1], 512 * Math.ceil(296 / 32), p.label);
    }
  },
);

Deno.test("attention: dropout with offset, p=0.3; p=0 at run time keeps all", opts, async () => {
  const spec: AttentionSpec = { batchHeads: 3, Tq: 7, S: 40, D: 64, causal: true, dropout: 0.3 };
  await checkCase(spec, { seed: 99, p: 0.3 });
  await checkCase(spec, { seed: 99, p: 0 });
});

Deno.test("attention: grid folded over a tiny maxComputeWorkgroupsPerDimension", opts, async () => {
  const spec: AttentionSpec = { batchHeads: 7, Tq: 37, S: 37, D: 32, causal: true, dropout: 0.1 };
  const limits = { ...(await gpu()).limits, maxComputeWorkgroupsPerDimension: 4 };
  const plans = [planAttentionForward(spec, limits), ...planAttentionBackward(spec, limits)];
  for (const p of plans) {
    assert.ok(p.workgroups.every((n) => n <= 4), `${p.label}: ${p.workgroups}`);
    assert.ok(p.workgroups[1] > 1, `${p.label}: expected a folded grid`);
  }
  await checkCase(spec, { seed: 5, p: 0.1 }, { maxComputeWorkgroupsPerDimension: 4 });
});

Deno.test(
  "attention: dropout mask on the GPU matches the TS hash; keep rate ~ 1-p",
  opts,
  async () => {
    // Q = 0 makes P uniform (1/S) and V = one-hot rows makes O[i][j] = keep_ij / (S (1 - p)),
    // so the GPU's mask can be read straight off O.
    const BH = 4, S = 64, D = 64, p = 0.1, seed = 4242;
    const spec: AttentionSpec = { batchHeads: BH, Tq: S, S, D, causal: false, dropout: p };
    const v = new Float32Array(BH * S * D);
    for (let bh = 0; bh < BH; bh++) for (let j = 0; j < S; j++) v[(bh * S + j) * D + j] = 1;
    const x = { q: new Float32Array(BH * S * D), k: randoms(BH * S * D, 3), v, dO: v };
    const { o } = await runGpu(spec, x, { seed, p }, {}, true);
    let kept = 0, mismatches = 0;
    const expectKept = 1 / (S * (1 - p));
    for (let bh = 0; bh < BH; bh++) {
      for (let i = 0; i < S; i++) {
        for (let j = 0; j < S; j++) {
          const val = o[(bh * S + i) * D + j];
          const gpuKeep = val > 0.5 * expectKept;
          if (gpuKeep) assert.ok(Math.abs(val - expectKept) < 1e-6 * S);
          else assert.equal(val, 0);
          kept += gpuKeep ? 1 : 0;
          if (gpuKeep !== dropoutKeep(seed, p, bh, i, j)) mismatches++;
        }
      }
    }
    assert.equal(mismatches, 0, "GPU dropout mask differs from dropoutKeep");
    const rate = kept / (BH * S * S);
    assert.ok(Math.abs(rate - (1 - p)) < 0.015, `keep rate ${rate} vs ${1 - p}`);

    const again = await runGpu(spec, x, { seed, p }, {}, true);
    assert.deepEqual(again.o, o, "same seed must give the same output");
    const other = await runGpu(spec, x, { seed: seed + 1, p }, {}, true);
    assert.notDeepEqual(other.o, o, "a different seed must give a different mask");
  },
);

Deno.test("attention: TS dropout hash statistics and threshold edge cases", () => {
  assert.equal(dropoutThreshold(0), 0);
  assert.equal(dropoutThreshold(0.5), 2 ** 31);
  assert.equal(dropoutThreshold(1), 4294967040); // saturates like WGSL's u32(f32)
  assert.equal(pcgHash(0), pcgHash(0));
  assert.notEqual(pcgHash(1), pcgHash(2));
  for (const p of [0.1, 0.5]) {
    let kept = 0;
    const n = 20000;
    for (let e = 0; e < n; e++) kept += dropoutKeep(7, p, e % 5, (e / 5) % 37 | 0, e % 41) ? 1 : 0;
    // Independent of (i, j) structure: also check per-key columns are not stuck.
    assert.ok(Math.abs(kept / n - (1 - p)) < 0.02, `p=${p}: keep rate ${kept / n}`);
  }
  let col0 = 0;
  for (let i = 0; i < 2000; i++) col0 += dropoutKeep(1, 0.5, 0, i, 0) ? 1 : 0;
  assert.ok(Math.abs(col0 / 2000 - 0.5) < 0.05, `column keep rate ${col0 / 2000}`);
});

Deno.test("attention reference: analytic gradients match central finite differences", () => {
  // Causal with an offset and dropout, so every term of the backward is exercised.
  const rs: RefSpec = {
    BH: 2,
    Tq: 4,
    S: 6,
    D: 8,
    causal: true,
    dropout: { seed: 11, p: 0.3 },
  };
  const n = (T: number) => rs.BH * T * rs.D;
  const q = Float64Array.from(randoms(n(rs.Tq), 1));
  const k = Float64Array.from(randoms(n(rs.S), 2));
  const v = Float64Array.from(randoms(n(rs.S), 3));
  const g = Float64Array.from(randoms(n(rs.Tq), 4));
  const loss = () => attentionForwardRef(rs, q, k, v).o.reduce((a, o, x) => a + o * g[x], 0);
  const grads = attentionBackwardRef(rs, q, k, v, g);
  const h = 1e-6;
  let checked = 0;
  for (const [x, dx] of [[q, grads.dq], [k, grads.dk], [v, grads.dv]] as const) {
    for (const idx of [0, 5, 17, x.length - 1, (x.length / 2) | 0]) {
      const keep = x[idx];
      x[idx] = keep + h;
      const up = loss();
      x[idx] = keep - h;
      const down = loss();
      x[idx] = keep;
      const fd = (up - down) / (2 * h);
      assert.ok(Math.abs(fd - dx[idx]) < 1e-7 + 1e-6 * Math.abs(fd), `fd ${fd} vs ${dx[idx]}`);
      checked += Math.abs(fd) > 1e-4 ? 1 : 0;
    }
  }
  assert.ok(checked >= 8, "too few non-zero gradient entries checked");
});

Deno.test("attention: plans expose bindings, reject bad specs", async () => {
  const limits = (await gpu()).limits;
  const spec: AttentionSpec = { batchHeads: 2, Tq: 8, S: 8, D: 64, causal: true };
  assert.deepEqual(planAttentionForward(spec, limits).bindings, [
    "q",
    "k",
    "v",
    "o",
    "lse",
    "params",
  ]);
  const packed = { ...spec, heads: 2, layout: "packed_qkv" as const };
  assert.deepEqual(planAttentionForward(packed, limits).bindings, ["qkv", "o", "lse", "params"]);
  // dQ first: it also writes delta = rowsum(dO * O), which dK/dV reads.
  assert.deepEqual(planAttentionBackward(packed, limits).map((p) => p.bindings), [
    ["qkv", "dO", "lse", "o", "params", "delta", "dqkv"],
    ["qkv", "dO", "lse", "delta", "params", "dqkv"],
  ]);
  assert.throws(() => planAttentionForward({ ...spec, D: 30 }, limits), /multiple of 4/);
  assert.throws(() => planAttentionForward({ ...spec, Tq: 9 }, limits), /Tq=9 > S=8/);
  assert.throws(() => planAttentionForward({ ...packed, Tq: 4 }, limits), /Tq == S/);
});
