/**
 * The f16-storage matmul (kernels/ops/matmul_f16.ts, generator kernels/codegen/matmul/f16.ts)
 * against a float64 reference computed on the f16-rounded inputs: the only error left is the
 * f32 accumulation, bounded by 2 K eps32 sum_k |a_ik b_kj| (plus the final f16 rounding for
 * f16 outputs). Awkward shapes (no multiple of the 64 x 64 tile or the 16-deep slice), all
 * transposes, batched and broadcast operands, epilogues, split K, gradients, the overflow.
 */
import assert from "node:assert/strict";
import { initRuntime, runtime } from "../kernels/core/runtime.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { backward, noGrad } from "../kernels/core/autograd.ts";
import { matmul, mul, sumAll } from "../kernels/ops/mod.ts";
import { matmulF16, registerF16Shadow } from "../kernels/ops/matmul_f16.ts";
import { checkF16Support, setPrecision } from "../kernels/core/precision.ts";
import { mulberry32 } from "../util/rng.ts";

await initRuntime();
const GPU_TEST = { sanitizeOps: false, sanitizeResources: false };
const HAS_F16 = runtime().ctx.hasF16;
const EPS32 = 2 ** -24;

function rand(n: number, seed: number, scale = 1): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

const h = (x: number) => Math.f16round(x);

/**
 * float64 op(A)·op(B) over f16-rounded inputs, batched (stride 0 broadcasts), with the
 * magnitude sum_k |a b| per output for the bound.
 */
function reference(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  s: {
    batch: number;
    M: number;
    N: number;
    K: number;
    tA: boolean;
    tB: boolean;
    aStride: number;
    bStride: number;
  },
): { c: Float64Array; mag: Float64Array } {
  const { batch, M, N, K, tA, tB } = s;
  const c = new Float64Array(batch * M * N);
  const mag = new Float64Array(batch * M * N);
  for (let q = 0; q < batch; q++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let acc = 0;
        let m = 0;
        for (let k = 0; k < K; k++) {
          const av = h(a[q * s.aStride + (tA ? k * M + i : i * K + k)]);
          const bv = h(b[q * s.bStride + (tB ? j * K + k : k * N + j)]);
          acc += av * bv;
          m += Math.abs(av * bv);
        }
        c[(q * M + i) * N + j] = acc;
        mag[(q * M + i) * N + j] = m;
      }
    }
  }
  return { c, mag };
}

function assertClose(
  got: ArrayLike<number>,
  want: Float64Array,
  mag: Float64Array,
  K: number,
  what: string,
  halfOut = false,
): void {
  assert.equal(got.length, want.length, what);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const tol = 2 * K * EPS32 * mag[i] + 1e-30 +
      (halfOut ? 2 ** -11 * Math.abs(want[i]) + 2 ** -24 : 0);
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= tol)) {
      assert.fail(`${what}: element ${i}: got ${got[i]}, want ${want[i]} (tolerance ${tol})`);
    }
    worst = Math.max(worst, err / (tol || 1));
  }
  assert.ok(worst <= 1, what);
}

Deno.test({
  name: "matmul f16: f32 operands rounded on load, all transposes, awkward 2-D shapes",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const [M, K, N] = [67, 45, 37];
    for (const tA of [false, true]) {
      for (const tB of [false, true]) {
        const a = rand(M * K, 1 + Number(tA));
        const b = rand(K * N, 3 + Number(tB));
        const got = await tidy(() =>
          matmulF16(
            tensor(a, tA ? [K, M] : [M, K]),
            tensor(b, tB ? [N, K] : [K, N]),
            { transA: tA, transB: tB },
          )
        ).read();
        const { c, mag } = reference(a, b, {
          batch: 1,
          M,
          N,
          K,
          tA,
          tB,
          aStride: 0,
          bStride: 0,
        });
        assertClose(got, c, mag, K, `tA ${tA} tB ${tB}`);
        // The f32 product differs: the test sees the f16 rounding of the inputs.
        const f32 = await tidy(() =>
          matmul(tensor(a, tA ? [K, M] : [M, K]), tensor(b, tB ? [N, K] : [K, N]), {
            transA: tA,
            transB: tB,
          })
        ).read();
        assert.ok(f32.some((v, i) => Math.abs(v - got[i]) > 1e-6), "f16 rounding visible");
      }
    }
  },
});

