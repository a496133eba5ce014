/**
 * Decoding's second fused dispatch (no gradient), after kernels/ops/qkv_attention_proj.ts:
 *
 *   h = residual + bias + parts[0] + ... + parts[P-1]   (fixed order; written once, block 0)
 *   u = act(layerNorm(h) · W1^T + b1)                  (ln2 prologue, fc1, GELU epilogue)
 *
 * for parts [P, ...rows, d] (the per-head proj partials). Few fat workgroups: each stages
 * all rows' h in workgroup memory (re-reading the P partials: rows x d x P floats per
 * workgroup, which is why there are few of them), normalizes them, and computes a block of
 * Cb fc1 columns with S k-groups per column (partials summed in a fixed order). h and the
 * normalized rows use sum_parts_norm.ts's formulas and reduction order (the same bits); fc1's
 * k-order differs from the skinny matmul's (f32 rounding). The layer's third dispatch is fc2 +
 * bias + residual h (a skinny matmul, as before).
 *
 * f16 weights (`--precision f16`: fc1's registered f16 copy, matmul_f16.ts `f16ShadowOf`):
 * W1 is read as vec4<f16> and widened, the normalized rows rounded to f16 (the f16 product's
 * rule); h, the statistics and the sums stay f32.
 *
 * Rows are read at run time (a `dims` uniform) and run in blocks of up to 8 (the staged rows
 * of a block must fit workgroup memory: 8 x 768 floats for JOWA-150M), so one pipeline serves
 * every number of environments and beams.
 *
 * GPU cost, the layer against the 5-dispatch one (JOWA-150M planning, one environment: 4 or
 * 16 rows, d = 768, F = 3072, 12 heads of 64, ~260 cached positions; per layer at 4 rows;
 * estimated from the WGSL, NOT timed: no GPU ran it):
 *
 * | path       | dispatch                    | workgroups x threads | KB read a wg | loads a thread |
 * | ---------- | --------------------------- | -------------------- | ------------ | -------------- |
 * | 5-dispatch | ln1 + qkv + KV (skinny)     | 288 x 256            | 24 W + 12 x  | 6 W + 30 x     |
 * |            | attention + proj, 6 blocks  | 288 x 256            | 133 KV + 32  | ~49 KV + 8 W   |
 * |            | 12 partials + ln2           | 4 x 256              | 36           | 12             |
 * |            | fc1 + GELU (skinny)         | 384 x 256            | 24 W + 12 x  | 6 W + 24 x     |
 * |            | fc2 + res (skinny)          | 384 x 256            | 24 W + 48 u  | 6 W + 24 u     |
 * | 3-dispatch | ln1+qkv+KV+attention+proj   | 48 x 1024            | 576+133+192  | 52 W + ~21 KV  |
 * |            | 12 partials + ln2 + fc1     | 96 x 256             | 156 + 96 W   | 36 + 24 W      |
 * |            | fc2 + res (skinny)          | 384 x 256            | as above     | as above       |
 *
 * L2 reads a layer: 5-dispatch ~100 MB over 1,348 workgroups and 5 launches; 3-dispatch ~95
 * MB over 528 workgroups and 3 launches. Gained: two launch gaps (a few us each, ~4-8 us a
 * layer). Lost: the first dispatch runs on 48 of an H200's 132 SMs, each streaming ~900 KB
 * (~9-13 us at the 70-130 GB/s one SM draws from L2) where the two dispatches it replaces
 * spread ~60 MB over all SMs (~5-7 us), and this dispatch (96 SMs, 252 KB each, ~3 us) is
 * slower than the sum + fc1 it replaces (~1.5 us plus a small 4-workgroup dispatch). Net: about
 * even, within the estimate's error; at 16 rows (4 x 12 = 192 first-dispatch workgroups) the
 * partial re-read here grows to 580 KB a workgroup. Keep `decodeDefaults.compactLayer`
 * switchable until a GPU times both (`deno task bench gpu`).
 *
 * @module
 */
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import { f32 } from "../codegen/wgsl.ts";
import { activationWgsl, type EpilogueActivation } from "../codegen/activation.ts";
import { dimsBuffer, GENERIC_BUILTINS, GENERIC_LINEAR } from "./dims.ts";
import type { NormParams } from "./sum_parts_norm.ts";
import { ROUND_HALF4_WGSL } from "../codegen/matmul/f16.ts";
import { f16ShadowOf } from "./matmul_f16.ts";

/** Threads per workgroup (the sum_parts_norm.ts width for d <= 1024, so its reduction order). */
const T = 256;
/** Aim for about this many workgroups: few, so the partials are re-read little in total. */
const TARGET_WORKGROUPS = 96;

/** The MLP's first layer: fc1 weight [F, d], bias [F], and its activation. */
export interface MlpUpWeights {
  w1: Tensor;
  b1: Tensor;
  activation: EpilogueActivation;
}

interface Plan {
  /** Rows per block, k-groups, columns per workgroup, workgroups. */
  R: number;
  S: number;
  Cb: number;
  blocks: number;
  /** vec4 words of the staged rows / partial sums (aliased). */
  words: number;
}

