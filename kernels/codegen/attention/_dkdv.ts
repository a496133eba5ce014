/**
 * Backward dK/dV kernel of the fused attention (see _backward.ts): a workgroup per
 * BC-key block, NS threads per key holding D/NS dims of k, v and of the dK, dV accumulators,
 * looping over BR-query tiles from the first one the causal mask lets see the block.
 *
 * @module
 */

import {
  type AttentionLimits,
  blockCap,
  dropoutWgsl,
  headSplit,
  type ResolvedSpec,
  rowFn,
  tensorAddr,
} from "./common.ts";
import { f32 } from "../wgsl.ts";
import { attentionLabel, lines } from "./_tiles.ts";

/** log2(e) as a WGSL literal: lse is stored in natural log, the kernels work in base 2. */
export const LOG2E = f32(Math.LOG2E);

export interface ColTile {
  BC: number;
  BR: number;
  NS: number;
  /** Keys per thread. */
  RK: number;
}

function colTileBytes(t: ColTile, D: number): number {
  return 2 * t.BR * D * 4 + 3 * t.BR * 4 + 2 * t.NS * t.BC * (t.BR + 1) * 4;
}

export function chooseColTile(r: ResolvedSpec, limits: AttentionLimits): ColTile {
  const NS = r.tiles.split ?? headSplit(r.D);
  const RK = r.tiles.dkdvCols ?? 1;
  const fits = (t: ColTile) =>
    t.BC % RK === 0 &&
    (t.BC / RK) * NS <= limits.maxComputeInvocationsPerWorkgroup &&
    colTileBytes(t, r.D) <= limits.maxComputeWorkgroupStorageSize;
  if (r.tiles.dkdv) {
    const t = { BC: r.tiles.dkdv[0], BR: r.tiles.dkdv[1], NS, RK };
    if (!fits(t)) {
      throw new Error(
        `attention: dK/dV tile ${r.tiles.dkdv} exceeds device limits (or ${RK} keys per ` +
          `thread do not divide ${t.BC})`,
      );
    }
    return t;
  }
  const capBC = blockCap(r.S);
  const capBR = blockCap(r.Tq);
  const candidates = [[64, 16], [32, 16], [32, 8], [16, 8], [8, 8], [4, 4]];
  for (const [BC0, BR0] of candidates) {
    // Round the key block up to a multiple of RK (surplus keys are masked like any past S).
    const BC = Math.ceil(Math.min(BC0, capBC) / RK) * RK;
    const t = { BC, BR: Math.min(BR0, capBR), NS, RK };
    if (fits(t)) return t;
  }
  throw new Error(`attention: no dK/dV tile fits D=${r.D} in the device limits`);
}

/** Input binding declarations: q, k, v (or qkv), then the given extra read-only inputs. */
export function inputDecls(r: ResolvedSpec, extra: { name: string; type: string }[]): string[] {
  const packed = r.layout === "packed_qkv";
  const names = [...(packed ? ["qkv"] : ["q", "k", "v"])];
  const out = names.map((n, b) =>
    `@group(0) @binding(${b}) var<storage, read> ${n}: array<vec4<f32>>;`
  );
  for (const e of extra) {
    out.push(`@group(0) @binding(${out.length}) var<storage, read> ${e.name}: ${e.type};`);
  }
  return out;
}

export function inputNames(r: ResolvedSpec): string[] {
  return r.layout === "packed_qkv" ? ["qkv"] : ["q", "k", "v"];
}

