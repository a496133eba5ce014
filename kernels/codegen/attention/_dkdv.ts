/**
 * Backward dK/dV kernel of the fused attention (see _backward.ts and, for the tiling,
 * _blocked.ts): a workgroup per block of `outer` keys, whose K and V rows stay in workgroup
 * memory; it loops over `inner`-row query tiles from the first one the causal mask lets see
 * the block. Each thread owns R keys (`kg + x * outer/R`) x D/G dims of dK and dV in
 * registers.
 *
 * @module
 */

import {
  dropoutWgsl,
  inputVec,
  qkvEnable,
  type ResolvedSpec,
  rowFn,
  tensorAddr,
} from "./common.ts";
import { f32 } from "../wgsl.ts";
import { attentionLabel, lines } from "./_tiles.ts";
import {
  blockedThreads,
  type BlockedTile,
  loadRows,
  packComp,
  packOf,
  packType,
  paddedRow,
  phase1Dots,
  prefetchRows,
} from "./_blocked.ts";

/** log2(e) as a WGSL literal: lse is stored in natural log, the kernels work in base 2. */
export const LOG2E = f32(Math.LOG2E);

/** Input binding declarations: q, k, v (or qkv), then the given extra read-only inputs. */
export function inputDecls(r: ResolvedSpec, extra: { name: string; type: string }[]): string[] {
  const packed = r.layout === "packed_qkv";
  const names = [...(packed ? ["qkv"] : ["q", "k", "v"])];
  const out = names.map((n, b) =>
    `@group(0) @binding(${b}) var<storage, read> ${n}: array<${inputVec(r, n)}>;`
  );
  for (const e of extra) {
    out.push(`@group(0) @binding(${out.length}) var<storage, read> ${e.name}: ${e.type};`);
  }
  return out;
}

export function inputNames(r: ResolvedSpec): string[] {
  return r.layout === "packed_qkv" ? ["qkv"] : ["q", "k", "v"];
}

/**
 * The dropout-or-not tail of phase 1: from s (raw q·k), gd (dO·v), the row's base-2 lse `l`,
 * delta `dl` and hash `rh`, the weight w (P with the dropout multiplier, for dV or nothing)
 * and ds = dS / scale-free (for dK, dQ). Shared by both kernels.
 */
export function scoreTail(
  r: ResolvedSpec,
  n: string,
  ok: string,
  s: string,
  gd: string,
  row: { l: string; dl: string; rh: string },
  key: string,
): string {
  const sc2 = f32(r.scale * Math.LOG2E);
  const p = `      let p${n} = select(0.0, exp2(${s} * ${sc2} - ${row.l}), ${ok});`;
  if (!r.dropout) {
    return `${p}\n      let w${n} = p${n};\n      let ds${n} = p${n} * (${gd} - ${row.dl});`;
  }
  return `${p}
      let km${n} = keep_mult(${row.rh}, ${key}, thr, inv);
      let w${n} = p${n} * km${n};
      let ds${n} = p${n} * (${gd} * km${n} - ${row.dl});`;
}

/**
 * The query-row inputs of {@link scoreTail} for row `i` (a WGSL expression): the base-2 lse
 * `l{n}`, the delta `dl{n}` (the expression `dl`), the last visible key `lim{n}` and, with
 * dropout, the row hash `rh{n}`. Shared by both kernels.
 */
export function scoreRow(
  r: ResolvedSpec,
  n: string,
  i: string,
  dl: string,
  indent: string,
): string {
  const OFF = r.S - r.Tq;
  const lim = r.causal ? `min(${i} + ${OFF}u, ${r.S - 1}u)` : `${r.S - 1}u`;
  return `${indent}let l${n} = lse[bh * ${r.Tq}u + min(${i}, ${r.Tq - 1}u)] * ${LOG2E};
${indent}let dl${n} = ${dl};
${indent}let lim${n} = ${lim};${r.dropout ? `\n${indent}let rh${n} = row_hash(bh, ${i});` : ""}`;
}

