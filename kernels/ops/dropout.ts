/**
 * Inverted dropout with a counter-based mask: element i is kept when hash(seed, i) >= p.
 * The same seed gives the same mask, so the backward regenerates it instead of storing it.
 */
import { record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, f32, grid, linearWorkgroup } from "../codegen/wgsl.ts";
import { resolveSeed, type Seed } from "../../util/rng.ts";

const WG = 256;

/** WGSL of the counter-based hash (PCG-style output permutation of a 2-word counter). */
export const HASH_WGSL = `
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}
fn uniform01(seed: u32, i: u32) -> f32 {
  return f32(pcg(pcg(seed) ^ i) >> 8u) * (1.0 / 16777216.0);
}
`;

/** The same hash on the CPU (tests reproduce masks with it). */
export function uniform01(seed: number, i: number): number {
  const pcg = (v: number) => {
    const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
    const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
    return ((word >>> 22) ^ word) >>> 0;
  };
  return (pcg((pcg(seed) ^ i) >>> 0) >>> 8) / 16777216;
}

function maskKernel(label: string, x: Tensor, seed: Seed, p: number): Tensor {
  const out = Tensor.empty(x.shape, "f32");
  if (out.size === 0) return out;
  const groups = Math.ceil(out.size / WG);
  // A function seed is per-call data of a captured step: recomputed on every replay.
  const seedBuf = typeof seed === "number"
    ? runtime().uploadStatic(new Uint32Array([seed >>> 0]))
    : runtime().uploadDynamic(() => new Uint32Array([resolveSeed(seed) >>> 0]));
  const kernel = planCache(`drop|${label}|${out.size}|${p}`, () => {
    const code = `${binding(0, "x", "f32")}
${binding(1, "seed", "u32")}
${binding(2, "out", "f32", true)}
${HASH_WGSL}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (i >= ${out.size}u) { return; }
  let keep = uniform01(seed[0], i) >= ${f32(p)};
  out[i] = select(0.0, x[i] * ${f32(1 / (1 - p))}, keep);
}
`;
    return { code, label: label, workgroups: grid(groups) };
  });
  runtime().dispatch(kernel, [x.buffer, seedBuf, out.buffer]);
  // The dispatch is recorded; the pool never hands this buffer to an upload before it runs.
  runtime().pool.release(seedBuf);
  return out;
}

/**
 * Zero each element with probability `p` and scale the rest by 1/(1-p). `seed` picks the
 * mask (derive it per step and per call site; a function for a captured step, see
 * kernels/core/capture.ts). p = 0 returns `x` itself.
 */
export function dropout(x: Tensor, p: number, seed: Seed): Tensor {
  if (!(p >= 0 && p < 1)) throw new Error(`dropout: p must be in [0, 1), got ${p}`);
  // The kernel binds array<f32>: another dtype's bits would be read as garbage.
  if (x.dtype !== "f32") throw new Error(`dropout: f32 input only, got ${x.dtype}`);
  if (p === 0) return x;
  const out = maskKernel("dropout", x, seed, p);
  return record(out, "dropout", [x], (g) => [maskKernel("dropout.grad", g, seed, p)]);
}
