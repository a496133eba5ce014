/**
 * Shape-generic GEMM for inference with 17..1024 rows and a long K (the `<= 1024` row bucket
 * of `planDynamicM`, plan.ts): K is split WITHIN each workgroup, so a product stays one
 * dispatch, its WGSL does not depend on M (read from the dims uniform), and no split-K scratch
 * or reduce pass is needed.
 *
 * Why: the plain tiled kernel gives a 64 x 768 x 3072 product 48 workgroups that each loop
 * over 192 serial 16-deep k-slices, and a 256-row one 192 such workgroups; on an H200 both
 * took ~171 us (latency-bound, ~0.9 us per slice), against ~25 us of FLOPs and ~2 us of weight
 * traffic.
 *
 * Layout of one workgroup: one small TM x TN output tile (16 x 32, or 32 x 16 when N <= 16)
 * computed by S "k-groups" of T = (TM / RM) * (TN / RN) threads each (4 x 4 outputs per
 * thread). Each k-group is the plain kernel of emit.ts (same loads, same unrolled k-block,
 * its own TK-deep slices of A and B in workgroup memory) over every S-th slice: k-group g
 * takes slices g, g + S, g + 2S, ..., so all groups run the same number of trips (the
 * barriers stay uniform) and a k-group past the end only skips its stores and math. A partial
 * last slice (K % TK) goes to the k-group whose turn it is. Then the S partial tiles are added
 * in workgroup memory in the fixed order 0 + 1 + ... + (S - 1) (k-group 0 adds the others
 * through P slots, in rounds when fewer than S - 1 fit), and k-group 0 runs the epilogue of
 * emit.ts (bias, activation, residual, accumulate): deterministic, replay == eager.
 *
 * Occupancy, read from the WGSL for an H200 (132 SMs; not measured yet), S = 8 (256 threads,
 * 26 KB of workgroup memory: 24 KB of slices, one 2 KB reduction slot per round):
 * - fc2 M x 768 x 3072: 24 trips per thread (was 192); 96 workgroups at M = 64 (was 48 of 64
 *   threads), 384 at M = 256 (was 192 of 64 threads: 2.9 per SM, 745 threads per SM).
 * - qkv M x 2304 x 768, fc1 M x 3072 x 768, proj M x 768 x 768: 6 trips (was 48); at M = 256
 *   1152, 1536 and 384 workgroups, at M = 64 288, 384 and 96.
 * The reduction costs ceil(7 / P) rounds of two barriers and M-independent work.
 *
 * @module
 */

import type { MatmulLimits, MatmulSpec, MatmulTile } from "./plan.ts";
import {
  emitAccumulators,
  emitCompute,
  emitEpilogue,
  emitFetch,
  emitGroupedTile,
  emitLoadSetup,
  emitShare,
  type Operand,
} from "./emit.ts";
import { activationWgsl } from "../activation.ts";

/** K split inside the workgroup: S k-groups, `buffers` slice buffers each, P reduction slots. */
export interface SplitRowsShape {
  S: number;
  buffers: 1 | 2;
  P: number;
}

/** Products whose K exceeds this many 16-deep slices take the kernel (shorter K: few trips). */
export const SPLIT_ROWS_MIN_SLICES = 16;
/** At most this many threads per workgroup (portable, and 8 resident workgroups per SM). */
const MAX_THREADS = 256;

/** The output tile: 16 x 32 (32 x 16 when N <= 16), 16 deep, 4 x 4 outputs per thread. */
export function splitRowsTile(spec: MatmulSpec): MatmulTile {
  return spec.N <= 16
    ? { TM: 32, TN: 16, TK: 16, RM: 4, RN: 4 }
    : { TM: 16, TN: 32, TK: 16, RM: 4, RN: 4 };
}

/** Workgroup memory bytes of a shape with `tile`. */
function bytesOf(tile: MatmulTile, s: SplitRowsShape): number {
  return (s.S * s.buffers * (tile.TM + tile.TN) * tile.TK + s.P * tile.TM * tile.TN) * 4;
}

/**
 * Whether a shape-generic spec takes this kernel: batch 1, A [M, K], K longer than
 * SPLIT_ROWS_MIN_SLICES slices. (The caller decides the row bucket.)
 */
export function isSplitRows(spec: MatmulSpec): boolean {
  return spec.batch === 1 && !spec.transA && !spec.sumK && spec.splitK === undefined &&
    Math.ceil(spec.K / 16) > SPLIT_ROWS_MIN_SLICES;
}

/**
 * The k-group count: the most (a power of two, at most MAX_THREADS threads and one slice per
 * k-group) whose slices and one reduction slot fit the limits; then double buffers if they
 * still fit, then as many reduction slots as fit (up to S - 1). Null when not even S = 2 fits.
 */
