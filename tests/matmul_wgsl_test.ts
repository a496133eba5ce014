import { mulberry32 } from "../util/rng.ts";
/**
 * Generated matmul shaders, dispatched through raw WebGPU, against a float64 CPU reference.
 *
 * Shapes stay small (<= ~300) because lavapipe runs these on the CPU.
 */

import assert from "node:assert/strict";
import { gpu } from "../kernels/core/device.ts";
import {
  LONG_K_TILE,
  MATMUL_TILES,
  type MatmulLimits,
  type MatmulPlan,
  type MatmulSpec,
  type MatmulTile,
  planMatmul,
} from "../kernels/codegen/matmul/plan.ts";
import { grid } from "../kernels/codegen/wgsl.ts";
import { bindMatmul, compileMatmul, encodeMatmul } from "./helpers/matmul_pipeline.ts";

const GPU_TEST = { sanitizeOps: false, sanitizeResources: false };

/** Deterministic uniform [-1, 1) generator so failures reproduce. */
function random(seed: number): () => number {
  const r = mulberry32(seed);
  return () => r() * 2 - 1;
}

function fill(n: number, rand: () => number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rand();
  return out;
}

interface Inputs {
  a: Float32Array<ArrayBuffer>;
  b: Float32Array<ArrayBuffer>;
  c: Float32Array<ArrayBuffer>;
  bias: Float32Array<ArrayBuffer>;
}

function makeInputs(spec: MatmulSpec, plan: MatmulPlan, seed: number): Inputs {
  const rand = random(seed);
  return {
    a: fill(plan.bindingBytes.a / 4, rand),
    b: fill(plan.bindingBytes.b / 4, rand),
    // Nonzero C also catches kernels that accumulate when they should overwrite.
    c: fill(plan.bindingBytes.c / 4, rand),
    bias: fill(spec.bias ? spec.N : 0, rand),
  };
}

/** float64 reference: the expected C and, per element, sum |a·b| for the error bound. */
function reference(spec: MatmulSpec, x: Inputs): { c: Float64Array; mag: Float64Array } {
  const { batch, M, N, K } = spec;
  const c = new Float64Array(batch * M * N);
  const mag = new Float64Array(batch * M * N);
  for (let bt = 0; bt < batch; bt++) {
    const ao = bt * spec.aBatchStride, bo = bt * spec.bBatchStride;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0, abs = 0;
        for (let k = 0; k < K; k++) {
          const av = x.a[ao + (spec.transA ? k * M + m : m * K + k)];
          const bv = x.b[bo + (spec.transB ? n * K + k : k * N + n)];
          s += av * bv;
          abs += Math.abs(av * bv);
        }
        const i = (bt * M + m) * N + n;
        if (spec.bias) s += x.bias[n];
        if (spec.accumulate) s += x.c[i];
        c[i] = s;
        mag[i] = abs + 1;
      }
    }
  }
  return { c, mag };
}

/** First element outside tolerance, or null. The bound grows with K (f32 summation error). */
function mismatch(spec: MatmulSpec, got: Float32Array, want: ReturnType<typeof reference>) {
  const eps = 2 ** -23;
  for (let i = 0; i < want.c.length; i++) {
    const tol = 2 * (spec.K + 4) * eps * want.mag[i];
    if (!(Math.abs(got[i] - want.c[i]) <= tol)) {
      return `element ${i}: got ${got[i]}, want ${want.c[i]} (tol ${tol.toExponential(2)})`;
    }
  }
  return null;
}

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;

