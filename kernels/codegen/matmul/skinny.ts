/**
 * Skinny-M GEMM for decode shapes (M <= 16 rows, long K): K is split WITHIN a workgroup, so
 * a decode matmul is one dispatch with no split-K reduce pass.
 *
 * One workgroup computes all M rows of C columns (`C` in 1..64, a power of two); its
 * S x C threads (S "k-groups", S * C <= 256) each own one column and every S-th 4-wide
 * k-chunk (chunk q = kg + S * it), accumulate the M dot products of that column over their
 * chunks in registers, and the S partials of each (row, column) are tree-reduced in workgroup
 * memory (log2 S barrier steps, fixed order: deterministic). The epilogue (bias, activation,
 * residual, accumulate) runs after the reduction, one output per thread, coalesced along n.
 *
 * Memory access. With B stored [N, K] (transB, every `Linear` weight) and K % 4 == 0 the
 * k-group index varies fastest across threads, so a warp reads 32 consecutive vec4 of one
 * weight row (512 contiguous bytes) per step: the weight matrix, the only large operand, is
 * streamed exactly once per dispatch in full cache lines. A [M, K] (<= 16 rows, <= 196 KB)
 * is re-read by the C column groups of a workgroup and by every workgroup, from L1/L2. Other
 * layouts (B [K, N], A^T) are correct but take scalar loads (column-fastest threads).
 *
 * Optional layer-norm prologue (`ln`): every workgroup reads whole rows of A anyway, so it
 * first computes each row's mean and variance (two passes, the same formula as the `layerNorm`
 * op) over its chunks, tree-reduced like the products, and then normalizes A as it loads it:
 * a = (a - mean) * rstd * gamma + beta. That costs each workgroup 2 extra reads of A (L2
 * hits) and saves the layer norm's dispatch and its [M, K] round trip.
 *
 * Optional KV-cache epilogue (`spec.kvWrite`, the packed QKV projection [seqs * t, 3 H D]):
 * output columns [H D, 3 H D) (keys, values) are also stored into a layer's cache
 * [2, seqs, H, cap, D] at position start + i (row = seq * t + i; `start` from a uniform),
 * which replaces the separate appendKv dispatch. An f16 cache (`kvWrite.dtype`) stores each
 * value rounded to f16 (saturating at +-65504, as cached_attention.ts `appendKv` does); the
 * product and c_g stay f32.
 *
 * f16 weights (`spec.bHalf`, `--precision f16` decoding: ops/matmul.ts binds the weight's
 * f16 copy, kernels/ops/matmul_f16.ts `f16ShadowOf`): B is read as vec4<f16> (half the bytes
 * of the stream that bounds a decode product) and widened to f32; A, after any prologue, is
 * rounded to f16 as it is loaded (`rh4`), as the f16 product rounds its activations, so the
 * products equal the plain f16 forward's up to f32 summation order. Sums, statistics and
 * epilogues stay f32.
 *
 * Run-time rows (`dynamicRows`, inference: kernels/ops/_skinny_rows.ts): the kernel is
 * generated for a bucket of M and masks the rows at or above the count in its `dims`
 * uniform, so a new number of environments compiles nothing.
 *
 * @module
 */

import { activationWgsl } from "../activation.ts";
import { f32 } from "../wgsl.ts";
import { toHalf } from "../half.ts";
import { ROUND_HALF4_WGSL } from "./f16.ts";
import type { MatmulLimits, MatmulSpec } from "./plan.ts";

/** Workgroup shape of a skinny plan: C output columns per workgroup, S k-groups. */
export interface SkinnyShape {
  C: number;
  S: number;
}

/** Decode GEMMs (M <= 16) aim for this many workgroups: two per SM of an H100 (132 SMs). */
export const SKINNY_WORKGROUPS = 264;
/** ... with at most this many 16-deep k-slices (256 k values) per thread. */
export const SKINNY_MAX_SLICES = 16;
const SLICE = 16;
const MAX_THREADS = 256;
const MAX_COLUMNS = 64;

const floorPow2 = (x: number) => 2 ** Math.floor(Math.log2(Math.max(1, x)));
const ceilPow2 = (x: number) => 2 ** Math.ceil(Math.log2(Math.max(1, x)));

/**
 * Whether a spec takes the skinny kernel by default: M <= 16 rows, more than 16 columns, K
 * longer than SKINNY_MAX_SLICES slices (shorter K already fits one tile pass), no k-sum.
 */