const ceilPow2 = (x: number) => 2 ** Math.ceil(Math.log2(Math.max(1, x)));

/** Rows run in blocks of R (the most, up to 8, whose staged rows fit workgroup memory). */
function plan(d: number, F: number): Plan | null {
  const K4 = d / 4;
  if (d % 4 !== 0 || K4 < 4) return null;
  const S = Math.min(16, ceilPow2(K4));
  const Cb = Math.min(64, ceilPow2(Math.ceil(F / TARGET_WORKGROUPS)));
  for (let R = 8; R >= 1; R /= 2) {
    const words = Math.max(R * K4, (R * Cb * S) / 4);
    if (16 * words + 4 * T <= runtime().ctx.limits.maxComputeWorkgroupStorageSize) {
      return { R, S, Cb, blocks: Math.ceil(F / Cb), words };
    }
  }
  return null;
}

/** Whether {@link sumPartsMlpUp} runs for rows of width d into F columns. */
export function fusesMlpUp(d: number, F: number): boolean {
  return plan(d, F) !== null;
}

/**
 * h = residual + bias + sum_p parts[p] and u = act(layerNorm(h) · w1^T + b1) in one dispatch
 * (see the module doc): parts [P, ...rows, d], residual [...rows, d], bias [d]; returns h
 * [...rows, d] and u [...rows, F]. Throws where {@link fusesMlpUp} is false.
 */
export function sumPartsMlpUp(
  parts: Tensor,
  residual: Tensor,
  bias: Tensor,
  ln: NormParams,
  w: MlpUpWeights,
): { h: Tensor; u: Tensor } {
  const op = "sumPartsMlpUp";
  const d = residual.shape[residual.rank - 1];
  if (parts.rank !== residual.rank + 1 || parts.shape.slice(1).join() !== residual.shape.join()) {
    throw new Error(`${op}: parts [${parts.shape}] must be [P, ${residual.shape}]`);
  }
  const F = w.w1.shape[0];
  const check = (name: string, v: Tensor, shape: number[]) => {
    if (v.shape.join() !== shape.join() || v.dtype !== "f32") {
      throw new Error(`${op}: ${name} ${v} must be f32 [${shape}]`);
    }
  };
  check("bias", bias, [d]);
  check("ln weight", ln.weight, [d]);
  check("ln bias", ln.bias, [d]);
  check("w1", w.w1, [F, d]);
  check("b1", w.b1, [F]);
  if (parts.dtype !== "f32" || residual.dtype !== "f32") {
    throw new Error(`${op}: f32 parts and residual, got ${parts.dtype} and ${residual.dtype}`);
  }
  const rows = residual.size / d;
  const P = parts.shape[0];
  const p = plan(d, F);
  if (!p || P === 0) {
    throw new Error(`${op}: rows of ${d} -> ${F} (${P} parts) do not fit a workgroup`);
  }
  const eps = ln.eps ?? 1e-5;
  // fc1's f16 copy where the f16 products read one (`--precision f16`).
  const copy = f16ShadowOf(w.w1);
  const wh = !!copy;
  const kernel = planCache(`spmu|${P}|${d}|${F}|${eps}|${w.activation}${wh ? "|w16" : ""}`, () => {
    const label = `sumPartsMlpUp ${d}x${F} parts${P} ${w.activation}${wh ? " w16" : ""}`;
    const code = generate(p, P, d, F, eps, w.activation, label, wh);
    return { code, label, workgroups: [p.blocks, 1, 1] as [number, number, number] };
  });
  const h = Tensor.empty(residual.shape, "f32");
  const u = Tensor.empty([...residual.shape.slice(0, -1), F], "f32");
  runtime().dispatch(kernel, [
    parts.buffer,
    residual.buffer,
    bias.buffer,
    ln.weight.buffer,
    ln.bias.buffer,
    (copy ?? w.w1).buffer,
    w.b1.buffer,
    h.buffer,
    u.buffer,
    dimsBuffer(rows),
  ]);
  return { h, u };
}