export function dkdvCode(r: ResolvedSpec, t: ColTile, gridX: number): string {
  const { BC, BR, NS, RK } = t;
  const D4 = r.D / 4;
  const DH4 = D4 / NS;
  const BCt = BC / RK;
  const NT = BCt * NS;
  const PR = BR + 1; // padded partial row (no bank conflicts)
  const NKB = Math.ceil(r.S / BC);
  const NQT = Math.ceil(r.Tq / BR);
  const OFF = r.S - r.Tq;
  const packed = r.layout === "packed_qkv";
  const [qN, kN, vN] = packed ? ["qkv", "qkv", "qkv"] : ["q", "k", "v"];
  const decl = inputDecls(r, [
    { name: "dO", type: "array<vec4<f32>>" },
    { name: "lse", type: "array<f32>" },
    { name: "delta", type: "array<f32>" },
  ]);
  let b = decl.length;
  const paramsBinding = b++;
  const outs = packed ? ["dqkv"] : ["dK", "dV"];
  for (const n of outs) {
    decl.push(`@group(0) @binding(${b++}) var<storage, read_write> ${n}: array<vec4<f32>>;`);
  }
  const [dkN, dvN] = packed ? ["dqkv", "dqkv"] : ["dK", "dV"];
  const lim = r.causal ? `min(ii + ${OFF}u, ${r.S - 1}u)` : `${r.S - 1}u`;
  const t0 = r.causal
    ? `select(0u, (blk * ${BC}u - ${OFF}u) / ${BR}u, blk * ${BC}u > ${OFF}u)`
    : "0u";
  const keys = (f: (x: number) => string, sep = "\n") => lines(RK, f, sep);
  const sum = (arr: string, x: number) =>
    lines(NS, (s) => `${arr}[${s * BC * PR}u + c${x} * ${PR}u + rr]`, " + ");
  return `// ${
    attentionLabel(r, "backward dK/dV")
  }; ${BC} keys x ${BR}-query tiles, ${NS} threads per key, ${RK} keys per thread
${decl.join("\n")}
${dropoutWgsl(paramsBinding)}
${rowFn("q", tensorAddr(r, "q"), r.H)}
${rowFn("k", tensorAddr(r, "k"), r.H)}
${rowFn("v", tensorAddr(r, "v"), r.H)}
${rowFn("do", tensorAddr(r, "dO"), r.H)}
${rowFn("dk", tensorAddr(r, "dK"), r.H)}
${rowFn("dv", tensorAddr(r, "dV"), r.H)}

var<workgroup> qt: array<vec4<f32>, ${BR * D4}>;
var<workgroup> gt: array<vec4<f32>, ${BR * D4}>;
var<workgroup> lt: array<f32, ${BR}>;
var<workgroup> dt: array<f32, ${BR}>;
var<workgroup> rht: array<u32, ${BR}>;
var<workgroup> ps: array<f32, ${NS * BC * PR}>;
var<workgroup> pg: array<f32, ${NS * BC * PR}>;

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let lin = wg.x + wg.y * ${gridX}u;
  if (lin >= ${NKB * r.BH}u) { return; }
  let bh = lin / ${NKB}u;
  let blk = lin % ${NKB}u;
  let ct = lid % ${BCt}u;
  let sp = lid / ${BCt}u;
${
    keys((x) =>
      `  let c${x} = ct + ${x * BCt}u;
  let j${x} = blk * ${BC}u + c${x};
  let kb${x} = k_row(bh, min(j${x}, ${r.S - 1}u)) + sp * ${DH4}u;
  let vb${x} = v_row(bh, min(j${x}, ${r.S - 1}u)) + sp * ${DH4}u;
${lines(DH4, (k) => `  let k${x}_${k} = ${kN}[kb${x} + ${k}u] * ${f32(r.scale * Math.LOG2E)};`)}
${lines(DH4, (k) => `  let v${x}_${k} = ${vN}[vb${x} + ${k}u];`)}
${lines(DH4, (k) => `  var dk${x}_${k} = vec4<f32>(0.0);\n  var dv${x}_${k} = vec4<f32>(0.0);`)}`
    )
  }
${
    r.dropout
      ? `  let thr = drop_threshold();
  let inv = 1.0 / (1.0 - params.p);`
      : `  _ = params.seed; // keep the binding in the layout`
  }
  // The causal mask hides this key block from every query tile before t0.
  for (var tile = ${t0}; tile < ${NQT}u; tile++) {
    let i0 = tile * ${BR}u;
    for (var e = lid; e < ${BR * D4}u; e += ${NT}u) {
      let ii = i0 + e / ${D4}u;
      let d = e % ${D4}u;
      var qx = vec4<f32>(0.0);
      var gx = vec4<f32>(0.0);
      if (ii < ${r.Tq}u) {
        qx = ${qN}[q_row(bh, ii) + d];
        gx = dO[do_row(bh, ii) + d];
      }
      qt[e] = qx;
      gt[e] = gx;
    }
    for (var e = lid; e < ${BR}u; e += ${NT}u) {
      let ii = min(i0 + e, ${r.Tq - 1}u);
      lt[e] = lse[bh * ${r.Tq}u + ii] * ${LOG2E};
      dt[e] = delta[bh * ${r.Tq}u + ii];
      rht[e] = ${r.dropout ? "row_hash(bh, i0 + e)" : "0u"};
    }
    workgroupBarrier();
    // This thread's share of k·q and v·dO for every query of the tile.
    for (var rr = 0u; rr < ${BR}u; rr++) {
      let xb = rr * ${D4}u + sp * ${DH4}u;
${lines(DH4, (k) => `      let qv${k} = qt[xb + ${k}u];\n      let gv${k} = gt[xb + ${k}u];`)}
${
    keys((x) =>
      `      ps[(sp * ${BC}u + c${x}) * ${PR}u + rr] = ${
        lines(DH4, (k) => `dot(k${x}_${k}, qv${k})`, " + ")
      };
      pg[(sp * ${BC}u + c${x}) * ${PR}u + rr] = ${
        lines(DH4, (k) => `dot(v${x}_${k}, gv${k})`, " + ")
      };`
    )
  }
    }
    workgroupBarrier();
    for (var rr = 0u; rr < ${BR}u; rr++) {
      let ii = i0 + rr;
      let lim = ${lim};
      let lr = lt[rr];
      let dr = dt[rr];
${r.dropout ? "      let rh = rht[rr];" : ""}
${
    keys((x) =>
      `      let ok${x} = ii < ${r.Tq}u && j${x} <= lim;
      let p${x} = select(0.0, exp2(${sum("ps", x)} - lr), ok${x});
      let g${x} = ${sum("pg", x)};
${
        r.dropout
          ? `      let km${x} = keep_mult(rh, j${x}, thr, inv);
      let w${x} = p${x} * km${x};
      let ds${x} = p${x} * (g${x} * km${x} - dr);`
          : `      let w${x} = p${x};
      let ds${x} = p${x} * (g${x} - dr);`
      }`
    )
  }
      let xb = rr * ${D4}u + sp * ${DH4}u;
${
    lines(DH4, (k) =>
      `      {
        let qv = qt[xb + ${k}u];
        let gv = gt[xb + ${k}u];
${keys((x) => `        dv${x}_${k} += w${x} * gv;\n        dk${x}_${k} += ds${x} * qv;`)}
      }`)
  }
    }
    workgroupBarrier();
  }
${
    keys((x) =>
      `  if (j${x} < ${r.S}u) {
    let ob = dk_row(bh, j${x}) + sp * ${DH4}u;
    let vo = dv_row(bh, j${x}) + sp * ${DH4}u;
${lines(DH4, (k) => `    ${dkN}[ob + ${k}u] = dk${x}_${k} * ${f32(r.scale)};`)}
${lines(DH4, (k) => `    ${dvN}[vo + ${k}u] = dv${x}_${k};`)}
  }`
    )
  }
}
`;
}

/**
 * dQ kernel: like the forward, each thread owns RQ query rows (BR/RQ apart) and D/NS dims of
 * each; loops over key tiles and accumulates dQ += dS K.
 */
