/**
 * LPIPS-VGG16 (models/tokenizer/lpips.ts) with a randomly initialised weights file written in the
 * documented names and shapes (no torch): the first two layer terms (conv1_1, conv1_2 ->
 * head 0; pool, conv2_1, conv2_2 -> head 1) against a float64 CPU reference, the distance as
 * the sum of the five terms, d(x, x) = 0, and a clear error for a file with a wrong name.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readAll, tensor } from "../kernels/core/tensor.ts";
import { writeSafetensors } from "../models/safetensors/mod.ts";
import { Lpips, lpipsParameterShapes } from "../models/tokenizer/lpips.ts";
import { conv2dRef, type Img } from "./helpers/cpu_tokenizer_ops.ts";
import { assertClose, randArray, rng } from "./helpers/reference.ts";

await initRuntime();

const SHIFT = [-0.030, -0.088, -0.188];
const SCALE = [0.458, 0.448, 0.450];

/** Random weights: He-scaled convolutions (activations keep their size), positive heads. */
function randomWeights(seed: number): Map<string, { shape: number[]; data: Float32Array }> {
  const r = rng(seed);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, shape] of lpipsParameterShapes()) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (name.startsWith("lin")) { for (let i = 0; i < n; i++) data[i] = r(); }
    else if (name.endsWith("bias")) { for (let i = 0; i < n; i++) data[i] = 0.1 * (r() - 0.5); }
    else {
      const bound = Math.sqrt(6 / (shape[1] * 9));
      for (let i = 0; i < n; i++) data[i] = (2 * r() - 1) * bound;
    }
    out.set(name, { shape, data });
  }
  return out;
}

function relu(x: Img): Img {
  return { data: x.data.map((v) => Math.max(0, v)), shape: x.shape };
}

function pool(x: Img): Img {
  const [N, C, H, W] = x.shape;
  const out = new Float64Array(N * C * (H / 2) * (W / 2));
  for (let p = 0; p < N * C; p++) {
    for (let y = 0; y < H / 2; y++) {
      for (let xx = 0; xx < W / 2; xx++) {
        let m = -Infinity;
        for (let d = 0; d < 4; d++) {
          m = Math.max(m, x.data[(p * H + 2 * y + (d >> 1)) * W + 2 * xx + (d & 1)]);
        }
        out[(p * H / 2 + y) * W / 2 + xx] = m;
      }
    }
  }
  return { data: out, shape: [N, C, H / 2, W / 2] };
}

/** Head term of one tapped layer: spatial mean of sum_c w_c (xhat - yhat)^2, per image. */
function headTerm(a: Img, b: Img, w: Float32Array): number[] {
  const [N, C, H, W] = a.shape;
  const out: number[] = [];
  for (let n = 0; n < N; n++) {
    let s = 0;
    for (let p = 0; p < H * W; p++) {
      let na = 0, nb = 0;
      for (let c = 0; c < C; c++) {
        na += a.data[(n * C + c) * H * W + p] ** 2;
        nb += b.data[(n * C + c) * H * W + p] ** 2;
      }
      na = Math.sqrt(na) + 1e-10;
      nb = Math.sqrt(nb) + 1e-10;
      for (let c = 0; c < C; c++) {
        const i = (n * C + c) * H * W + p;
        s += w[c] * (a.data[i] / na - b.data[i] / nb) ** 2;
      }
    }
    out.push(s / (H * W));
  }
  return out;
}

/** The first two LPIPS terms in float64. */
function cpuFirstTwo(
  frames: Float64Array,
  N: number,
  R: number,
  wts: ReturnType<typeof randomWeights>,
) {
  const conv = (x: Img, i: number) => {
    const w = wts.get(`vgg.features.${i}.weight`)!;
    return relu(
      conv2dRef(
        x,
        w.data,
        w.shape as [number, number, number, number],
        wts.get(`vgg.features.${i}.bias`)!.data,
        1,
        [1, 1, 1, 1],
      ),
    );
  };
  const rgb = new Float64Array(N * 3 * R * R);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < R * R; p++) {
        rgb[(n * 3 + c) * R * R + p] = (frames[n * R * R + p] - SHIFT[c]) / SCALE[c];
      }
    }
  }
  const f1 = conv(conv({ data: rgb, shape: [N, 3, R, R] }, 0), 2);
  const f2 = conv(conv(pool(f1), 5), 7);
  return [f1, f2];
}

Deno.test("LPIPS-VGG16 from a safetensors file matches a float64 reference on its first two layers", async () => {
  const wts = randomWeights(1);
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    await writeSafetensors(
      path,
      Object.fromEntries(
        [...wts].map(([n, v]) => [n, { dtype: "F32" as const, shape: v.shape, data: v.data }]),
      ),
    );
    const lpips = await Lpips.load(path);
    const N = 2, R = 16;
    const x = randArray(N * R * R, 2);
    const y = Float64Array.from(
      x,
      (v, i) => Math.fround(Math.max(-1, Math.min(1, v + 0.3 * Math.sin(i)))),
    );
    const xt = tensor(Float32Array.from(x), [N, 1, R, R]);
    const yt = tensor(Float32Array.from(y), [N, 1, R, R]);
    const terms = lpips.layerDistances(xt, yt);
    const dist = lpips.distance(xt, yt);
    const self = lpips.distance(xt, xt);
    const vals = await readAll([...terms, dist, self]);
    const [fx1, fx2] = cpuFirstTwo(x, N, R, wts);
    const [fy1, fy2] = cpuFirstTwo(y, N, R, wts);
    assertClose(vals[0], headTerm(fx1, fy1, wts.get("lin0.weight")!.data), {
      atol: 1e-6,
      rtol: 1e-4,
      what: "relu1_2 term",
    });
    assertClose(vals[1], headTerm(fx2, fy2, wts.get("lin1.weight")!.data), {
      atol: 1e-6,
      rtol: 1e-4,
      what: "relu2_2 term",
    });
    const total = [0, 1].map((n) => vals.slice(0, 5).reduce((s, v) => s + v[n], 0));
    assertClose(vals[5], total, { atol: 1e-6, rtol: 1e-5, what: "distance = sum of the terms" });
    assert.ok(
      vals.slice(0, 5).every((v) => v.every((d) => Number.isFinite(d) && d > 0)),
      "terms positive",
    );
    assertClose(vals[6], [0, 0], { atol: 1e-7, what: "d(x, x)" });
    lpips.dispose();
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("LPIPS rejects a weights file with a misnamed tensor", () => {
  const wts = randomWeights(2);
  const lin = wts.get("lin4.weight")!;
  wts.delete("lin4.weight");
  wts.set("lin5.weight", lin);
  assert.throws(() => new Lpips(wts), /lin4\.weight/);
});