function generate(
  { R, S, Cb, words }: Plan,
  P: number,
  d: number,
  F: number,
  eps: number,
  act: EpilogueActivation,
  label: string,
  wh = false,
): string {
  const K4 = d / 4, CT = T / S, NJ = Math.ceil(Cb / CT), iters = Math.ceil(K4 / S), S4 = S / 4;
  const adds = Array.from({ length: P }, (_, p) => `      v += parts[${p}u * mk4 + g];`);
  const tree = (v: string, name: string) => `
      red[lid] = ${v};
      workgroupBarrier();
      for (var w = ${T / 2}u; w > 0u; w >>= 1u) {
        if (lid < w) { red[lid] = red[lid] + red[lid + w]; }
        workgroupBarrier();
      }
      let ${name} = red[0];
      workgroupBarrier();`;
  const decl: string[] = [], body: string[] = [], spill: string[] = [];
  for (let jj = 0; jj < NJ; jj++) {
    decl.push(`    let col${jj} = min(c0 + ct + ${jj * CT}u, ${F - 1}u);`);
    const partial = (jj + 1) * CT > Cb;
    const wv = `w1[col${jj} * ${K4}u + q]`;
    body.push(`        let w${jj} = ${wh ? `vec4<f32>(${wv})` : wv};`);
    for (let m = 0; m < R; m++) {
      decl.push(`    var a${m}_${jj} = 0.0;`);
      body.push(`        a${m}_${jj} += dot(wm[${m * K4}u + q], w${jj});`);
      // Partial (m, j, kg) at float (m Cb + j) S + kg of the aliased words.
      const at = `(${m * Cb}u + ct + ${jj * CT}u) * ${S4}u + kg / 4u`;
      const st = `wm[${at}][kg % 4u] = a${m}_${jj};`;
      spill.push(partial ? `    if (ct + ${jj * CT}u < ${Cb}u) { ${st} }` : `    ${st}`);
    }
  }
  const sumS = Array.from(
    { length: S4 },
    (_, k) => `        { let p = wm[b + ${k}u]; acc += p.x; acc += p.y; acc += p.z; acc += p.w; }`,
  );
  // f16 weights: the normalized rows are rounded to f16 as the f16 product rounds its A.
  const norm = "(wm[o + q] - vec4<f32>(mean)) * rstd * gam[q] + bet[q]";
  return `// ${label}: rows in blocks of ${R}, ${Cb} columns x ${S} k-groups per workgroup
${wh ? "enable f16;\n" : ""}@group(0) @binding(0) var<storage, read> parts: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> res: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> pbias: array<vec4<f32>, ${K4}>;
@group(0) @binding(3) var<storage, read> gam: array<vec4<f32>, ${K4}>;
@group(0) @binding(4) var<storage, read> bet: array<vec4<f32>, ${K4}>;
@group(0) @binding(5) var<storage, read> w1: array<vec4<${wh ? "f16" : "f32"}>, ${F * K4}>;
@group(0) @binding(6) var<storage, read> b1: array<f32, ${F}>;
@group(0) @binding(7) var<storage, read_write> h_out: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> u_out: array<f32>;
@group(0) @binding(9) var<uniform> dims: vec4<u32>;
${activationWgsl(act)}${wh ? ROUND_HALF4_WGSL : ""}
// A block's staged rows (R x K4 vec4), then its fc1 partials (R x Cb x S floats): aliased.
var<workgroup> wm: array<vec4<f32>, ${words}>;
var<workgroup> red: array<f32, ${T}>;
@compute @workgroup_size(${T})
fn main(${GENERIC_BUILTINS}) {
  let blk = ${GENERIC_LINEAR};
  let rows = dims.x;
  let mk4 = rows * ${K4}u;
  let c0 = blk * ${Cb}u;
  let kg = lid % ${S}u;
  let ct = lid / ${S}u;
  for (var r0 = 0u; r0 < rows; r0 += ${R}u) {
    let nr = min(${R}u, rows - r0);
    // h = residual + bias + parts in order (sum_parts_norm.ts's order); block 0 writes it.
    for (var e = lid; e < ${R * K4}u; e += ${T}u) {
      let g = r0 * ${K4}u + e;
      var v = vec4<f32>(0.0);
      if (e < nr * ${K4}u) {
        v = res[g] + pbias[e % ${K4}u];
${adds.join("\n")}
        if (blk == 0u) { h_out[g] = v; }
      }
      wm[e] = v;
    }
    workgroupBarrier();
    for (var m = 0u; m < nr; m++) {
      let o = m * ${K4}u;
      var s = 0.0;
      for (var q = lid; q < ${K4}u; q += ${T}u) { s += dot(wm[o + q], vec4<f32>(1.0)); }
${tree("s", "s1")}
      let mean = s1 / ${d}.0;
      var ss = 0.0;
      for (var q = lid; q < ${K4}u; q += ${T}u) {
        let e = wm[o + q] - vec4<f32>(mean);
        ss += dot(e, e);
      }
${tree("ss", "ss1")}
      let rstd = inverseSqrt(ss1 / ${d}.0 + ${f32(eps)});
      for (var q = lid; q < ${K4}u; q += ${T}u) {
        wm[o + q] = ${wh ? `rh4(${norm})` : norm};
      }
      workgroupBarrier();
    }
    // fc1 columns c0 .. c0 + Cb - 1: thread (kg, ct) sums chunks kg, kg + S, ... (rows past
    // the block's count are zeros, never stored).
${decl.join("\n")}
    for (var it = 0u; it < ${iters}u; it++) {
      let q = kg + it * ${S}u;
      if (q < ${K4}u) {
${body.join("\n")}
      }
    }
    workgroupBarrier();
${spill.join("\n")}
    workgroupBarrier();
    for (var e = lid; e < nr * ${Cb}u; e += ${T}u) {
      let col = c0 + e % ${Cb}u;
      if (col < ${F}u) {
        let b = e * ${S4}u;
        var acc = 0.0;
${sumS.join("\n")}
        u_out[(r0 + e / ${Cb}u) * ${F}u + col] = act_${act}(acc + b1[col]);
      }
    }
    workgroupBarrier();
  }
}
`;
}
