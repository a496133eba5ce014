/**
 * Model-level checks of the VQ-VAE tokenizer against the float64 CPU reference of the same
 * network (tests/helpers/cpu_tokenizer.ts), like tests/engine_gpt_test.ts:
 * - the tiny config (84x84 -> 6x6): loss terms, reconstruction and token ids match;
 * - a smaller variant (42x42 frames, same strides -> 3x3 tokens, 4 channels, one residual
 *   block per level, so the float64 finite differences stay fast): the gradient of every
 *   parameter tensor matches central differences along a random +-1 direction (a
 *   directional derivative covers every entry of the tensor at once);
 * - encode/decode shapes and consistency with forward;
 * - the perceptual term's wiring (a stand-in distance) and the log line without LPIPS weights.
 */
import assert from "node:assert/strict";
import { initRuntime } from "../kernels/core/runtime.ts";
import { backward } from "../kernels/core/autograd.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { TINY_TOKENIZER, Tokenizer, type TokenizerConfig } from "../models/tokenizer/model.ts";
import { loadPerceptual } from "./helpers/tokenizer_train.ts";
import { mean, mul, reshape, sub } from "../kernels/ops/mod.ts";
import { cpuTokenizer, type Params } from "./helpers/cpu_tokenizer.ts";
import { assertClose, rng } from "./helpers/reference.ts";

await initRuntime();

