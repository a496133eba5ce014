/**
 * WGSL generator for matmul with f16 storage and f32 accumulation (`--precision f16`, needs
 * the device's `shader-f16`): C[b] = op(A[b])·op(B[b]) (+ bias, activation, residual).
 *
 * Each operand is stored f16 or f32; an f32 operand is rounded to f16 as it is loaded (the
 * cast where an activation or a gradient enters the product, fused, so it costs no dispatch
 * and no buffer). Products and sums are f32. Values beyond the f16 range become +-inf on
 * that rounding (explicitly, since WGSL leaves an out-of-range f32 -> f16 conversion
 * undefined): an overflow shows up as a non-finite result, which the loss-scale guard
 * (kernels/nn/loss_scale.ts) detects. The output is f32, or f16 when asked (rounded the same
 * way).
 *
 * Layout: a 64 x 64 output tile per workgroup of 256 threads, each thread owning rows
 * ty + 16 i and the four adjacent columns 4 tx .. 4 tx + 3 (accumulators are four separate
 * vec4 variables, no private arrays: naga clamps dynamic indices into those, see plan.ts),
 * 16-deep slices of A and B staged in workgroup memory as f32 (B as vec4 rows, so a thread
 * reads its four columns in one conflict-free load; A's reads are broadcasts). Every global access is
 * bounds-checked, so any shape works. `splits` > 1 splits K over workgroups into partial
 * products [splits, batch, M, N] (no epilogue) that the caller sums in a fixed order.
 *
 * Shape-generic rows (`dynamicM`, inference, kernels/ops/dims.ts): M is read from the dims
 * uniform, so one pipeline serves every row count; the tile is chosen per row bucket
 * ({@link f16RowsTile}: 16 x 64 for up to 16 rows, where a 64-row tile would idle 3/4 of its
 * threads, else 64 x 64) and the WGSL depends on the bucket only.
 *
 * @module
 */
import type { Kernel } from "../../core/runtime.ts";
import { activationWgsl, type EpilogueActivation } from "../activation.ts";
import { binding, enables, grid, linearWorkgroup } from "../wgsl.ts";
import { dynamicMBucket, type MatmulGeometry } from "./plan.ts";

/** Storage types an f16-path operand or output may have. */
export type HalfOrFloat = "f16" | "f32";

/** One batched product of the f16 path. A is [batch, M, K] (or [K, M] transposed), etc. */
export interface F16MatmulSpec extends MatmulGeometry {
  aType: HalfOrFloat;
  bType: HalfOrFloat;
  outType: HalfOrFloat;
  /** Add bias[N] (f32, binding 3). */
  bias?: boolean;
  /** Apply this activation after the bias. */
  activation?: EpilogueActivation;
  /** Add R [batch, M, N] (f32, the binding after bias) last. */
  residual?: boolean;
  /** Split K over this many workgroups per tile (partials out, f32, no epilogue). */
  splits?: number;
  /**
   * Read M at run time from a dims uniform (the binding after bias and residual); the source
   * depends on M only through {@link f16RowsTile}. Needs batch 1, A not transposed, no split.
   */
  dynamicM?: boolean;
}

const TILE = 64;
const BUILTINS = "@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32";
const TK = 16;
const THREADS = 256;

/** WGSL `rh(x)`: x rounded to the nearest f16 value, +-inf beyond the f16 range. */
export const ROUND_HALF_WGSL = `fn rh(x: f32) -> f32 {
  // 65520 is the first value that rounds to infinity under round-to-nearest-even.
  if (abs(x) >= 65520.0) { return bitcast<f32>((bitcast<u32>(x) & 0x80000000u) | 0x7f800000u); }
  return f32(f16(x));
}
`;

/**
 * {@link ROUND_HALF_WGSL} plus `rh4(v)`, its vec4 form: where a kernel outside this file (the
 * decode kernels' f16-weight variants) rounds its activations as this product loads them.
 */
export const ROUND_HALF4_WGSL = `${ROUND_HALF_WGSL}fn rh4(v: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(rh(v.x), rh(v.y), rh(v.z), rh(v.w));
}
`;

/**
 * Rows of a workgroup's output tile: 64, or 16 for a shape-generic product of at most 16 rows
 * (its row bucket, codegen/matmul/plan.ts `dynamicMBucket`).
 */
