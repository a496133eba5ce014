/**
 * AdamW against a float64 transcription of torch.optim.AdamW (decoupled decay p *= 1 - lr*wd,
 * bias-corrected moments), with and without weight decay, with `noDecay`, a learning-rate
 * change between steps, and parameters without a gradient; global-norm clipping against
 * torch.nn.utils.clip_grad_norm_ (active and inactive), read from `opt.clipStats`.
 */
import assert from "node:assert/strict";
import { AdamW, type AdamWOptions } from "../kernels/nn/optim.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { keep, readAll, type Tensor, tensor } from "../kernels/core/tensor.ts";
import "../kernels/ops/mod.ts";
import { assertClose, numel, randArray } from "./helpers/reference.ts";
import { AdamWRef } from "./helpers/cpu_nn.ts";

await initRuntime();

/** Named parameters with random values; returns the tensors and float64 copies. */
function makeParams(specs: [string, number[]][], seed: number) {
  const values = specs.map(([, shape], k) => randArray(numel(shape), seed + k, -1, 1));
  const params = specs.map(([name, shape], k) => {
    const t = keep(tensor(Float32Array.from(values[k]), shape));
    t.requiresGrad = true;
    t.name = name;
    return t;
  });
  return { params, values };
}

/** Give each parameter (where `grads[k]` is not null) this gradient. */
function setGrads(params: readonly Tensor[], grads: (Float64Array | null)[]): void {
  params.forEach((p, k) => {
    p.grad?.dispose();
    p.grad = grads[k] ? keep(tensor(Float32Array.from(grads[k]!), p.shape)) : null;
  });
}

/**
 * Run `steps` AdamW steps on GPU and CPU with the same random gradients (scaled by
 * `gradScale`; null for parameters listed in `noGradFor`), compare parameters, moments and
 * clip statistics after every step. Returns the last step's reference [norm, scale].
 */
async function compare(
  specs: [string, number[]][],
  opts: AdamWOptions,
  steps: number,
  extra: { gradScale?: number; noGradFor?: string[]; lrAt?: Record<number, number> } = {},
): Promise<[number, number]> {
  const { params, values } = makeParams(specs, 100);
  const opt = new AdamW(params, opts);
  const decay = specs.map(([name]) => !(opts.noDecay?.(name) ?? false));
  const ref = new AdamWRef(values, { ...opts, decay });
  for (let s = 1; s <= steps; s++) {
    if (extra.lrAt?.[s] !== undefined) opt.lr = ref.opts.lr = extra.lrAt[s];
    const grads = specs.map(([name, shape], k) =>
      extra.noGradFor?.includes(name)
        ? null
        : randArray(numel(shape), 1000 * s + k, -1, 1).map((g) =>
          Math.fround(g * (extra.gradScale ?? 1))
        )
    );
    setGrads(params, grads);
    opt.update();
    // A parameter without a gradient is left alone by both (and its moments stay 0).
    ref.update(grads);
    const got = await readAll([
      ...params,
      opt.clipStats,
      ...opt.state.flatMap((st) => [st.m, st.v]),
    ]);
    specs.forEach(([name], k) => {
      const what = `step ${s} ${name}`;
      assertClose(got[k], ref.params[k], { atol: 2e-6, rtol: 1e-5, what });
      const [m, v] = [got[specs.length + 1 + 2 * k], got[specs.length + 2 + 2 * k]];
      assertClose(m, ref.m[k], { atol: 1e-6, rtol: 1e-5, what: `${what} m` });
      assertClose(v, ref.v[k], { atol: 1e-7, rtol: 1e-5, what: `${what} v` });
    });
    assertClose(got[specs.length], ref.clip, { atol: 1e-6, rtol: 1e-5, what: `step ${s} clip` });
  }
  assert.equal(opt.step, steps);
  opt.zeroGrad();
  assert.ok(params.every((p) => p.grad === null));
  opt.dispose();
  for (const p of params) p.dispose();
  return ref.clip;
}

const SPECS: [string, number[]][] = [["w", [3, 4]], ["b", [5]], ["ln.weight", [2, 3]]];

Deno.test("AdamW: 6 steps match torch.optim.AdamW (weight decay 0.1)", async () => {
  await compare(SPECS, { lr: 0.01, weightDecay: 0.1 }, 6);
});

Deno.test("AdamW: 6 steps without weight decay, non-default betas and eps", async () => {
  await compare(SPECS, { lr: 0.05, weightDecay: 0, beta1: 0.8, beta2: 0.95, eps: 1e-6 }, 6);
});

Deno.test("AdamW: noDecay exempts biases and norms; lr changed between steps", async () => {
  const noDecay = (n: string) => n === "b" || n.startsWith("ln.");
  await compare(SPECS, { lr: 0.02, weightDecay: 0.5, noDecay }, 4, { lrAt: { 3: 0.005 } });
});

Deno.test("AdamW: default weight decay is PyTorch's 0.01", async () => {
  await compare(SPECS.slice(0, 1), { lr: 0.1 }, 3);
});

Deno.test("AdamW: global-norm clipping, active (norm > max) and inactive", async () => {
  // Gradient norms here are around 2.5 * sqrt(n / 3): max 0.5 clips, max 1000 does not.
  const specs: [string, number[]][] = [["a", [5000]], ["b", [7]], ["c", [3, 3]]];
  const active = await compare(specs, { lr: 0.01, maxGradNorm: 0.5 }, 3, { gradScale: 2.5 });
  assert.ok(active[0] > 50 && active[1] < 0.01, `active clip ${active}`);
  const inactive = await compare(specs, { lr: 0.01, maxGradNorm: 1000 }, 2, { gradScale: 2.5 });
  assert.ok(inactive[0] > 50 && inactive[1] === 1, `inactive clip ${inactive}`);
});

Deno.test("AdamW: clipping over a parameter larger than 64 partial workgroups", async () => {
  await compare([["big", [140_000]], ["small", [3]]], { lr: 0.001, maxGradNorm: 1 }, 1);
});

Deno.test("AdamW: clipping skips parameters without a gradient", async () => {
  await compare(SPECS, { lr: 0.01, maxGradNorm: 0.3 }, 2, { noGradFor: ["b"] });
});

Deno.test("AdamW: clipStats is [0, 1] without maxGradNorm", async () => {
  const { params } = makeParams([["p", [4]]], 3);
  const opt = new AdamW(params, { lr: 0.1 });
  setGrads(params, [Float64Array.of(3, 4, 0, 0)]);
  opt.update();
  assert.deepEqual(Array.from(await opt.clipStats.read()), [0, 1]);
  opt.zeroGrad();
  opt.dispose();
  params[0].dispose();
});