export function isSkinny(spec: MatmulSpec): boolean {
  return spec.M <= 16 && spec.N > 16 && spec.K > SKINNY_MAX_SLICES * SLICE && !spec.sumK;
}

/**
 * The workgroup shape: the most columns per workgroup (fewest re-reads of A) that still give
 * SKINNY_WORKGROUPS workgroups, and enough k-groups that no thread loops over more than
 * SKINNY_MAX_SLICES slices (when K allows it at 256 threads). Threads are limited by the
 * device and by workgroup memory (M floats per thread for the reduction).
 */
export function chooseSkinny(spec: MatmulSpec, limits: MatmulLimits): SkinnyShape {
  const { M, N, K, batch } = spec;
  if (!reductionFits(spec, limits)) {
    throw new Error(`matmul: skinny plan does not fit workgroup memory`);
  }
  const threads = Math.min(
    MAX_THREADS,
    floorPow2(limits.maxComputeInvocationsPerWorkgroup),
    floorPow2(limits.maxComputeWorkgroupStorageSize / (4 * M)),
  );
  const chunks = Math.ceil(K / 4);
  // Enough k-groups for <= 16 slices each, but no idle k-groups.
  const minS = Math.min(threads, ceilPow2(Math.ceil(K / (SKINNY_MAX_SLICES * SLICE))));
  let C = Math.min(MAX_COLUMNS, floorPow2(threads / minS), ceilPow2(N));
  while (C > 1 && batch * Math.ceil(N / C) < SKINNY_WORKGROUPS) C /= 2;
  const S = Math.max(1, Math.min(threads / C, ceilPow2(chunks)));
  return { C, S };
}

/** Whether the reduction of one thread (M floats) fits in workgroup memory. */
function reductionFits(spec: MatmulSpec, limits: MatmulLimits): boolean {
  return 4 * spec.M <= limits.maxComputeWorkgroupStorageSize;
}

/**
 * Whether a skinny spec with the optional prologues/epilogues can be generated: workgroup
 * memory for the reduction; `kvWrite` needs batch 1 and the QKV layout.
 */
export function skinnyFits(spec: MatmulSpec, limits: MatmulLimits): boolean {
  if (!isSkinny(spec)) return false;
  if (!reductionFits(spec, limits)) return false;
  if (spec.kvWrite) {
    const { seqs, t, heads, headSize } = spec.kvWrite;
    if (spec.batch !== 1 || spec.M !== seqs * t || spec.N !== 3 * heads * headSize) return false;
  }
  return true;
}

/** Element counts of the bindings the skinny kernel declares. */
export interface SkinnySizes {
  a: number;
  b: number;
  c: number;
}

/** Extra options of the skinny kernel beyond the spec. */
export interface SkinnyOptions {
  /** Layer-norm prologue over A's rows with this epsilon (gamma, beta bindings; !transA). */
  lnEps?: number;
  /** With `lnEps`: an activation of the normalized A (Mish: the Q head's LN + Mish). */
  lnAct?: "mish";
  /**
   * Rows read at run time (shape-generic decode): spec.M is the most rows (a bucket); the
   * kernel reads the actual count from a `dims` uniform (x = rows) bound last, and rows at or
   * above it are computed but never stored. The M-sized bindings are runtime-sized arrays
   * and a kvWrite's sequences and tokens come from its uniform (t = length - start), so the
   * source depends on the bucket only. Needs batch 1 and A stored [M, K].
   */
  dynamicRows?: boolean;
}

/** Mish as the elementwise op computes it (kernels/ops/elementwise.ts: stable tanh, softplus). */
const MISH_WGSL = `fn pro_mish(x: f32) -> f32 {
  let sp = max(x, 0.0) + log(1.0 + exp(-abs(x)));
  let e = exp(-2.0 * abs(sp));
  return x * (sign(sp) * (1.0 - e) / (1.0 + e));
}
fn pro4_mish(v: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(pro_mish(v.x), pro_mish(v.y), pro_mish(v.z), pro_mish(v.w));
}
`;

/**
 * The complete WGSL of a skinny plan. Bindings: 0 A, 1 B, 2 C (read_write), 3 bias[N] when
 * spec.bias, then the residual [batch, M, N] when spec.residual, then gamma[K] and beta[K]
 * when `opts.lnEps` is set, then the kvWrite bindings, then the `dims` uniform
 * with `opts.dynamicRows`.
 */