export function chooseSplitRows(
  spec: MatmulSpec,
  tile: MatmulTile,
  limits: MatmulLimits,
): SplitRowsShape | null {
  const T = (tile.TM / tile.RM) * (tile.TN / tile.RN);
  const slices = Math.floor(spec.K / tile.TK);
  const room = limits.maxComputeWorkgroupStorageSize;
  const maxThreads = Math.min(MAX_THREADS, limits.maxComputeInvocationsPerWorkgroup);
  let S = 2 ** Math.floor(Math.log2(Math.max(1, Math.min(maxThreads / T, slices))));
  while (S >= 2 && bytesOf(tile, { S, buffers: 1, P: 1 }) > room) S /= 2;
  if (S < 2) return null;
  const buffers = bytesOf(tile, { S, buffers: 2, P: 1 }) <= room ? 2 : 1;
  let P = 1;
  while (P < S - 1 && bytesOf(tile, { S, buffers, P: P + 1 }) <= room) P++;
  return { S, buffers, P };
}

/**
 * The complete shader of a shape-generic (`spec.dynamicM`) product with K split over
 * `shape.S` k-groups. Bindings as the plain shape-generic kernel (plan.ts `planMatmul`): 0 A
 * [M, K], 1 B, 2 C [M, N] (runtime-sized), 3 bias when `spec.bias`, then the residual when
 * `spec.residual`, then the dims uniform (x = M). Dispatch ceil(M / TM) * ceil(N / TN)
 * workgroups (folded; the kernel reads `num_workgroups`).
 */