/** Smooth synthetic frames (bytes): blobs and gradients, different per frame. */
function frames(n: number, R: number, seed: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(n * R * R);
  for (let f = 0; f < n; f++) {
    const cx = r() * R, cy = r() * R, a = r() * 6;
    for (let y = 0; y < R; y++) {
      for (let x = 0; x < R; x++) {
        const d = Math.hypot(x - cx, y - cy) / R;
        const v = 127 + 100 * Math.cos(a + 9 * d) * Math.exp(-2 * d) + 20 * Math.sin(x / 5);
        out[f * R * R + y * R + x] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return out;
}

/** Perturb every parameter (norms and biases too) and spread the codebook, then reload. */
async function randomize(model: Tokenizer, seed: number): Promise<Params> {
  const state = await model.stateDict();
  const r = rng(seed);
  for (const [name, v] of state) {
    const scale = name === "embedding.weight" ? 1 : 0.05;
    for (let i = 0; i < v.data.length; i++) v.data[i] += scale * (2 * r() - 1);
  }
  model.loadStateDict(state);
  return new Map([...state].map(([n, v]) => [n, Float64Array.from(v.data)]));
}

const toInput = (bytes: Uint8Array, R: number) => ({
  data: Float64Array.from(bytes, (v) => Math.fround(v / 127.5 - 1)),
  shape: [bytes.length / (R * R), 1, R, R] as [number, number, number, number],
});

Deno.test("tiny tokenizer forward matches the float64 reference (losses, reconstruction, ids)", async () => {
  const model = new Tokenizer({ ...TINY_TOKENIZER, seed: 5 });
  const params = await randomize(model, 6);
  const bytes = frames(2, 84, 1);
  const out = tidy(() => model.forward(bytes));
  const [loss, rl, cl, ml, recon, ids] = await readAll([
    out.loss,
    out.reconLoss,
    out.codebookLoss,
    out.commitmentLoss,
    out.recon,
    out.indices,
  ]);
  const ref = cpuTokenizer(params, model.cfg, toInput(bytes, 84));
  assert.deepEqual(Array.from(ids), Array.from(ref.stop.indices));
  assertClose(recon, ref.recon.data, { atol: 2e-4, rtol: 1e-3, what: "reconstruction" });
  assertClose(
    [loss[0], rl[0], cl[0], ml[0]],
    [ref.loss, ref.reconLoss, ref.codebookLoss, ref.commitmentLoss],
    { atol: 1e-5, rtol: 1e-4, what: "loss, L1, codebook, commitment" },
  );
  for (const t of Object.values(out)) t?.dispose();
});

/** Same strides, 42x42 frames -> 3x3 tokens; narrow so float64 differences are quick. */
const SMALL: TokenizerConfig = {
  ...TINY_TOKENIZER,
  resolution: 42,
  ch: 4,
  groups: 2,
  numResBlocks: 1,
  attnResolutions: [3, 6],
  decoderAttnResolutions: [3, 6],
  zChannels: 8,
  embedDim: 8,
  vocab: 16,
  seed: 9,
};

Deno.test("tokenizer gradients of every parameter match float64 finite differences", async () => {
  const model = new Tokenizer(SMALL);
  const params = await randomize(model, 10);
  const bytes = frames(2, 42, 2);
  const x = toInput(bytes, 42);
  const loss = tidy(() => {
    const l = model.forward(bytes).loss;
    backward(l);
    return l;
  });
  const named = model.namedParameters();
  const vals = await readAll([loss, ...named.map(([, p]) => p.grad!)]);
  const base = cpuTokenizer(params, SMALL, x);
  assertClose([vals[0][0]], [base.loss], { atol: 1e-5, rtol: 1e-4, what: "loss" });
  const r = rng(11);
  const eps = 1e-5;
  named.forEach(([name, p], k) => {
    const g = vals[k + 1];
    const data = params.get(name)!;
    const u = Float64Array.from({ length: p.size }, () => (r() < 0.5 ? -1 : 1));
    const saved = data.slice();
    let analytic = 0, scale = 0;
    for (let i = 0; i < p.size; i++) {
      analytic += u[i] * g[i];
      scale += Math.abs(g[i]);
    }
    data.set(saved.map((v, i) => v + eps * u[i]));
    const up = cpuTokenizer(params, SMALL, x, base.stop).loss;
    data.set(saved.map((v, i) => v - eps * u[i]));
    const down = cpuTokenizer(params, SMALL, x, base.stop).loss;
    data.set(saved);
    const numeric = (up - down) / (2 * eps);
    assertClose([analytic], [numeric], {
      atol: 1e-5 + 2e-3 * scale,
      rtol: 2e-3,
      what: `d loss / d ${name} along a random direction`,
    });
  });
  assert.ok(named.length > 100, `only ${named.length} parameter tensors`);
  loss.dispose();
  for (const [, p] of named) p.grad?.dispose();
});

Deno.test("encode -> [N, 36] ids, decode -> [N, 1, 84, 84]; both agree with forward", async () => {
  const model = new Tokenizer({ ...TINY_TOKENIZER, seed: 3 }).eval();
  await randomize(model, 4);
  const bytes = frames(2, 84, 7);
  const ids = model.encode(bytes);
  assert.deepEqual(ids.shape, [2, 36]);
  assert.equal(ids.dtype, "i32");
  // Byte values in an i32 tensor take the same path as a Uint8Array.
  const ids2 = model.encode(tensor(Int32Array.from(bytes), [2, 1, 84, 84], "i32"));
  const dec = model.decode(ids);
  assert.deepEqual(dec.shape, [2, 1, 84, 84]);
  const out = tidy(() => model.forward(bytes));
  const [a, b, d, fi, fr] = await readAll([ids, ids2, dec, out.indices, out.recon]);
  assert.deepEqual(Array.from(a), Array.from(b));
  assert.deepEqual(Array.from(a), Array.from(fi));
  assert.ok(Array.from(a).every((v) => v >= 0 && v < TINY_TOKENIZER.vocab));
  assertClose(d, fr, { atol: 1e-5, rtol: 1e-5, what: "decode(encode(x)) vs forward's recon" });
  for (const t of [ids, ids2, dec, ...Object.values(out)]) t?.dispose();
});

Deno.test("a perceptual term joins the loss with weight 1; without weights that is logged", async () => {
  const model = new Tokenizer({ ...TINY_TOKENIZER, seed: 3 });
  const bytes = frames(2, 84, 7);
  // A stand-in perceptual distance (LPIPS itself is tested in lpips_test.ts): mean |x - y|^2.
  model.perceptual = {
    distance: (x, y) => {
      const d = sub(x, y);
      return mean(reshape(mul(d, d), [x.shape[0], -1]), 1);
    },
  };
  const out = tidy(() => model.forward(bytes));
  const [loss, rl, cl, ml, pl] = await readAll([
    out.loss,
    out.reconLoss,
    out.codebookLoss,
    out.commitmentLoss,
    out.perceptualLoss!,
  ]);
  assert.ok(pl[0] > 0);
  assertClose([loss[0]], [rl[0] + cl[0] + ml[0] + pl[0]], { atol: 1e-6, rtol: 1e-6, what: "loss" });
  for (const t of Object.values(out)) t?.dispose();
  const logged: string[] = [];
  assert.equal(await loadPerceptual(undefined, (m) => logged.push(m)), null);
  assert.match(logged[0], /without the perceptual term/);
});