/** Compiles, dispatches and reads back one plan. */
async function runPlan(plan: MatmulPlan, x: Inputs): Promise<Float32Array> {
  const { device } = await gpu();
  const upload = (data: Float32Array<ArrayBuffer>) => {
    const buffer = device.createBuffer({ size: Math.max(16, data.byteLength), usage: USAGE });
    // Deno panics on a zero-length writeBuffer.
    if (data.length > 0) device.queue.writeBuffer(buffer, 0, data);
    return buffer;
  };
  const buffers = {
    a: upload(x.a),
    b: upload(x.b),
    c: upload(x.c),
    bias: upload(x.bias),
    // Garbage in the scratch must not leak into the result.
    scratch: upload(new Float32Array((plan.splitK?.scratchBytes ?? 0) / 4).fill(1e30)),
  };
  const readback = device.createBuffer({
    size: x.c.byteLength,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    const compiled = await compileMatmul(device, plan);
    device.pushErrorScope("validation");
    const bindGroups = bindMatmul(device, compiled, buffers);
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    encodeMatmul(pass, compiled, bindGroups);
    pass.end();
    encoder.copyBufferToBuffer(buffers.c, 0, readback, 0, x.c.byteLength);
    device.queue.submit([encoder.finish()]);
    const error = await device.popErrorScope();
    if (error) throw new Error(`${plan.label}: dispatch failed: ${error.message}`);
    await readback.mapAsync(GPUMapMode.READ);
    return new Float32Array(readback.getMappedRange().slice(0));
  } finally {
    for (const b of Object.values(buffers)) b.destroy();
    readback.destroy();
  }
}

interface Case {
  spec: MatmulSpec;
  tile?: MatmulTile;
  limits?: Partial<MatmulLimits>;
}

let seedCounter = 1;

/** Runs one case and asserts it matches the reference. */
async function check({ spec, tile, limits }: Case): Promise<MatmulPlan> {
  const ctx = await gpu();
  const plan = planMatmul(spec, { ...ctx.limits, ...limits }, tile);
  const seed = seedCounter++;
  const x = makeInputs(spec, plan, seed);
  const got = await runPlan(plan, x);
  const bad = mismatch(spec, got, reference(spec, x));
  const t = plan.tile;
  assert.equal(bad, null, `${plan.label} tile ${t.TM}x${t.TN}x${t.TK} seed ${seed}: ${bad}`);
  return plan;
}

/** A plain spec with contiguous batches. */
function mm(
  M: number,
  N: number,
  K: number,
  transA = false,
  transB = false,
  extra: Partial<MatmulSpec> = {},
): MatmulSpec {
  const batch = extra.batch ?? 1;
  return {
    batch,
    M,
    N,
    K,
    transA,
    transB,
    aBatchStride: M * K,
    bBatchStride: K * N,
    ...extra,
  };
}

const COMBOS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

Deno.test("matmul: all transpose combos on awkward shapes", GPU_TEST, async () => {
  // Primes (scalar loads), multiples of 4 with edge tiles (vec4 loads), and 1x1x1.
  const shapes = [[37, 53, 29], [64, 48, 40], [1, 1, 1], [7, 300, 12], [300, 5, 17]];
  for (const [tA, tB] of COMBOS) {
    for (const [M, N, K] of shapes) await check({ spec: mm(M, N, K, tA, tB) });
  }
});

Deno.test("matmul: every tile on edges in M, N and K", GPU_TEST, async () => {
  // General tiles with vec4 and with scalar paths; skinny tiles (same code, other sizes)
  // alternate between the two. Transposes cycle.
  let i = 0;
  for (const [t, tile] of MATMUL_TILES.entries()) {
    const general = tile.TM >= 32 && tile.TN >= 32;
    const M = tile.TM + 4, N = tile.TN + 8;
    if (general || t % 2 === 0) {
      const [tA, tB] = COMBOS[i++ % 4];
      await check({ spec: mm(M, N, 2 * tile.TK + 4, tA, tB), tile });
    }
    if (general || t % 2 === 1) {
      const [uA, uB] = COMBOS[i++ % 4];
      await check({ spec: mm(M + 1, N - 3, tile.TK + 3, uA, uB), tile });
    }
  }
});

Deno.test("matmul: the long-K tile on edges in M, N and K, all transposes", GPU_TEST, async () => {
  const tile = LONG_K_TILE;
  for (const [i, [tA, tB]] of COMBOS.entries()) {
    // Two full 32-deep slices plus a tail, edge tiles in M and N; then exact multiples.
    const extra = { bias: i % 2 === 1 }; // training's B^T + bias among them
    await check({
      spec: mm(tile.TM + 4 + i, tile.TN - 3 + 2 * i, 2 * tile.TK + 5, tA, tB, extra),
      tile,
    });
  }
  const plan = await check({
    spec: mm(tile.TM, 2 * tile.TN, 3 * tile.TK),
    tile,
    limits: { maxComputeWorkgroupStorageSize: 32768 },
  });
  assert.equal(plan.sharedBuffers, 1, "double-buffered it needs 64 KiB of workgroup memory");
});

Deno.test("matmul: exact tile multiples take the unguarded path", GPU_TEST, async () => {
  const tile = MATMUL_TILES[0];
  for (const [tA, tB] of COMBOS) {
    const plan = await check({ spec: mm(2 * tile.TM, tile.TN, 2 * tile.TK, tA, tB), tile });
    assert.doesNotMatch(plan.code, /ok =|if \(tm </, "no edge tiles, so no bounds tests");
  }
});

Deno.test("matmul: single and double buffered k-slices", GPU_TEST, async () => {
  for (const tile of [MATMUL_TILES[0], MATMUL_TILES[4]]) {
    const bytes = (tile.TM + tile.TN) * tile.TK * 4;
    // Room for exactly one buffer: the loop needs its second barrier.
    const single = await check({
      spec: mm(tile.TM + 3, tile.TN, 3 * tile.TK + 5, true, false),
      tile,
      limits: { maxComputeWorkgroupStorageSize: bytes },
    });
    assert.equal(single.sharedBuffers, 1);
    // Odd and even numbers of full slices, so the tail lands in either buffer.
    for (const slices of [3, 4]) {
      const double = await check({
        spec: mm(tile.TM - 5, tile.TN + 1, slices * tile.TK + 4, false, true),
        tile,
        limits: { maxComputeWorkgroupStorageSize: 2 * bytes },
      });
      assert.equal(double.sharedBuffers, 2);
    }
  }
});

Deno.test("matmul: K smaller than the tile depth, and K = 1", GPU_TEST, async () => {
  for (const [tA, tB] of COMBOS) {
    await check({ spec: mm(33, 34, 3, tA, tB) });
    await check({ spec: mm(20, 9, 1, tA, tB) });
  }
});

Deno.test("matmul: batches, broadcast and padded strides", GPU_TEST, async () => {
  const [M, N, K] = [19, 36, 24];
  for (const [tA, tB] of COMBOS) {
    await check({ spec: mm(M, N, K, tA, tB, { batch: 3 }) });
    // One A (weights) broadcast over the batch, and one B.
    await check({ spec: mm(M, N, K, tA, tB, { batch: 4, aBatchStride: 0 }) });
    await check({ spec: mm(M, N, K, tA, tB, { batch: 2, bBatchStride: 0 }) });
  }
  // Strides with padding between matrices; odd stride forces scalar loads.
  await check({ spec: mm(16, 20, 12, false, false, { batch: 3, aBatchStride: 200 }) });
  await check({ spec: mm(16, 20, 12, true, true, { batch: 2, bBatchStride: 241 }) });
});

Deno.test("matmul: accumulate and bias epilogues", GPU_TEST, async () => {
  for (const [tA, tB] of COMBOS) {
    await check({ spec: mm(45, 40, 20, tA, tB, { accumulate: true }) });
    await check({ spec: mm(45, 41, 20, tA, tB, { bias: true }) });
  }
  for (const [tA, tB] of [COMBOS[0], COMBOS[3]]) {
    await check({ spec: mm(33, 64, 17, tA, tB, { batch: 2, accumulate: true, bias: true }) });
  }
});

Deno.test("matmul: moderately large shapes", GPU_TEST, async () => {
  await check({ spec: mm(256, 256, 256) });
  await check({ spec: mm(131, 257, 300, true, false) });
  await check({ spec: mm(260, 130, 96, false, true), tile: MATMUL_TILES[0] });
});

Deno.test("matmul: grid folding past the per-dimension workgroup limit", GPU_TEST, async () => {
  // A fake limit of 5 forces x, y and z, and an over-dispatch that must be skipped.
  const plan = await check({
    spec: mm(70, 40, 8, false, false, { batch: 5 }),
    tile: MATMUL_TILES[4],
    limits: { maxComputeWorkgroupsPerDimension: 5 },
  });
  assert.ok(plan.workgroups.every((w) => w <= 5), `workgroups ${plan.workgroups}`);
  assert.ok(plan.workgroups[2] > 1);
});

Deno.test("matmul: grid folding covers every workgroup within the limit", () => {
  for (const [total, max] of [[1, 65535], [65535, 65535], [65536, 65535], [1e9, 65535], [26, 5]]) {
    const [x, y, z] = grid(total, max);
    assert.ok(x <= max && y <= max && z <= max);
    assert.ok(x * y * z >= total);
    // Not wildly over-dispatched: at most one extra row of x*y.
    assert.ok(x * y * (z - 1) < total);
  }
  // Balanced: 70000 = 2 x 35000 exactly; kernels that ignore wid.z refuse a third dimension.
  assert.deepStrictEqual(grid(70000), [35000, 2, 1]);
  assert.deepStrictEqual(grid(0), [0, 1, 1]);
  assert.throws(() => grid(26, 5, 2), /26 workgroups exceed the dispatch limit of 5\^2/);
});

Deno.test("matmul: planner picks big tiles for big shapes, skinny for decode", () => {
  const limits = {
    maxComputeWorkgroupStorageSize: 32768,
    maxComputeInvocationsPerWorkgroup: 1024,
    maxComputeWorkgroupsPerDimension: 65535,
  };
  const tileOf = (s: MatmulSpec) => planMatmul(s, limits).tile;
  const tileOf2 = (s: MatmulSpec, l: MatmulLimits) => planMatmul(s, l).tile;
  // K >= 2048: the same tile 32 deep (measured faster on an H200); K = 512 keeps 16.
  assert.deepEqual(tileOf(mm(4096, 4096, 4096)), LONG_K_TILE);
  assert.deepEqual(tileOf(mm(18944, 512, 2048, false, true)), LONG_K_TILE);
  assert.deepEqual(tileOf(mm(18944, 2048, 512, false, true)), MATMUL_TILES[0]);
  assert.deepEqual(
    tileOf2(mm(4096, 4096, 4096), { ...limits, maxComputeWorkgroupStorageSize: 16384 }),
    MATMUL_TILES[0],
  );
  // Decode rows: the skinny kernel for a long K, the 16-row tile for a short one.
  assert.ok(planMatmul(mm(1, 2048, 512), limits).skinny);
  assert.equal(tileOf(mm(1, 2048, 256)).TM, 16);
  assert.equal(tileOf(mm(2048, 3, 512)).TN, 16);
  // Device limits rule tiles out: 256-thread tiles, then tiles over 8 KiB of workgroup memory.
  const fewThreads = { ...limits, maxComputeInvocationsPerWorkgroup: 128 };
  assert.deepEqual(tileOf2(mm(4096, 4096, 4096), fewThreads), {
    TM: 64,
    TN: 64,
    TK: 16,
    RM: 4,
    RN: 8,
  });
  const littleMemory = { ...limits, maxComputeWorkgroupStorageSize: 8192 };
  assert.equal(tileOf2(mm(4096, 4096, 4096), littleMemory).TM, 64);
  assert.throws(() => planMatmul(mm(0, 4, 4), limits), /M must be >= 1/);
  // Split-K: weight-gradient shapes split, big outputs do not, and the default never splits.
  const dW = planMatmul(mm(512, 2048, 18944, true, false, { splitK: "auto" }), limits);
  assert.deepEqual(dW.tile, MATMUL_TILES[0]);
  assert.equal(dW.splitK?.parts, 4);
  assert.equal(
    planMatmul(mm(512, 512, 18944, true, false, { splitK: "auto" }), limits).splitK
      ?.parts,
    16,
  );
  assert.equal(
    planMatmul(mm(4096, 4096, 4096, false, false, { splitK: "auto" }), limits).splitK,
    undefined,
  );
  assert.equal(planMatmul(mm(512, 2048, 18944, true, false), limits).splitK, undefined);
  // Bias gradient as ones[1, R]·G[R, N]: little math but 155 MB to stream, so it splits.
  assert.equal(
    planMatmul(mm(1, 2048, 18944, false, false, { splitK: "auto" }), limits).splitK
      ?.parts,
    16,
  );
  // Too small for a second dispatch to pay off.
  assert.equal(
    planMatmul(mm(32, 32, 300, true, false, { splitK: "auto" }), limits).splitK,
    undefined,
  );
  assert.throws(() => planMatmul(mm(4, 4, 4, false, false, { splitK: 0 }), limits), /splitK/);
});

Deno.test("matmul: split-K partials, reduce, bias, accumulate", GPU_TEST, async () => {
  // Even split, uneven split with a tail in the last range, and a last range merged away.
  const cases: [number, number, number, number][] = [
    [40, 36, 256, 4],
    [33, 20, 197, 3],
    [17, 9, 70, 4],
  ];
  for (const [i, [M, N, K, parts]] of cases.entries()) {
    const [tA, tB] = COMBOS[i % 4];
    const plan = await check({ spec: mm(M, N, K, tA, tB, { splitK: parts }) });
    assert.ok(plan.splitK && plan.splitK.parts >= 2, `${plan.label} should split`);
  }
  for (const [tA, tB] of COMBOS) {
    await check({
      spec: mm(24, 44, 300, tA, tB, { splitK: 3, bias: true, accumulate: true, batch: 2 }),
    });
  }
  // The big tile, as "auto" picks it for weight gradients.
  const big = await check({
    spec: mm(130, 128, 200, true, false, { splitK: 3, bias: true }),
    tile: MATMUL_TILES[0],
  });
  assert.equal(big.splitK?.parts, 3);
});

Deno.test("matmul: the reference check rejects a wrong kernel", GPU_TEST, async () => {
  // Run the tB kernel but compare against the non-transposed reference: must mismatch.
  const ctx = await gpu();
  const spec = mm(20, 20, 20, false, true);
  const plan = planMatmul(spec, ctx.limits);
  const x = makeInputs(spec, plan, 99);
  const got = await runPlan(plan, x);
  assert.notEqual(mismatch(spec, got, reference({ ...spec, transB: false }, x)), null);
  assert.equal(mismatch(spec, got, reference(spec, x)), null);
});

Deno.test("matmul: shader errors surface with the plan label", GPU_TEST, async () => {
  const ctx = await gpu();
  const plan = planMatmul(mm(8, 8, 8), ctx.limits);
  const broken = { ...plan, code: plan.code.replace("fn main", "fn main_oops") };
  // The split-K reduction goes through the same check.
  const split = planMatmul(mm(8, 8, 64, false, false, { splitK: 2 }), ctx.limits);
  assert.ok(split.splitK);
  const badReduce = {
    ...split,
    splitK: { ...split.splitK, reduce: { ...split.splitK.reduce, code: "fn nope() {}" } },
  };
  await assert.rejects(compileMatmul(ctx.device, badReduce), /split-K reduce/);
  await assert.rejects(compileMatmul(ctx.device, broken), /matmul 8x8x8: shader compilation/);
  const invalid = { ...plan, code: plan.code + "\nfn oops() -> f32 { return true; }\n" };
  await assert.rejects(compileMatmul(ctx.device, invalid), /matmul 8x8x8/);
});