Deno.test({
  name: "matmul f16: f16 tensors, batch with a broadcast weight, bias + GELU + residual, f16 out",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const [B, M, K, N] = [3, 21, 70, 66];
    const a = rand(B * M * K, 5);
    const w = rand(N * K, 6);
    const bias = rand(N, 7);
    const res = rand(B * M * N, 8);
    const [f32Out, f16Out] = await readAll(tidy(() => {
      const at = tensor(a, [B, M, K], "f16");
      const wt = tensor(w, [N, K], "f16");
      const opts = {
        transB: true,
        bias: tensor(bias),
        activation: "gelu_erf" as const,
        residual: tensor(res, [B, M, N]),
      };
      return noGrad(() => [
        matmulF16(at, wt, opts),
        matmulF16(at, wt, { ...opts, outDtype: "f16" }),
      ]);
    }));
    const { c, mag } = reference(a, w, {
      batch: 1,
      M: B * M,
      N,
      K,
      tA: false,
      tB: true,
      aStride: 0,
      bStride: 0,
    });
    // Epilogue in float64: erf GELU by the Abramowitz-Stegun-free series via Math.
    const erf = (x: number) => {
      // erf from its Taylor series (|x| small) or continued fraction is overkill: use the
      // complementary function's numerical-recipes fit (relative error < 1.2e-7).
      const z = Math.abs(x);
      const t = 1 / (1 + 0.5 * z);
      const r = t * Math.exp(
        -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                      t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                                      t * (-0.82215223 + t * 0.17087277)))))))),
      );
      return x >= 0 ? 1 - r : r - 1;
    };
    const want = new Float64Array(c.length);
    const wantMag = new Float64Array(c.length);
    for (let i = 0; i < c.length; i++) {
      const x = c[i] + bias[i % N];
      want[i] = 0.5 * x * (1 + erf(x / Math.SQRT2)) + res[i];
      // GELU' <= 1.13; the erf fit adds ~1e-7 relative: widen the bound accordingly.
      wantMag[i] = 1.2 * mag[i] + (Math.abs(x) + Math.abs(res[i])) * 20;
    }
    assertClose(f32Out, want, wantMag, K, "f32 out");
    assertClose(f16Out, want, wantMag, K, "f16 out", true);
  },
});

Deno.test({
  name: "matmul f16: batched A^T x B with split K (long K, few tiles) equals the reference",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const [B, M, K, N] = [2, 5, 1500, 7];
    const a = rand(B * K * M, 11);
    const b = rand(B * K * N, 12);
    for (const splitK of ["auto", 3] as const) {
      const got = await tidy(() =>
        matmulF16(tensor(a, [B, K, M]), tensor(b, [B, K, N]), { transA: true, splitK })
      ).read();
      const { c, mag } = reference(a, b, {
        batch: B,
        M,
        N,
        K,
        tA: true,
        tB: false,
        aStride: K * M,
        bStride: K * N,
      });
      assertClose(got, c, mag, K, `split ${splitK}`);
    }
  },
});

Deno.test({
  name: "matmul f16: gradients (f32) through an f16 weight copy reach the f32 master",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const [B, T, K, N] = [2, 9, 19, 13];
    const x = rand(B * T * K, 21);
    const w = rand(N * K, 22);
    const r = rand(B * T * N, 23, 3);
    const wMaster = tensor(w, [N, K]);
    wMaster.requiresGrad = true;
    const bias = tensor(new Float32Array(N), [N]);
    bias.requiresGrad = true;
    // A copy that differs from the master's rounding proves the product reads the copy.
    const shadowVals = Float32Array.from(w, (v) => v + 0.5);
    registerF16Shadow(wMaster, tensor(shadowVals, [N, K], "f16"));
    const xt = tensor(x, [B, T, K]);
    xt.requiresGrad = true;
    const [y, gx, gw, gb] = await readAll(tidy(() => {
      const yt = matmulF16(xt, wMaster, { transB: true, bias });
      backward(sumAll(mul(yt, tensor(r, [B, T, N]))));
      return [yt, xt.grad!, wMaster.grad!, bias.grad!];
    }));
    const rows = B * T;
    const s = (M: number, N2: number, K2: number, tA: boolean, tB: boolean) => ({
      batch: 1,
      M,
      N: N2,
      K: K2,
      tA,
      tB,
      aStride: 0,
      bStride: 0,
    });
    const fwd = reference(x, shadowVals, s(rows, N, K, false, true));
    assertClose(y, fwd.c, fwd.mag, K, "forward reads the copy");
    const dx = reference(r, shadowVals, s(rows, K, N, false, false)); // G · W16
    assertClose(gx, dx.c, dx.mag, N, "dx");
    const dw = reference(r, x, s(N, K, rows, true, false)); // G^T · X
    assertClose(gw, dw.c, dw.mag, rows, "dW on the master");
    for (let j = 0; j < N; j++) {
      let acc = 0;
      for (let i = 0; i < rows; i++) acc += r[i * N + j];
      assert.ok(Math.abs(gb[j] - acc) < 1e-4, `dbias ${j}`);
    }
  },
});

Deno.test({
  name: "matmul f16: operands beyond the f16 range overflow to inf (the loss-scale guard's signal)",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const a = Float32Array.from([70000, 1, 1, 1]);
    const b = Float32Array.from([1, 0, 0, 1]);
    const got = await tidy(() => matmulF16(tensor(a, [2, 2]), tensor(b, [2, 2]))).read();
    assert.equal(got[0], Infinity);
    assert.equal(got[3], 1);
  },
});

Deno.test({
  name: "precision f16: matmul routes to the f16 path; a missing shader-f16 fails in one line",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const a = rand(33 * 17, 31);
    const b = rand(17 * 9, 32);
    const direct = await tidy(() => matmulF16(tensor(a, [33, 17]), tensor(b, [17, 9]))).read();
    setPrecision("f16", true);
    try {
      const routed = await tidy(() => matmul(tensor(a, [33, 17]), tensor(b, [17, 9]))).read();
      assert.deepEqual(routed, direct);
    } finally {
      setPrecision("f32", true);
    }
    assert.throws(() => checkF16Support(false), (e: Error) => {
      assert.match(e.message, /^--precision f16 needs a WebGPU adapter with the 'shader-f16'/);
      assert.ok(!e.message.includes("\n"));
      return true;
    });
    assert.throws(() => setPrecision("f16", false), /shader-f16/);
  },
});
