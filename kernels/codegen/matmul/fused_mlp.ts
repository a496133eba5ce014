/**
 * A decode MLP in one dispatch (M <= 16 rows): partial-sum prologue, layer norm, fc1, an
 * activation, and fc2 as per-workgroup partial products.
 *
 *   h   = residual + pbias + parts[0] + ... + parts[P-1]        [M, K] (workgroup 0 writes h)
 *   u   = act(layerNorm(h) · W1^T + b1)                          [M, F]
 *   out[g] = u[:, g C .. g C + C) · W2[:, g C .. g C + C)^T      [G, M, N], G = ceil(F / C)
 *
 * so sum_g out[g] + b2 is fc2(u) + b2. The next kernel sums the G partials in its prologue
 * (the skinny kernel's `sumParts`, in a fixed order: deterministic); this saves the fc2
 * dispatch of a decode layer (transformer.ts `decodeMlpParts`).
 *
 * Workgroup g owns fc1 columns [g C, g C + C): its S x C threads compute them as the skinny
 * kernel does (S k-groups per column, a fixed-order tree in workgroup memory), keep act(u) in
 * workgroup memory, and then multiply by the matching C columns of W2 (thread n of T takes
 * outputs n, n + T, ...; each reads C contiguous floats of W2's row n). The prologue's h is
 * staged in workgroup memory once per row block; rows run in blocks of R when R x K floats do
 * not fit (as the skinny kernel's staged prologue).
 *
 * f16 weights (`spec.wHalf`, `--precision f16`): W1 and W2 are their f16 copies, widened on
 * load; the normalized rows and act(u) are rounded to f16 as the f16 product rounds its A.
 *
 * Cost note: each workgroup reads W1 and W2 slices once (both weights are streamed exactly
 * once per dispatch), but every reader of the G partials re-reads G x M x N floats, so C is
 * chosen large (64) to keep G small.
 *
 * @module
 */
import { activationWgsl, type EpilogueActivation } from "../activation.ts";
import { f32 } from "../wgsl.ts";
import { ROUND_HALF4_WGSL } from "./f16.ts";

/** Sizes of a fused decode MLP. */
export interface FusedMlpSpec {
  /** Rows (<= 16). */
  M: number;
  /** Input width (K % 4 == 0). */
  K: number;
  /** Hidden width, fc1's outputs (F % 4 == 0). */
  F: number;
  /** fc2's outputs. */
  N: number;
  /** Partial products summed in the prologue (>= 1). */
  P: number;
  activation: EpilogueActivation;
  lnEps: number;
  /** W1 and W2 stored f16 (the weights' f16 copies); absent: f32, the WGSL of before. */
  wHalf?: boolean;
}

/** Workgroup shape: C fc1 columns and S k-groups per workgroup, rows in blocks of R. */
export interface FusedMlpShape {
  C: number;
  S: number;
  R: number;
  /** Workgroups (= partial products) G = ceil(F / C). */
  G: number;
}

/** Device limits the plan reads. */
export interface FusedMlpLimits {
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupStorageSize: number;
  maxStorageBuffersPerShaderStage?: number;
}

const COLUMNS = 64;
const THREADS = 256;
/** Storage buffers the kernel binds. */
export const FUSED_MLP_BUFFERS = 10;

const floorPow2 = (x: number) => 2 ** Math.floor(Math.log2(Math.max(1, x)));

/**
 * The workgroup shape for `spec` on a device, or null where the kernel does not apply (rows
 * above 16, K or F not a multiple of 4, too few storage buffers, no room for one row).
 */
export function planFusedMlp(spec: FusedMlpSpec, limits: FusedMlpLimits): FusedMlpShape | null {
  const { M, K, F, N, P } = spec;
  if (M < 1 || M > 16 || K % 4 !== 0 || F % 4 !== 0 || P < 1 || N < 1 || K < 4) return null;
  if ((limits.maxStorageBuffersPerShaderStage ?? 8) < FUSED_MLP_BUFFERS) return null;
  const T = Math.min(THREADS, floorPow2(limits.maxComputeInvocationsPerWorkgroup));
  const C = Math.min(COLUMNS, T);
  const S = T / C;
  // Workgroup floats per row: staged h (K), reduction (T), act(u) (C).
  const perRow = 4 * (K + T + C);
  const maxR = Math.floor(limits.maxComputeWorkgroupStorageSize / perRow);
  if (maxR < 1) return null;
  const blocks = Math.ceil(M / Math.min(M, maxR));
  const R = Math.ceil(M / blocks);
  return { C, S, R, G: Math.ceil(F / C) };
}