export function generateSplitRows(
  spec: MatmulSpec,
  tile: MatmulTile,
  shape: SplitRowsShape,
  sizes: { b: number },
  label: string,
): string {
  const { N, K, transB } = spec;
  const { TM, TN, TK, RM, RN } = tile;
  const { S, buffers, P } = shape;
  if (!spec.dynamicM || !isSplitRows(spec)) {
    throw new Error(`matmul: ${label} does not fit the split-rows kernel`);
  }
  const T = (TM / RM) * (TN / RN);
  const tilesM = `((dims.x + ${TM - 1}u) / ${TM}u)`;
  const tilesN = Math.ceil(N / TN);
  const fullN = Math.floor(N / TN);
  const aVec = K % 4 === 0;
  const bVec = transB ? K % 4 === 0 : N % 4 === 0;
  const cVec = N % 4 === 0;
  const op = (name: string, Tx: number, X: number | string, kContig: boolean, vec: boolean) =>
    ({
      name,
      T: Tx,
      X,
      K,
      kContig,
      vec,
      guardX: name === "a" || fullN < tilesN,
      base: `${name}_base`,
      x0: name === "a" ? "m0" : "n0",
      threads: T,
      TK,
    }) satisfies Operand;
  const a = op("a", TM, "dims.x", true, aVec);
  const b = op("b", TN, N, transB, bVec);
  const kFull = Math.floor(K / TK);
  const kRem = K % TK;
  const trips = Math.ceil(kFull / S);
  const ragged = kFull % S !== 0;
  const arr = (vec: boolean, n?: number) =>
    n === undefined
      ? `array<${vec ? "vec4<f32>" : "f32"}>`
      : vec
      ? `array<vec4<f32>, ${n / 4}>`
      : `array<f32, ${n}>`;
  const acc = RM * (RN / 4);

  const o: string[] = [];
  o.push(
    `// ${label}: split rows, tile ${TM}x${TN}x${TK}, ${RM}x${RN} per thread, ${S} k-groups ` +
      `of ${T} threads, ${trips} trips, ${buffers}x shared, ${P} reduction slots`,
  );
  o.push(`@group(0) @binding(0) var<storage, read> a_g: ${arr(aVec)};`);
  o.push(`@group(0) @binding(1) var<storage, read> b_g: ${arr(bVec, sizes.b)};`);
  o.push(`@group(0) @binding(2) var<storage, read_write> c_g: ${arr(cVec)};`);
  let at = 3;
  if (spec.bias) o.push(`@group(0) @binding(${at++}) var<storage, read> bias_g: ${arr(cVec, N)};`);
  if (spec.residual) o.push(`@group(0) @binding(${at++}) var<storage, read> res_g: ${arr(cVec)};`);
  o.push(`@group(0) @binding(${at++}) var<uniform> dims: vec4<u32>;`);
  if (spec.activation) o.push(activationWgsl(spec.activation));
  const slice = (Tx: number) => `array<array<vec4<f32>, ${Tx / 4}>, ${TK}>`;
  o.push(`var<workgroup> sh_a: array<${slice(TM)}, ${S * buffers}>;`);
  o.push(`var<workgroup> sh_b: array<${slice(TN)}, ${S * buffers}>;`);
  // A partial tile per slot, vec4 accumulator i of thread lid at [i * T + lid] (conflict-free).
  o.push(`var<workgroup> red: array<array<vec4<f32>, ${acc * T}>, ${P}>;`);
  o.push("");
  o.push(`@compute @workgroup_size(${S * T})`);
  o.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, " +
      "@builtin(local_invocation_index) li: u32, @builtin(num_workgroups) nwg: vec3<u32>) {",
  );
  o.push("  let lin = wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;");
  // Workgroup-uniform, so the barriers below stay legal.
  o.push(`  if (lin >= ${tilesM} * ${tilesN}u) { return; }`);
  // Grouped order (as emit.ts), for L2 reuse of B.
  o.push(...emitGroupedTile("lin", tilesM, tilesN, TM, TN));
  o.push("  let a_base = 0u;", "  let b_base = 0u;", "  let c_base = 0u;");
  // The k-group, and the thread within it (the names emit.ts's pieces use).
  o.push(`  let kg = li / ${T}u;`);
  o.push(`  let lid = li % ${T}u;`);
  o.push(`  let tx = lid % ${TN / RN}u;`);
  o.push(`  let ty = lid / ${TN / RN}u;`);
  o.push(emitLoadSetup(a));
  o.push(emitLoadSetup(b));
  o.push(...emitAccumulators(RM, RN));
  const bufOf = (parity: string) => buffers === 1 ? "kg" : `kg * 2u + ${parity}`;
  if (kFull > 0) {
    // Slice kg first; each trip then prefetches the k-group's next slice (or, past the end,
    // re-fetches its last one, in bounds and unused) before the math on the current one.
    o.push(`  if (kg < ${kFull}u) {`);
    o.push(emitFetch(a, `kg * ${TK}u`, TK, "    "), emitFetch(b, `kg * ${TK}u`, TK, "    "));
    o.push("  }");
    o.push(`  for (var it = 0u; it < ${trips}u; it++) {`);
    o.push(`    let sl = it * ${S}u + kg;`);
    o.push(`    let buf = ${bufOf("(it & 1u)")};`);
    const open = ragged ? `    if (sl < ${kFull}u) {` : "    {";
    o.push(open, emitShare(a, TK, "buf", "      "), emitShare(b, TK, "buf", "      "), "    }");
    o.push("    workgroupBarrier();");
    if (trips > 1) {
      o.push(`    { let kn = min(sl + ${S}u, ${kFull - 1}u) * ${TK}u;`);
      o.push(emitFetch(a, "kn", TK, "      "), emitFetch(b, "kn", TK, "      ") + " }");
    }
    o.push(open, emitCompute(tile, TK, "buf", "      "), "    }");
    if (buffers === 1) o.push("    workgroupBarrier();");
    o.push("  }");
  }
  if (kRem > 0) {
    // The partial slice: the k-group whose turn it is, in the buffer it did not read last
    // (with two buffers; last read before the final trip's barrier).
    const tg = kFull % S;
    const buf = buffers === 1 ? `${tg}u` : `${tg * 2 + (trips % 2)}u`;
    const k0 = `${kFull * TK}u`;
    o.push(`  if (kg == ${tg}u) {`);
    o.push(emitFetch(a, k0, kRem, "    "), emitFetch(b, k0, kRem, "    "));
    o.push(emitShare(a, kRem, buf, "    "), emitShare(b, kRem, buf, "    "));
    o.push("  }");
    o.push("  workgroupBarrier();");
    o.push(`  if (kg == ${tg}u) {`, emitCompute(tile, kRem, buf, "    "), "  }");
  }
  // Fixed-order reduction: k-group 0 adds k-groups 1..S-1 in order, P of them per round.
  const accName = (i: number) => `c${Math.floor(i / (RN / 4))}_${i % (RN / 4)}`;
  const rounds = Math.ceil((S - 1) / P);
  for (let r = 0; r < rounds; r++) {
    const g0 = 1 + r * P;
    const n = Math.min(P, S - g0);
    const stores = Array.from(
      { length: acc },
      (_, i) => `red[kg - ${g0}u][${i * T}u + lid] = ${accName(i)};`,
    ).join(" ");
    o.push(`  if (kg >= ${g0}u && kg < ${g0 + n}u) { ${stores} }`);
    o.push("  workgroupBarrier();");
    const adds: string[] = [];
    for (let p = 0; p < n; p++) {
      for (let i = 0; i < acc; i++) adds.push(`${accName(i)} += red[${p}u][${i * T}u + lid];`);
    }
    o.push(`  if (kg == 0u) { ${adds.join(" ")} }`);
    if (r < rounds - 1) o.push("  workgroupBarrier();");
  }
  o.push("  if (kg == 0u) {");
  o.push(`    if (tm < (dims.x / ${TM}u) && tn < ${fullN}u) {`);
  o.push(emitEpilogue(spec, tile, false, "      "));
  o.push("    } else {");
  o.push(emitEpilogue(spec, tile, true, "      "));
  o.push("    }");
  o.push("  }");
  o.push("}");
  return o.join("\n") + "\n";
}
