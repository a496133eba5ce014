/**
 * The one gradient-check helper of the suite.
 *
 * Forward: the GPU op against a float64 CPU reference. Backward: the GPU's analytic
 * gradients of L = sum(w * f(x)) (w fixed and random, so every output element matters)
 * against central finite differences of the float64 reference — precise, no f32 noise.
 * Without a CPU reference, finite differences of the GPU function itself (looser).
 */
import { backward } from "../../kernels/core/autograd.ts";
import { readAll, type Tensor, tensor, tidy } from "../../kernels/core/tensor.ts";
import { mul, sumAll } from "../../kernels/ops/mod.ts";
import { assertClose, numel, randArray } from "./reference.ts";

/** One input: values (float64, already f32-representable) and a shape. */
export interface CheckInput {
  data: Float64Array | number[];
  shape: number[];
  /** Integer inputs (indices) are uploaded as i32 and never differentiated. */
  int?: boolean;
}

/** A float64 reference: takes the inputs' values, returns the output values and shape. */
export type CpuFn = (inputs: Float64Array[]) => Float64Array;

/** Options of `checkOp`. */
export interface CheckOptions {
  /** Forward tolerance. */
  atol?: number;
  rtol?: number;
  /** Gradient tolerance. */
  gradAtol?: number;
  gradRtol?: number;
  /** Finite-difference step. */
  eps?: number;
  /** Skip the gradient check (ops without a gradient). */
  noGrad?: boolean;
  seed?: number;
}

/** Check forward against `cpu` and backward against float64 finite differences of `cpu`. */
export async function checkOp(
  name: string,
  gpuFn: (xs: Tensor[]) => Tensor,
  cpu: CpuFn,
  inputs: CheckInput[],
  opts: CheckOptions = {},
): Promise<void> {
  const values = inputs.map((x) => Float64Array.from(x.data));
  const expected = cpu(values);
  const w = randArray(expected.length, opts.seed ?? 99, -1, 1);
  const { out, grads } = await gpuForwardBackward(gpuFn, inputs, w, !opts.noGrad);
  assertClose(out, expected, {
    atol: opts.atol ?? 1e-5,
    rtol: opts.rtol ?? 1e-4,
    what: `${name} forward`,
  });
  if (opts.noGrad) return;
  const eps = opts.eps ?? 1e-6;
  inputs.forEach((inp, k) => {
    if (inp.int) return;
    const numeric = new Float64Array(values[k].length);
    for (let i = 0; i < numeric.length; i++) {
      const saved = values[k][i];
      values[k][i] = saved + eps;
      const up = dot(cpu(values), w);
      values[k][i] = saved - eps;
      const down = dot(cpu(values), w);
      values[k][i] = saved;
      numeric[i] = (up - down) / (2 * eps);
    }
    assertClose(grads[k]!, numeric, {
      atol: opts.gradAtol ?? 1e-4,
      rtol: opts.gradRtol ?? 1e-3,
      what: `${name} gradient of input ${k}`,
    });
  });
}

/**
 * Central finite differences of the GPU function itself (f32), for composites without a
 * float64 reference. All perturbed evaluations are read back in one batch.
 */
export async function checkGradFiniteDiff(
  name: string,
  gpuFn: (xs: Tensor[]) => Tensor,
  inputs: CheckInput[],
  opts: { eps?: number; atol?: number; rtol?: number; seed?: number } = {},
): Promise<void> {
  const eps = opts.eps ?? 1e-2;
  const probe = tidy(() => gpuFn(upload(inputs, false)));
  const outN = probe.size;
  probe.dispose();
  const w = randArray(outN, opts.seed ?? 7, -1, 1);
  const { grads } = await gpuForwardBackward(gpuFn, inputs, w, true);
  for (let k = 0; k < inputs.length; k++) {
    if (inputs[k].int) continue;
    const n = inputs[k].data.length;
    const losses: Tensor[] = [];
    for (let i = 0; i < n; i++) {
      for (const sign of [1, -1]) {
        const pert = inputs.map((x, j) => {
          if (j !== k) return x;
          const d = Float64Array.from(x.data);
          d[i] += sign * eps;
          return { ...x, data: d };
        });
        losses.push(
          tidy(() =>
            sumAll(
              mul(
                gpuFn(upload(pert, false)),
                tensor(Float32Array.from(w), [outN]).view(probe.shape),
              ),
            )
          ),
        );
      }
    }
    const vals = await readAll(losses);
    losses.forEach((t) => t.dispose());
    const numeric = new Float64Array(n);
    for (let i = 0; i < n; i++) numeric[i] = (vals[2 * i][0] - vals[2 * i + 1][0]) / (2 * eps);
    assertClose(grads[k]!, numeric, {
      atol: opts.atol ?? 2e-2,
      rtol: opts.rtol ?? 2e-2,
      what: `${name} gradient of input ${k} (f32 finite differences)`,
    });
  }
}

function upload(inputs: CheckInput[], requiresGrad: boolean): Tensor[] {
  return inputs.map((x) => {
    const t = x.int
      ? tensor(Int32Array.from(x.data), x.shape, "i32")
      : tensor(Float32Array.from(x.data), x.shape);
    t.requiresGrad = requiresGrad && !x.int;
    return t;
  });
}

async function gpuForwardBackward(
  gpuFn: (xs: Tensor[]) => Tensor,
  inputs: CheckInput[],
  w: Float64Array,
  withGrad: boolean,
): Promise<{ out: Float32Array; grads: (Float32Array | null)[] }> {
  const xs = upload(inputs, withGrad);
  const y = tidy(() => {
    const y = gpuFn(xs);
    if (numel(y.shape) !== w.length) {
      throw new Error(`output has ${y.size} elements, reference ${w.length}`);
    }
    if (withGrad) backward(sumAll(mul(y, tensor(Float32Array.from(w), y.shape))));
    return y;
  });
  const toRead = [y, ...xs.filter((x) => x.grad).map((x) => x.grad!)];
  const vals = await readAll(toRead);
  let j = 1;
  const grads = xs.map((x) => (x.grad ? (vals[j++] as Float32Array) : null));
  for (const x of xs) {
    x.grad?.dispose();
    x.dispose();
  }
  y.dispose();
  return { out: vals[0] as Float32Array, grads };
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
