/**
 * Multi-tensor kernels of the optimizer (kernels/nn/optim.ts): one dispatch updates a chunk of
 * parameters, or sums the squared gradients of a chunk, instead of one dispatch per parameter.
 *
 * WebGPU binds whole buffers and a shader cannot index its bindings, so a chunk is as many
 * parameters as the storage-binding limit allows (four buffers each for AdamW: p, g, m, v; one
 * for the sum of squares), and each parameter's code is inlined behind a `switch` on the
 * parameter a workgroup belongs to (a constant table of workgroup offsets). The per-element
 * arithmetic and the per-workgroup reduction order are exactly those of the former
 * one-kernel-per-parameter code, so results are bit-identical to it.
 *
 * @module
 */
import type { Kernel } from "../core/runtime.ts";
import { binding, grid, linearWorkgroup } from "../codegen/wgsl.ts";

/** Threads per workgroup of every optimizer kernel. */
export const WG = 256;
/** Partial sums reserved per parameter in the clip's partials buffer. */
export const PARTIALS = 64;

/** One parameter of a chunk. */
export interface ChunkParam {
  /** Elements. */
  n: number;
  /** Its index among the optimizer's parameters (the partials slot). */
  slot: number;
  /** Weight decay applies. */
  decay: boolean;
}

/** Workgroups the sum of squares of `n` elements uses (at most {@link PARTIALS}). */
export function sumSqGroups(n: number): number {
  return Math.min(PARTIALS, Math.max(1, Math.ceil(n / (WG * 8))));
}

/** `const START` table and the code finding the chunk member `j` of workgroup `w`. */
function locate(starts: number[]): string {
  const k = starts.length;
  return `const START: array<u32, ${k}> = array<u32, ${k}>(${
    starts.map((s) => `${s}u`).join(", ")
  });
  var j = 0u;
  for (var q = 1u; q < ${k - 1}u; q++) { if (w >= START[q]) { j = q; } }
  let lw = w - START[j];`;
}

function prefix(counts: number[]): number[] {
  const starts = [0];
  for (const c of counts) starts.push(starts.at(-1)! + c);
  return starts;
}

/**
 * Sum of squares of each chunk member's gradient into `partials[slot * PARTIALS + w]` (the
 * unused tail of a slot zeroed). Bindings: g0..g{k-1}, partials.
 */
export function sumSquaresKernel(chunk: readonly ChunkParam[]): Kernel {
  const groups = chunk.map((c) => sumSqGroups(c.n));
  const starts = prefix(groups);
  const total = starts.at(-1)!;
  const cases = chunk.map((c, j) => {
    const gs = groups[j];
    const base = c.slot * PARTIALS;
    return `    case ${j}u: {
      for (var i = lw * ${WG}u + lid; i < ${c.n}u; i += ${
      gs * WG
    }u) { let x = g${j}[i]; s += x * x; }
      base = ${base}u;
      if (lid == 0u && lw == 0u) {
        for (var z = ${gs}u; z < ${PARTIALS}u; z++) { partials[${base}u + z] = 0.0; }
      }
    }`;
  });
  const code = `${chunk.map((_, j) => binding(j, `g${j}`, "f32")).join("\n")}
${binding(chunk.length, "partials", "f32", true)}
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = ${linearWorkgroup(total)};
  if (w >= ${total}u) { return; }
  ${locate(starts)}
  var s = 0.0;
  var base = 0u;
  switch j {
${cases.join("\n")}
    default: {}
  }
  red[lid] = s;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k = k >> 1u) {
    if (lid < k) { red[lid] += red[lid + k]; }
    workgroupBarrier();
  }
  if (lid == 0u) { partials[base + lw] = red[0]; }
}
`;
  return { code, label: `clip.sumsq(${chunk.length})`, workgroups: grid(total) };
}

/**
 * AdamW over the chunk: bindings p0, g0, m0, v0, p1, ..., then `h` (uniform: lr, beta1,
 * beta2, eps, bias corrections 1 and 2, 1 - lr * weight decay) and `clip` (uniform: [norm,
 * scale, skip], the scale multiplies every gradient; skip != 0 leaves everything unchanged).
 */
export function adamwKernel(chunk: readonly ChunkParam[]): Kernel {
  const groups = chunk.map((c) => Math.ceil(c.n / WG));
  const starts = prefix(groups);
  const total = starts.at(-1)!;
  const decls = chunk.flatMap((_, j) => [
    binding(4 * j, `p${j}`, "f32", true),
    binding(4 * j + 1, `g${j}`, "f32"),
    binding(4 * j + 2, `m${j}`, "f32", true),
    binding(4 * j + 3, `v${j}`, "f32", true),
  ]);
  const u = 4 * chunk.length;
  const cases = chunk.map((c, j) =>
    `    case ${j}u: {
      if (i >= ${c.n}u) { return; }
      let grad = g${j}[i] * clip.y;
      let mi = b1 * m${j}[i] + (1.0 - b1) * grad;
      let vi = b2 * v${j}[i] + (1.0 - b2) * grad * grad;
      m${j}[i] = mi;
      v${j}[i] = vi;
      let update = (mi / h1.x) / (sqrt(vi / h1.y) + eps);
      p${j}[i] = p${j}[i]${c.decay ? " * h1.z" : ""} - lr * update;
    }`
  );
  const code = `${decls.join("\n")}
@group(0) @binding(${u}) var<uniform> h: array<vec4<f32>, 2>;
@group(0) @binding(${u + 1}) var<uniform> clip: vec4<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let w = ${linearWorkgroup(total)};
  if (w >= ${total}u) { return; }
  ${locate(starts)}
  let i = lw * ${WG}u + lid;
  // The loss-scale guard (loss_scale.ts) found a non-finite gradient: skip the step.
  if (clip.z != 0.0) { return; }
  let h0 = h[0]; let h1 = h[1];
  let lr = h0.x; let b1 = h0.y; let b2 = h0.z; let eps = h0.w;
  switch j {
${cases.join("\n")}
    default: {}
  }
}
`;
  return { code, label: `adamw(${chunk.length})`, workgroups: grid(total) };
}

/**
 * Split `params` into chunks whose bindings fit `storageLimit` storage buffers per shader
 * stage, `per` buffers per parameter plus `extra` for the chunk.
 */
export function chunks<T>(params: readonly T[], storageLimit: number, per: number, extra: number) {
  const size = Math.max(1, Math.floor((storageLimit - extra) / per));
  const out: T[][] = [];
  for (let i = 0; i < params.length; i += size) out.push(params.slice(i, i + size));
  return out;
}
