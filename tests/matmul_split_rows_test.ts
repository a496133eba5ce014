/**
 * The split-rows kernel (kernels/codegen/matmul/split_rows.ts): shape-generic inference
 * products of 17..1024 rows with a long K, K split inside each workgroup. Checked against
 * float64 references on awkward shapes (M = 17, 40, 130, 1000; N not a multiple of 4 and
 * <= 16; K not a multiple of 4 or of the slice), with every epilogue; under device limits that
 * force each variant (k-groups, one or two slice buffers, reduction rounds); no compile after
 * a kind's first product; bit-identical reruns; and the planner's grid and trips for the
 * JOWA-150M planning shapes.
 */
import assert from "node:assert/strict";
import { noGrad } from "../kernels/core/autograd.ts";
import { counterDelta, initRuntime } from "../kernels/core/runtime.ts";
import { setPlanVerification } from "../kernels/core/plan_cache.ts";
import { Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { matmul } from "../kernels/ops/mod.ts";
import { dimsBuffer } from "../kernels/ops/dims.ts";
import { type MatmulLimits, type MatmulSpec, planMatmul } from "../kernels/codegen/matmul/plan.ts";
import type { EpilogueActivation } from "../kernels/codegen/activation.ts";
import { randArray } from "./helpers/reference.ts";
import { erf64 } from "./helpers/cpu_ops.ts";

const rt = await initRuntime();
const GPU_TEST = { sanitizeOps: false, sanitizeResources: false };

const H200: MatmulLimits = {
  maxComputeWorkgroupStorageSize: 49152,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxComputeWorkgroupsPerDimension: 65535,
};

function f32(a: ArrayLike<number>): Float32Array {
  return Float32Array.from(a, Math.fround);
}

function act64(x: number, act?: EpilogueActivation): number {
  if (act === "relu") return Math.max(x, 0);
  if (act === "gelu_erf") return 0.5 * x * (1 + erf64(x / Math.SQRT2));
  if (act === "gelu") {
    return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  }
  return x;
}

interface Case {
  M: number;
  N: number;
  K: number;
  transB: boolean;
  bias: boolean;
  act?: EpilogueActivation;
  res: boolean;
}

/** Inputs of a case and the float64 reference of act(A·op(B) + bias) + residual. */
function inputs(c: Case, seed: number) {
  const a = f32(randArray(c.M * c.K, seed));
  const w = f32(randArray(c.N * c.K, seed + 1));
  const bias = f32(randArray(c.N, seed + 2));
  const res = f32(randArray(c.M * c.N, seed + 3));
  const want = new Float64Array(c.M * c.N);
  for (let m = 0; m < c.M; m++) {
    for (let n = 0; n < c.N; n++) {
      let s = c.bias ? bias[n] : 0;
      for (let k = 0; k < c.K; k++) {
        s += a[m * c.K + k] * (c.transB ? w[n * c.K + k] : w[k * c.N + n]);
      }
      want[m * c.N + n] = act64(s, c.act) + (c.res ? res[m * c.N + n] : 0);
    }
  }
  return { a, w, bias, res, want };
}

function close(got: ArrayLike<number>, want: ArrayLike<number>, K: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  const tol = 2e-6 * Math.sqrt(K);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    assert.ok(err <= tol * (1 + Math.abs(want[i])), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

function label(c: Case): string {
  return `${c.M}x${c.N}x${c.K}${c.transB ? " tB" : ""}${c.bias ? " bias" : ""}` +
    `${c.act ? " " + c.act : ""}${c.res ? " res" : ""}`;
}

/** Runs a case through the matmul op (inference: the shape-generic plan). */
async function viaOp(c: Case, x: ReturnType<typeof inputs>): Promise<Float32Array> {
  const y = noGrad(() =>
    tidy(() =>
      matmul(tensor(x.a, [c.M, c.K]), tensor(x.w, c.transB ? [c.N, c.K] : [c.K, c.N]), {
        transB: c.transB,
        bias: c.bias ? tensor(x.bias) : undefined,
        activation: c.act,
        residual: c.res ? tensor(x.res, [c.M, c.N]) : undefined,
      })
    )
  );
  const out = await y.read() as Float32Array;
  y.dispose();
  return out;
}

function specOf(c: Case): MatmulSpec {
  return {
    batch: 1,
    M: c.M,
    N: c.N,
    K: c.K,
    transA: false,
    transB: c.transB,
    aBatchStride: 0,
    bBatchStride: 0,
    bias: c.bias,
    activation: c.act,
    residual: c.res,
    dynamicM: true,
  };
}

Deno.test("split rows: the planner's grid and trips for the 150M planning GEMMs", () => {
  // [M, N, K, old workgroups, old slices per thread] (old: the plain 64-/32-wide tiles).
  const shapes = [
    [256, 768, 3072, 384, 24],
    [64, 768, 3072, 96, 24],
    [256, 2304, 768, 1152, 6],
    [256, 3072, 768, 1536, 6],
    [64, 3072, 768, 384, 6],
    [64, 768, 768, 96, 6],
  ];
  for (const [M, N, K, wgs, trips] of shapes) {
    const c: Case = { M, N, K, transB: true, bias: true, res: N === 768 };
    const plan = planMatmul(specOf(c), H200);
    assert.ok(plan.splitRows, `${label(c)}: split rows`);
    assert.equal(plan.workgroups[0] * plan.workgroups[1] * plan.workgroups[2], wgs, label(c));
    assert.equal(Math.ceil(K / plan.tile.TK / plan.splitRows.S), trips, label(c));
    const threads = plan.splitRows.S * (plan.tile.TM / plan.tile.RM) *
      (plan.tile.TN / plan.tile.RN);
    assert.equal(threads, 256, label(c));
    // The WGSL does not depend on M within the bucket.
    for (const other of [17, 1024]) {
      assert.equal(planMatmul(specOf({ ...c, M: other }), H200).code, plan.code, label(c));
    }
  }
  // Short K, and rows outside the bucket, keep the plain kernel.
  const plain = (c: Case) => planMatmul(specOf(c), H200).splitRows;
  assert.equal(plain({ M: 256, N: 768, K: 256, transB: true, bias: true, res: false }), undefined);
  assert.equal(
    plain({ M: 2048, N: 768, K: 3072, transB: true, bias: true, res: false }),
    undefined,
  );
  assert.equal(plain({ M: 8, N: 8, K: 3072, transB: true, bias: true, res: false }), undefined);
});

Deno.test(
  "split rows, matmul op: f64 reference on awkward shapes, no compile after a kind's first",
  GPU_TEST,
  async () => {
    // [N, K, transB, bias, activation, residual]: N = 3 (32 x 16 tile, scalar C), 36, 50
    // (scalar C), K = 300 (a partial slice, 18 full ones: ragged trips), 517 (scalar A), 272.
    const kinds: [number, number, boolean, boolean, EpilogueActivation | undefined, boolean][] = [
      [36, 300, true, true, undefined, false],
      [50, 517, true, true, "relu", true],
      [3, 272, true, false, "gelu_erf", false],
      [20, 301, false, true, "gelu", true],
    ];
    for (const [ki, [N, K, transB, bias, act, res]] of kinds.entries()) {
      const Ms = ki === 0 ? [40, 17, 130, 1000, 1030] : [17, 130, 40];
      for (const [i, M] of Ms.entries()) {
        const c: Case = { M, N, K, transB, bias, act, res };
        assert.equal(!!planMatmul(specOf(c), rt.ctx.limits).splitRows, M <= 1024, label(c));
        const x = inputs(c, 10 * M + N);
        const before = rt.counters();
        const verify = setPlanVerification(true);
        let out: Float32Array;
        try {
          out = await viaOp(c, x);
        } finally {
          setPlanVerification(verify);
        }
        const n = counterDelta(before, rt.counters()).pipelinesCompiled;
        if (i > 0) assert.equal(n, 0, `${label(c)}: compiled ${n} pipelines`);
        else assert.ok(n >= 1, "the first product compiles (the counter works)");
        close(out, x.want, K, label(c));
        // Fixed summation order: a rerun is bit-identical.
        assert.deepEqual(await viaOp(c, x), out, `${label(c)}: rerun`);
      }
    }
  },
);

Deno.test(
  "split rows: k-groups, slice buffers and reduction rounds under smaller device limits",
  GPU_TEST,
  async () => {
    const variants: [Partial<MatmulLimits>, { S: number; buffers: number; P: number }][] = [
      [{}, { S: 8, buffers: 1, P: 4 }],
      [{ maxComputeWorkgroupStorageSize: 26624 }, { S: 8, buffers: 1, P: 1 }],
      [{ maxComputeInvocationsPerWorkgroup: 128 }, { S: 4, buffers: 2, P: 3 }],
      [
        { maxComputeInvocationsPerWorkgroup: 64, maxComputeWorkgroupStorageSize: 16384 },
        { S: 2, buffers: 2, P: 1 },
      ],
    ];
    const base: MatmulLimits = {
      maxComputeWorkgroupStorageSize: 32768,
      maxComputeInvocationsPerWorkgroup: 256,
      maxComputeWorkgroupsPerDimension: 65535,
    };
    // K = 300: 18 full slices (ragged over 4 and 8 k-groups) and a partial one.
    const c: Case = { M: 45, N: 38, K: 300, transB: true, bias: true, act: "relu", res: true };
    const x = inputs(c, 77);
    for (const [lim, want] of variants) {
      const limits = { ...base, ...lim };
      const plan = planMatmul(specOf(c), limits);
      assert.deepEqual(plan.splitRows, want, JSON.stringify(lim));
      const out = Tensor.empty([c.M, c.N], "f32");
      const ts = [
        tensor(x.a, [c.M, c.K]),
        tensor(x.w, [c.N, c.K]),
        out,
        tensor(x.bias),
        tensor(x.res, [c.M, c.N]),
      ];
      rt.dispatch(plan, [...ts.map((t) => t.buffer), dimsBuffer(c.M)]);
      close(await out.read() as Float32Array, x.want, c.K, `${label(c)} ${JSON.stringify(lim)}`);
      ts.forEach((t) => t.dispose());
    }
  },
);