export function dkdvCode(r: ResolvedSpec, t: BlockedTile, gridX: number): string {
  const { outer: BC, inner: BR, R, G } = t;
  const D4 = r.D / 4;
  const DS = paddedRow(r.D);
  const DV4 = D4 / G;
  const RQ = BR / G; // query rows per thread in phase 1
  const BCg = BC / R;
  const NT = blockedThreads(t);
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
  // First query tile that sees key blk * BC: row i sees key j when j <= i + OFF.
  const t0 = r.causal
    ? `select(0u, (blk * ${BC}u - ${OFF}u) / ${BR}u, blk * ${BC}u > ${OFF}u)`
    : "0u";
  const keys = (f: (x: number) => string, sep = "\n") => lines(R, f, sep);
  const qrows = (f: (y: number) => string, sep = "\n") => lines(RQ, f, sep);
  const dims = (f: (v: number) => string, sep = "\n") => lines(DV4, f, sep);
  const ty = packType(R);
  const qLoad = {
    r,
    n: BR,
    limit: r.Tq,
    threads: NT,
    a: ["qt", qN, "q_row"] as [string, string, string],
    b: ["gt", "dO", "do_row"] as [string, string, string],
  };
  const pf = t.prefetch ? prefetchRows(qLoad) : null;
  return `${qkvEnable(r)}// ${
    attentionLabel(r, "backward dK/dV")
  }; ${BC} keys x ${BR}-query tiles, ${R} keys x ${DV4 * 4} dims per thread, ${G} groups
${decl.join("\n")}
${dropoutWgsl(paramsBinding)}
${rowFn("q", tensorAddr(r, "q"), r.H)}
${rowFn("k", tensorAddr(r, "k"), r.H)}
${rowFn("v", tensorAddr(r, "v"), r.H)}
${rowFn("do", tensorAddr(r, "dO"), r.H)}
${rowFn("dk", tensorAddr(r, "dK"), r.H)}
${rowFn("dv", tensorAddr(r, "dV"), r.H)}

var<workgroup> kt: array<vec4<f32>, ${BC * DS}>;
var<workgroup> vt: array<vec4<f32>, ${BC * DS}>;
var<workgroup> qt: array<vec4<f32>, ${BR * DS}>;
var<workgroup> gt: array<vec4<f32>, ${BR * DS}>;
// Phase-1 results by [query row][key group]: component x is key kg + x * ${BCg}.
var<workgroup> wt: array<${ty}, ${BR * BCg}>;
var<workgroup> st: array<${ty}, ${BR * BCg}>;

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let lin = wg.x + wg.y * ${gridX}u;
  if (lin >= ${NKB * r.BH}u) { return; }
  let bh = lin / ${NKB}u;
  let blk = lin % ${NKB}u;
  let kg = lid % ${BCg}u;
  let g = lid / ${BCg}u;
${
    loadRows({
      r,
      n: BC,
      first: `blk * ${BC}u`,
      limit: r.S,
      threads: NT,
      a: ["kt", kN, "k_row"],
      b: ["vt", vN, "v_row"],
    })
  }
${keys((x) => `  let j${x} = blk * ${BC}u + kg + ${x * BCg}u;`)}
${
    keys((x) =>
      dims((v) => `  var dk${x}_${v} = vec4<f32>(0.0);\n  var dv${x}_${v} = vec4<f32>(0.0);`)
    )
  }
${
    r.dropout
      ? `  let thr = drop_threshold();
  let inv = 1.0 / (1.0 - params.p);`
      : `  _ = params.seed; // keep the binding in the layout`
  }
  let t0 = ${t0};${pf ? `\n${pf.decl}\n${pf.fetch(`t0 * ${BR}u`, "  ")}` : ""}
  for (var tile = t0; tile < ${NQT}u; tile++) {
    let i0 = tile * ${BR}u;
    workgroupBarrier(); // the previous tile's phase 2 is done with qt, gt, wt, st
${pf ? pf.store : loadRows({ ...qLoad, first: "i0" })}
    workgroupBarrier();${
    pf
      ? `\n    // The next tile's rows, in flight during this one's math.\n${
        pf.fetch(`i0 + ${BR}u`, "    ")
      }`
      : ""
  }
    // Phase 1: q·k and dO·v of this thread's ${R} keys x ${RQ} query rows, full head dim.
    // The rows' lse, delta and hash first: their loads overlap the dot products.
${
    qrows((y) =>
      `    let ri${y} = i0 + g + ${y * G}u;
${scoreRow(r, `${y}`, `ri${y}`, `delta[bh * ${r.Tq}u + min(ri${y}, ${r.Tq - 1}u)]`, "    ")}`
    )
  }
${
    phase1Dots(
      D4,
      DS,
      { n: R, score: ["k", "kt"], grad: ["v", "vt"], row: (x) => `kg + ${x * BCg}u` },
      { n: RQ, score: ["q", "qt"], grad: ["o", "gt"], row: (y) => `g + ${y * G}u` },
    )
  }
${
    qrows((y) =>
      `    {
${
        keys((x) =>
          scoreTail(
            r,
            `${x}`,
            `ri${y} < ${r.Tq}u && j${x} <= lim${y}`,
            `s${x}_${y}`,
            `gd${x}_${y}`,
            { l: `l${y}`, dl: `dl${y}`, rh: `rh${y}` },
            `j${x}`,
          )
        )
      }
      wt[(g + ${y * G}u) * ${BCg}u + kg] = ${packOf(R, lines(R, (x) => `w${x}`).split("\n"))};
      st[(g + ${y * G}u) * ${BCg}u + kg] = ${packOf(R, lines(R, (x) => `ds${x}`).split("\n"))};
    }`
    )
  }
    workgroupBarrier();
    // Phase 2: dV += w^T dO, dK += dS^T q on this thread's ${R} keys x ${DV4} vec4 dims.
    for (var rr = 0u; rr < ${BR}u; rr++) {
      let w = wt[rr * ${BCg}u + kg];
      let ds = st[rr * ${BCg}u + kg];
${
    dims((v) =>
      `      {
        let go = gt[rr * ${DS}u + g * ${DV4}u + ${v}u];
        let qo = qt[rr * ${DS}u + g * ${DV4}u + ${v}u];
${
        keys((x) =>
          `        dv${x}_${v} += ${packComp("w", R, x)} * go;\n        dk${x}_${v} += ${
            packComp("ds", R, x)
          } * qo;`
        )
      }
      }`
    )
  }
    }
  }
${
    keys((x) =>
      `  if (j${x} < ${r.S}u) {
    let ob = dk_row(bh, j${x}) + g * ${DV4}u;
    let vo = dv_row(bh, j${x}) + g * ${DV4}u;
${dims((v) => `    ${dkN}[ob + ${v}u] = dk${x}_${v} * ${f32(r.scale)};`)}
${dims((v) => `    ${dvN}[vo + ${v}u] = dv${x}_${v};`)}
  }`
    )
  }
}
`;
}