export function f16RowsTile(spec: Pick<F16MatmulSpec, "M" | "dynamicM">): number {
  return spec.dynamicM && dynamicMBucket(spec.M) === 16 ? 16 : TILE;
}

/** Output tiles (workgroups before the split) of a spec. */
export function f16Tiles(spec: F16MatmulSpec): number {
  return spec.batch * Math.ceil(spec.M / f16RowsTile(spec)) * Math.ceil(spec.N / TILE);
}

/** The K range of one split: whole TK slices, so every split but the last is full. */
function kPer(spec: F16MatmulSpec): number {
  const s = spec.splits ?? 1;
  return Math.ceil(Math.ceil(spec.K / TK) / s) * TK;
}

/** The kernel for `spec`. Bindings: a, b, c, then bias, residual and (dynamicM) dims when present. */
export function generateF16Matmul(spec: F16MatmulSpec): Kernel {
  const { batch, M, N, K, transA, transB, aType, bType } = spec;
  const splits = spec.splits ?? 1;
  if (splits > 1 && (spec.bias || spec.activation || spec.residual || spec.outType !== "f32")) {
    throw new Error("f16 matmul: split-K writes f32 partials without an epilogue");
  }
  const dyn = !!spec.dynamicM;
  if (dyn && (batch !== 1 || transA || splits > 1)) {
    throw new Error("f16 matmul: shape-generic rows need batch 1, A not transposed, no split");
  }
  // TM rows per workgroup: thread (tx, ty) owns rows ty + 16 i, i < TM / 16.
  const TM = f16RowsTile(spec);
  const ACC = TM / 16;
  const tilesM = Math.ceil(M / TM);
  const tilesN = Math.ceil(N / TILE);
  const total = splits * batch * tilesM * tilesN;
  // M and the tile count: WGSL expressions (run-time values when dyn).
  const Mx = dyn ? "M" : `${M}u`;
  const load = (buf: string, t: HalfOrFloat, i: string) =>
    t === "f16" ? `f32(${buf}[${i}])` : `rh(${buf}[${i}])`;
  // Tile loads: 1024 values of each operand per slice, 4 per thread, consecutive threads on
  // consecutive addresses of the stored layout.
  const loads: string[] = [];
  for (let e = 0; e < (TM * TK) / THREADS; e++) {
    const idx = `(lid + ${e * THREADS}u)`;
    // A tile As[k][m]
    const [am, ak] = transA
      ? [`${idx} % ${TM}u`, `${idx} / ${TM}u`]
      : [`${idx} / ${TK}u`, `${idx} % ${TK}u`];
    const aAddr = transA ? `aOff + gk * ${M}u + gm` : `aOff + gm * ${K}u + gk`;
    loads.push(`{
      let m = ${am}; let kk = ${ak}; let gm = row0 + m; let gk = k0 + kk;
      var v = 0.0;
      if (gm < ${Mx} && gk < kEnd) { v = ${load("a", aType, aAddr)}; }
      As[kk * ${TM}u + m] = v;
    }`);
  }
  for (let e = 0; e < (TILE * TK) / THREADS; e++) {
    const idx = `(lid + ${e * THREADS}u)`;
    // B tile Bs[k][n] of op(B) = [K, N]
    const [bn, bk] = transB
      ? [`${idx} / ${TK}u`, `${idx} % ${TK}u`]
      : [`${idx} % ${TILE}u`, `${idx} / ${TILE}u`];
    const bAddr = transB ? `bOff + gn * ${K}u + gk` : `bOff + gk * ${N}u + gn`;
    loads.push(`{
      let n = ${bn}; let kk = ${bk}; let gn = col0 + n; let gk = k0 + kk;
      var v = 0.0;
      if (gn < ${N}u && gk < kEnd) { v = ${load("b", bType, bAddr)}; }
      Bs[kk * ${TILE / 4}u + n / 4u][n % 4u] = v;
    }`);
  }
  const math: string[] = [];
  for (let kk = 0; kk < TK; kk++) {
    const base = kk * TM;
    math.push(`{ let bv = Bs[${kk * (TILE / 4)}u + tx];`);
    for (let i = 0; i < ACC; i++) math.push(`  acc${i} += As[${base + 16 * i}u + ty] * bv;`);
    math.push("}");
  }
  const bindings = [
    binding(0, "a", aType),
    binding(1, "b", bType),
    binding(2, "c", spec.outType, true),
  ];
  let next = 3;
  if (spec.bias) bindings.push(binding(next++, "bias", "f32"));
  if (spec.residual) bindings.push(binding(next++, "res", "f32"));
  if (dyn) bindings.push(`@group(0) @binding(${next++}) var<uniform> dims: vec4<u32>;`);
  const write = spec.outType === "f16" ? "f16(rh(v))" : "v";
  const stores: string[] = [];
  for (let i = 0; i < ACC; i++) {
    stores.push(`{
    let r = row0 + ty + ${16 * i}u;
    if (r < ${Mx}) {
      for (var j = 0u; j < 4u; j++) {
        let col = col0 + c4 + j;
        if (col < ${N}u) {
          var v = acc${i}[j];
          ${spec.bias ? "v += bias[col];" : ""}
          ${spec.activation ? `v = act_${spec.activation}(v);` : ""}
          let o = cOff + r * ${N}u + col;
          ${spec.residual ? "v += res[o - sOff];" : ""}
          c[o] = ${write};
        }
      }
    }
  }`);
  }
  // The workgroup's tile, batch entry and split; with dyn, batch 1 and no split.
  const head = dyn
    ? `let M = dims.x;
  let tilesM = (M + ${TM - 1}u) / ${TM}u;
  let w = wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
  if (w >= tilesM * ${tilesN}u) { return; }
  let tn = w % ${tilesN}u;
  let tm = w / ${tilesN}u;
  let bi = 0u;
  let sp = 0u;`
    : `let w = ${linearWorkgroup(total)};
  if (w >= ${total}u) { return; }
  let tn = w % ${tilesN}u;
  let tm = (w / ${tilesN}u) % ${tilesM}u;
  let bi = (w / ${tilesN * tilesM}u) % ${batch}u;
  let sp = w / ${tilesN * tilesM * batch}u;`;
  const code = `${enables("f16")}${bindings.join("\n")}
var<workgroup> As: array<f32, ${TM * TK}>;
var<workgroup> Bs: array<vec4<f32>, ${(TILE * TK) / 4}>;
${ROUND_HALF_WGSL}${spec.activation ? activationWgsl(spec.activation) : ""}
@compute @workgroup_size(${THREADS})
fn main(${dyn ? `${BUILTINS}, @builtin(num_workgroups) nwg: vec3<u32>` : BUILTINS}) {
  ${head}
  let row0 = tm * ${TM}u;
  let col0 = tn * ${TILE}u;
  let aOff = bi * ${spec.aBatchStride}u;
  let bOff = bi * ${spec.bBatchStride}u;
  let sOff = sp * ${dyn ? `M * ${N}u` : `${batch * M * N}u`};
  let cOff = sOff + bi * ${dyn ? `M * ${N}u` : `${M * N}u`};
  let kBegin = sp * ${kPer(spec)}u;
  let kEnd = min(${K}u, kBegin + ${kPer(spec)}u);
  let tx = lid % 16u;
  let ty = lid / 16u;
  let c4 = tx * 4u;
  ${Array.from({ length: ACC }, (_, i) => `var acc${i} = vec4<f32>(0.0);`).join("\n  ")}
  for (var k0 = kBegin; k0 < kEnd; k0 += ${TK}u) {
    ${loads.join("\n    ")}
    workgroupBarrier();
    ${math.join("\n    ")}
    workgroupBarrier();
  }
  ${stores.join("\n  ")}
}
`;
  const rowsLabel = dyn ? `*${TM === 16 ? "<=16" : ">16"}` : `${M}`;
  const label = `matmul.f16(${batch}x${rowsLabel}x${N}x${K}${transA ? " tA" : ""}${
    transB ? " tB" : ""
  } ${aType}·${bType}->${spec.outType}${splits > 1 ? ` split ${splits}` : ""})`;
  return { code, label, workgroups: grid(total) };
}

/**
 * Splits for a product with few output tiles and a long K (weight gradients): enough
 * workgroups to fill a large GPU (about 264), each split at least 256 deep, at most 32.
 */
export function chooseF16Splits(spec: F16MatmulSpec): number {
  const tiles = f16Tiles(spec);
  if (tiles >= 264 || spec.K < 1024) return 1;
  return Math.max(1, Math.min(32, Math.ceil(264 / tiles), Math.floor(spec.K / 256)));
}