/**
 * WGSL of the fused MLP. Bindings: 0 parts [P, M, K], 1 residual [M, K], 2 pbias [K],
 * 3 gamma [K], 4 beta [K], 5 W1 [F, K], 6 b1 [F], 7 W2 [N, F], 8 h out [M, K],
 * 9 partial products out [G, M, N].
 */
export function generateFusedMlp(spec: FusedMlpSpec, shape: FusedMlpShape, label: string): string {
  const { M, K, F, N, P, activation } = spec;
  const { C, S, R, G } = shape;
  const T = C * S;
  const K4 = K / 4, F4 = F / 4, C4 = C / 4, MK4 = M * K4;
  const qIters = Math.ceil(K4 / S);
  const statIters = Math.ceil(K4 / T);
  const o: string[] = [];
  const wh = !!spec.wHalf;
  const WT = wh ? "f16" : "f32";
  if (wh) o.push("enable f16;");
  o.push(`// ${label}: fused decode MLP, ${C} fc1 columns x ${S} k-groups, ${G} partials`);
  o.push(`@group(0) @binding(0) var<storage, read> parts_g: array<vec4<f32>, ${P * MK4}>;`);
  o.push(`@group(0) @binding(1) var<storage, read> res_g: array<vec4<f32>, ${MK4}>;`);
  o.push(`@group(0) @binding(2) var<storage, read> pbias_g: array<vec4<f32>, ${K4}>;`);
  o.push(`@group(0) @binding(3) var<storage, read> gam_g: array<vec4<f32>, ${K4}>;`);
  o.push(`@group(0) @binding(4) var<storage, read> bet_g: array<vec4<f32>, ${K4}>;`);
  o.push(`@group(0) @binding(5) var<storage, read> w1_g: array<vec4<${WT}>, ${F * K4}>;`);
  o.push(`@group(0) @binding(6) var<storage, read> b1_g: array<f32, ${F}>;`);
  o.push(`@group(0) @binding(7) var<storage, read> w2_g: array<vec4<${WT}>, ${N * F4}>;`);
  o.push(`@group(0) @binding(8) var<storage, read_write> h_g: array<vec4<f32>, ${MK4}>;`);
  o.push(`@group(0) @binding(9) var<storage, read_write> out_g: array<f32, ${G * M * N}>;`);
  o.push(`var<workgroup> hs: array<vec4<f32>, ${R * K4}>;`);
  o.push(`var<workgroup> red: array<f32, ${R * T}>;`);
  o.push(`var<workgroup> us: array<vec4<f32>, ${R * C4}>;`);
  o.push(activationWgsl(activation));
  if (wh) o.push(ROUND_HALF4_WGSL);
  o.push(`@compute @workgroup_size(${T})`);
  o.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, " +
      "@builtin(local_invocation_index) lid: u32) {",
  );
  o.push("  let g = wid.x;");
  o.push(`  let j0 = g * ${C}u;`);
  // k-group fastest: a warp reads consecutive vec4 of one W1 row (as the skinny kernel).
  o.push(`  let kg = lid % ${S}u;`);
  o.push(`  let c = lid / ${S}u;`);
  o.push(`  let j = min(j0 + c, ${F - 1}u);`);
  // Valid vec4 chunks of this workgroup's W2 slice (the last workgroup may have fewer).
  o.push(`  let nch = (min(j0 + ${C}u, ${F}u) - j0) / 4u;`);
  const tree = (rows: number, count: number, base: string, i: string) => {
    o.push("  workgroupBarrier();");
    for (let s = count / 2; s >= 1; s /= 2) {
      const adds = Array.from({ length: rows }, (_, m) => {
        const at = `${m * T}u + ${base}${i}`;
        return `red[${at}] += red[${at} + ${s}u];`;
      });
      o.push(`  if (${i} < ${s}u) { ${adds.join(" ")} }`);
      o.push("  workgroupBarrier();");
    }
  };
  for (let r0 = 0; r0 < M; r0 += R) {
    const rows = Math.min(R, M - r0);
    if (r0 > 0) o.push("  workgroupBarrier();");
    o.push("  {");
    // Prologue: h = residual + pbias + parts (fixed order, as the skinny kernel's sumParts).
    o.push(`  for (var e = lid; e < ${rows * K4}u; e += ${T}u) {`);
    o.push(`    let gi = ${r0 * K4}u + e;`);
    o.push(`    var v = res_g[gi] + pbias_g[e % ${K4}u];`);
    for (let p = 0; p < P; p++) o.push(`    v += parts_g[${p * MK4}u + gi];`);
    o.push("    hs[e] = v;");
    o.push("    if (g == 0u) { h_g[gi] = v; }");
    o.push("  }");
    o.push("  workgroupBarrier();");
    // Row statistics (two passes, the layerNorm op's formula), trees over all T threads.
    for (const what of ["mean", "var"] as const) {
      o.push(`  { ${Array.from({ length: rows }, (_, m) => `var p${m} = 0.0;`).join(" ")}`);
      o.push(`    for (var it = 0u; it < ${statIters}u; it++) {`);
      o.push(`      let q = lid + it * ${T}u;`);
      o.push(`      if (q < ${K4}u) {`);
      for (let m = 0; m < rows; m++) {
        const v = `hs[${m * K4}u + q]`;
        o.push(
          what === "mean"
            ? `        p${m} += dot(${v}, vec4<f32>(1.0));`
            : `        { let d = ${v} - vec4<f32>(mean${m}); p${m} += dot(d, d); }`,
        );
      }
      o.push("      }");
      o.push("    }");
      for (let m = 0; m < rows; m++) o.push(`    red[${m * T}u + lid] = p${m};`);
      o.push("  }");
      tree(rows, T, "", "lid");
      for (let m = 0; m < rows; m++) {
        o.push(
          what === "mean"
            ? `  let mean${m} = red[${m * T}u] / ${K}.0;`
            : `  let rstd${m} = inverseSqrt(red[${m * T}u] / ${K}.0 + ${f32(spec.lnEps)});`,
        );
      }
      o.push("  workgroupBarrier();");
    }
    // fc1: column j, k-group kg takes chunks kg, kg + S, ...
    for (let m = 0; m < rows; m++) o.push(`  var acc${m} = 0.0;`);
    o.push(`  for (var it = 0u; it < ${qIters}u; it++) {`);
    o.push(`    let q = kg + it * ${S}u;`);
    const guarded = K4 % S !== 0;
    const ind = guarded ? "      " : "    ";
    if (guarded) o.push(`    if (q < ${K4}u) {`);
    o.push(`${ind}let bv = ${wh ? `vec4<f32>(w1_g[j * ${K4}u + q])` : `w1_g[j * ${K4}u + q]`};`);
    o.push(`${ind}let gv = gam_g[q];`);
    o.push(`${ind}let ev = bet_g[q];`);
    for (let m = 0; m < rows; m++) {
      const n = `(hs[${m * K4}u + q] - vec4<f32>(mean${m})) * rstd${m} * gv + ev`;
      const a = wh ? `rh4(${n})` : n;
      o.push(`${ind}acc${m} += dot(${a}, bv);`);
    }
    if (guarded) o.push("    }");
    o.push("  }");
    for (let m = 0; m < rows; m++) o.push(`  red[${m * T}u + c * ${S}u + kg] = acc${m};`);
    tree(rows, S, `c * ${S}u + `, "kg");
    // act(u + b1) into workgroup memory; columns past F are 0 (never multiplied: nch).
    o.push(`  for (var i = lid; i < ${rows * C}u; i += ${T}u) {`);
    o.push(`    let m = i / ${C}u;`);
    o.push(`    let cc = i % ${C}u;`);
    o.push(`    let col = j0 + cc;`);
    o.push(`    var v = 0.0;`);
    o.push(
      `    if (col < ${F}u) { v = ${
        wh ? "rh(" : ""
      }act_${activation}(red[m * ${T}u + cc * ${S}u] + ` +
        `b1_g[col])${wh ? ")" : ""}; }`,
    );
    o.push(`    us[m * ${C4}u + cc / 4u][cc % 4u] = v;`);
    o.push("  }");
    o.push("  workgroupBarrier();");
    // fc2 partial: outputs n = lid, lid + T, ... of every row of the block.
    o.push(`  for (var n = lid; n < ${N}u; n += ${T}u) {`);
    for (let m = 0; m < rows; m++) o.push(`    var o${m} = 0.0;`);
    o.push(`    let wb = n * ${F4}u + j0 / 4u;`);
    o.push("    for (var q = 0u; q < nch; q++) {");
    o.push(wh ? "      let wv = vec4<f32>(w2_g[wb + q]);" : "      let wv = w2_g[wb + q];");
    for (let m = 0; m < rows; m++) o.push(`      o${m} += dot(us[${m * C4}u + q], wv);`);
    o.push("    }");
    for (let m = 0; m < rows; m++) {
      o.push(`    out_g[(g * ${M}u + ${r0 + m}u) * ${N}u + n] = o${m};`);
    }
    o.push("  }");
    o.push("  }");
  }
  o.push("}");
  return o.join("\n") + "\n";
}