export function generateSkinny(
  spec: MatmulSpec,
  shape: SkinnyShape,
  grid: [number, number, number],
  sizes: SkinnySizes,
  label: string,
  opts: SkinnyOptions = {},
): string {
  const { M, N, K, transA, transB, aBatchStride: sa, bBatchStride: sb, batch } = spec;
  const { C, S } = shape;
  const T = C * S;
  const ln = opts.lnEps !== undefined;
  if (ln && transA) throw new Error(`${label}: a layer-norm prologue needs A stored [M, K]`);
  const dyn = opts.dynamicRows ?? false;
  if (dyn && (transA || batch !== 1)) {
    throw new Error(`${label}: run-time rows need batch 1 and A stored [M, K]`);
  }
  const tilesN = Math.ceil(N / C);
  const total = tilesN * batch;
  const aVec = !transA && K % 4 === 0 && sa % 4 === 0;
  const bVec = transB && K % 4 === 0 && sb % 4 === 0;
  const kFast = transB; // k-group fastest across threads when B rows are k-contiguous
  const qFull = Math.floor(K / 4);
  const rem = K % 4;
  const iters = Math.ceil(qFull / S);
  const arr = (vec: boolean, n: number) => vec ? `array<vec4<f32>, ${n / 4}>` : `array<f32, ${n}>`;
  // Run-time sized arrays where the size follows the rows.
  const rowsArr = (vec: boolean, n: number) =>
    dyn ? (vec ? "array<vec4<f32>>" : "array<f32>") : arr(vec, n);
  const o: string[] = [];
  const kvHalf = spec.kvWrite?.dtype === "f16";
  // f16 weights (spec.bHalf): B widened on load, A rounded to f16 on load (the f16 product's
  // rule, so decoding agrees with the plain f16 forward); f32 plans keep their exact WGSL.
  const wHalf = !!spec.bHalf;
  if (kvHalf || wHalf) o.push("enable f16;");
  o.push(`// ${label}: skinny, ${C} columns x ${S} k-groups per workgroup`);
  o.push(`@group(0) @binding(0) var<storage, read> a_g: ${rowsArr(aVec, sizes.a)};`);
  const bArr = !wHalf
    ? arr(bVec, sizes.b)
    : bVec
    ? `array<vec4<f16>, ${sizes.b / 4}>`
    : `array<f16, ${sizes.b}>`;
  o.push(`@group(0) @binding(1) var<storage, read> b_g: ${bArr};`);
  o.push(`@group(0) @binding(2) var<storage, read_write> c_g: ${rowsArr(false, sizes.c)};`);
  let at = 3;
  if (spec.bias) o.push(`@group(0) @binding(${at++}) var<storage, read> bias_g: array<f32, ${N}>;`);
  if (spec.residual) {
    o.push(`@group(0) @binding(${at++}) var<storage, read> res_g: ${rowsArr(false, sizes.c)};`);
  }
  if (ln) {
    o.push(`@group(0) @binding(${at++}) var<storage, read> gam_g: ${arr(aVec, K)};`);
    o.push(`@group(0) @binding(${at++}) var<storage, read> bet_g: ${arr(aVec, K)};`);
  }
  const kv = spec.kvWrite;
  if (kv) {
    const cacheLen = 2 * kv.seqs * kv.heads * kv.cap * kv.headSize;
    o.push(
      `@group(0) @binding(${at++}) var<storage, read_write> kv_g: ` +
        (kvHalf ? (dyn ? "array<f16>" : `array<f16, ${cacheLen}>`) : rowsArr(false, cacheLen)) +
        ";",
    );
    o.push("struct KvParams { start: u32, length: u32, p2: u32, p3: u32 }");
    o.push(`@group(0) @binding(${at++}) var<uniform> kvp: KvParams;`);
  }
  if (dyn) o.push(`@group(0) @binding(${at++}) var<uniform> dims: vec4<u32>;`);
  if (spec.activation) o.push(activationWgsl(spec.activation));
  if (ln && opts.lnAct === "mish") o.push(MISH_WGSL);
  if (wHalf) o.push(ROUND_HALF4_WGSL);
  // red[m * T + c * S + kg]: neighbouring k-groups at neighbouring words (no bank conflicts).
  o.push(`var<workgroup> red: array<f32, ${M * T}>;`);
  o.push("");
  o.push(`@compute @workgroup_size(${T})`);
  o.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, " +
      "@builtin(local_invocation_index) lid: u32) {",
  );
  o.push(`  let lin = wid.x + wid.y * ${grid[0]}u + wid.z * ${grid[0] * grid[1]}u;`);
  if (grid[0] * grid[1] * grid[2] > total) o.push(`  if (lin >= ${total}u) { return; }`);
  o.push(`  let batch = lin / ${tilesN}u;`);
  o.push(`  let n0 = (lin % ${tilesN}u) * ${C}u;`);
  o.push(kFast ? `  let kg = lid % ${S}u;` : `  let kg = lid / ${C}u;`);
  o.push(kFast ? `  let c = lid / ${S}u;` : `  let c = lid % ${C}u;`);
  // Edge columns load a valid row (the last) and are never stored.
  o.push(`  let n = min(n0 + c, ${N - 1}u);`);
  o.push(`  let a_base = batch * ${sa}u;`);
  o.push(`  let b_base = batch * ${sb}u;`);
  o.push(dyn ? "  let c_base = 0u;" : `  let c_base = batch * ${M * N}u;`);
  const aIdx = (m: number, k: string) =>
    transA ? `a_base + (${k}) * ${M}u + ${m}u` : `a_base + ${m * K}u + ${k}`;
  const bIdx = (k: string) => transB ? `b_base + n * ${K}u + ${k}` : `b_base + (${k}) * ${N}u + n`;
  // A chunk (4 k values from k0, `len` of them valid) as a vec4 expression.
  const loadA = (m: number, k0: string, len: number) => {
    if (aVec && len === 4) return `a_g[(${aIdx(m, k0)}) / 4u]`;
    const e = [0, 1, 2, 3].map((j) => j < len ? `a_g[${aIdx(m, `${k0} + ${j}u`)}]` : "0.0");
    return `vec4<f32>(${e.join(", ")})`;
  };
  const loadB = (k0: string, len: number) => {
    if (bVec && len === 4) {
      return wHalf ? `vec4<f32>(b_g[(${bIdx(k0)}) / 4u])` : `b_g[(${bIdx(k0)}) / 4u]`;
    }
    const el = (k: string) => wHalf ? `f32(b_g[${bIdx(k)}])` : `b_g[${bIdx(k)}]`;
    const e = [0, 1, 2, 3].map((j) => j < len ? el(`${k0} + ${j}u`) : "0.0");
    return `vec4<f32>(${e.join(", ")})`;
  };
  const loadLn = (name: string, k0: string, len: number) => {
    if (aVec && len === 4) return `${name}[(${k0}) / 4u]`;
    const e = [0, 1, 2, 3].map((j) => j < len ? `${name}[${k0} + ${j}u]` : "0.0");
    return `vec4<f32>(${e.join(", ")})`;
  };
  // Tree over `count` threads (a power of two) of the M values at red[m * T + base + i].
  const tree = (count: number, base: string, i: string) => {
    o.push("  workgroupBarrier();");
    for (let s = count / 2; s >= 1; s /= 2) {
      const adds = Array.from({ length: M }, (_, m) => {
        const at = `${m * T}u + ${base}${i}`;
        return `red[${at}] += red[${at} + ${s}u];`;
      });
      o.push(`  if (${i} < ${s}u) { ${adds.join(" ")} }`);
      o.push("  workgroupBarrier();");
    }
  };
  if (ln) {
    // Row statistics over all T threads: chunk q = lid + T * it, then a tree over T.
    const statIters = Math.ceil(K / 4 / T);
    const pass = (what: "mean" | "var") => {
      o.push(`  { ${Array.from({ length: M }, (_, m) => `var p${m} = 0.0;`).join(" ")}`);
      o.push(`    for (var it = 0u; it < ${statIters}u; it++) {`);
      o.push(`      let k0 = (lid + it * ${T}u) * 4u;`);
      o.push(`      if (k0 < ${K}u) {`);
      o.push(
        `        let ok = vec4<f32>(vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(${K}u));`,
      );
      for (let m = 0; m < M; m++) {
        const v = K % 4 === 0
          ? loadA(m, "k0", 4)
          : `vec4<f32>(${
            [0, 1, 2, 3].map((j) => `a_g[${aIdx(m, `min(k0 + ${j}u, ${K - 1}u)`)}]`)
              .join(", ")
          })`;
        o.push(
          what === "mean"
            ? `        p${m} += dot(${v}, ok);`
            : `        { let d = (${v} - vec4<f32>(mean${m})) * ok; p${m} += dot(d, d); }`,
        );
      }
      o.push("      }");
      o.push("    }");
      for (let m = 0; m < M; m++) o.push(`    red[${m * T}u + lid] = p${m};`);
      o.push("  }");
      tree(T, "", "lid");
      for (let m = 0; m < M; m++) {
        o.push(
          what === "mean"
            ? `  let mean${m} = red[${m * T}u] / ${K}.0;`
            : `  let rstd${m} = inverseSqrt(red[${m * T}u] / ${K}.0 + ${f32(opts.lnEps!)});`,
        );
      }
      // Everyone has read the total before the buffer is reused.
      o.push("  workgroupBarrier();");
    };
    pass("mean");
    pass("var");
  }
  for (let m = 0; m < M; m++) o.push(`  var acc${m} = 0.0;`);
  const body = (k0: string, len: number, indent: string) => {
    o.push(`${indent}let bv = ${loadB(k0, len)};`);
    if (ln) {
      o.push(`${indent}let gv = ${loadLn("gam_g", k0, len)};`);
      o.push(`${indent}let ev = ${loadLn("bet_g", k0, len)};`);
    }
    for (let m = 0; m < M; m++) {
      let a = loadA(m, k0, len);
      // Padding lanes of a tail chunk have b = 0, so their normalized a never counts.
      if (ln) a = `(${a} - vec4<f32>(mean${m})) * rstd${m} * gv + ev`;
      if (ln && opts.lnAct) a = `pro4_${opts.lnAct}(${a})`;
      if (wHalf) a = `rh4(${a})`;
      o.push(`${indent}acc${m} += dot(${a}, bv);`);
    }
  };
  if (iters > 0) {
    o.push(`  for (var it = 0u; it < ${iters}u; it++) {`);
    o.push(`    let q = kg + it * ${S}u;`);
    const guarded = qFull % S !== 0;
    if (guarded) o.push(`    if (q < ${qFull}u) {`);
    body("q * 4u", 4, guarded ? "      " : "    ");
    if (guarded) o.push("    }");
    o.push("  }");
  }
  if (rem > 0) {
    // The partial last chunk belongs to one k-group.
    o.push(`  if (kg == ${qFull % S}u) {`);
    body(`${qFull * 4}u`, rem, "    ");
    o.push("  }");
  }
  for (let m = 0; m < M; m++) o.push(`  red[${m * T}u + c * ${S}u + kg] = acc${m};`);
  tree(S, `c * ${S}u + `, "kg");
  // Epilogue: output (m, c) by thread m * C + c, so stores coalesce along n.
  o.push(`  for (var i = lid; i < ${M * C}u; i += ${T}u) {`);
  o.push(`    let m = i / ${C}u;`);
  o.push(`    let col = n0 + i % ${C}u;`);
  o.push(dyn ? `    if (col < ${N}u && m < dims.x) {` : `    if (col < ${N}u) {`);
  o.push(`      let idx = c_base + m * ${N}u + col;`);
  let v = `red[(i / ${C}u) * ${T}u + (i % ${C}u) * ${S}u]`;
  if (spec.bias) v = `${v} + bias_g[col]`;
  if (spec.activation) v = `act_${spec.activation}(${v})`;
  if (spec.residual) v = `${v} + res_g[idx]`;
  if (spec.accumulate) v = `${v} + c_g[idx]`;
  o.push(`      let v = ${v};`);
  o.push("      c_g[idx] = v;");
  if (kv) {
    // Columns [HD, 3HD): keys then values, into the cache at position start + i.
    const d = kv.heads * kv.headSize;
    o.push(`      if (col >= ${d}u) {`);
    o.push(`        let half = (col - ${d}u) / ${d}u;`);
    o.push(`        let hj = (col - ${d}u) % ${d}u;`);
    // Run-time rows: t = length - start new tokens per sequence, dims.x / t sequences.
    const seqs = dyn ? "(dims.x / (kvp.length - kvp.start))" : `${kv.seqs}u`;
    const t = dyn ? "(kvp.length - kvp.start)" : `${kv.t}u`;
    o.push(
      `        let slot = ((half * ${seqs} + m / ${t}) * ${kv.heads}u + ` +
        `hj / ${kv.headSize}u) * ${kv.cap}u + kvp.start + m % ${t};`,
    );
    o.push(
      `        kv_g[slot * ${kv.headSize}u + hj % ${kv.headSize}u] = ${
        kvHalf ? toHalf("v") : "v"
      };`,
    );
    o.push("      }");
  }
  o.push("    }");
  o.push("  }");
  o.push("}");
  return o.join("\n") + "\n";
}
