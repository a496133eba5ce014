/**
 * Backward dQ kernel of the fused attention (see _backward.ts and, for the tiling,
 * _blocked.ts): a workgroup per block of `outer` query rows, whose q and dO rows stay in
 * workgroup memory; it first computes (and writes, for dK/dV) delta = rowsum(dO * O) of its
 * rows, then loops over `inner`-key tiles of K and V up to the last key the block's last row
 * sees. Each thread owns R rows (`rg + x * outer/R`) x D/G dims of dQ in registers.
 *
 * @module
 */

import { dropoutWgsl, qkvEnable, type ResolvedSpec, rowFn, tensorAddr } from "./common.ts";
import { f32 } from "../wgsl.ts";
import { attentionLabel, lines } from "./_tiles.ts";
import {
  blockedThreads,
  type BlockedTile,
  fmaDot,
  loadRows,
  packComp,
  packOf,
  packType,
  paddedRow,
  phase1Dots,
  prefetchRows,
} from "./_blocked.ts";
import { inputDecls, scoreRow, scoreTail } from "./_dkdv.ts";

export function dqCode(r: ResolvedSpec, t: BlockedTile, gridX: number): string {
  const { outer: BR, inner: BC, R, G } = t;
  const D4 = r.D / 4;
  const DS = paddedRow(r.D);
  const DV4 = D4 / G;
  const RK = BC / G; // keys per thread in phase 1
  const BRg = BR / R;
  const NT = blockedThreads(t);
  const NB = Math.ceil(r.Tq / BR);
  const OFF = r.S - r.Tq;
  const packed = r.layout === "packed_qkv";
  const [qN, kN, vN] = packed ? ["qkv", "qkv", "qkv"] : ["q", "k", "v"];
  const decl = inputDecls(r, [
    { name: "dO", type: "array<vec4<f32>>" },
    { name: "lse", type: "array<f32>" },
    { name: "o", type: "array<vec4<f32>>" },
  ]);
  let b = decl.length;
  const paramsBinding = b++;
  decl.push(`@group(0) @binding(${b++}) var<storage, read_write> delta: array<f32>;`);
  const dqN = packed ? "dqkv" : "dQ";
  decl.push(`@group(0) @binding(${b++}) var<storage, read_write> ${dqN}: array<vec4<f32>>;`);
  const rows = (f: (x: number) => string, sep = "\n") => lines(R, f, sep);
  const keys = (f: (y: number) => string, sep = "\n") => lines(RK, f, sep);
  const dims = (f: (v: number) => string, sep = "\n") => lines(DV4, f, sep);
  const kvLoad = {
    r,
    n: BC,
    limit: r.S,
    threads: NT,
    a: ["kt", kN, "k_row"] as [string, string, string],
    b: ["vt", vN, "v_row"] as [string, string, string],
  };
  const pf = t.prefetch ? prefetchRows(kvLoad) : null;
  // Causal blocks near the end of the sequence do the most work: start them first.
  const blk = r.causal ? `${NB - 1}u - lin % ${NB}u` : `lin % ${NB}u`;
  const ntiles = r.causal
    ? `(min(blk * ${BR}u + ${BR - 1}u, ${r.Tq - 1}u) + ${OFF}u) / ${BC}u + 1u`
    : `${Math.ceil(r.S / BC)}u`;
  return `${qkvEnable(r)}// ${
    attentionLabel(r, "backward dQ")
  }; ${BR} rows x ${BC}-key tiles, ${R} rows x ${DV4 * 4} dims per thread, ${G} groups
${decl.join("\n")}
${dropoutWgsl(paramsBinding)}
${rowFn("q", tensorAddr(r, "q"), r.H)}
${rowFn("k", tensorAddr(r, "k"), r.H)}
${rowFn("v", tensorAddr(r, "v"), r.H)}
${rowFn("do", tensorAddr(r, "dO"), r.H)}
${rowFn("o", tensorAddr(r, "o"), r.H)}
${rowFn("dq", tensorAddr(r, "dQ"), r.H)}

var<workgroup> qt: array<vec4<f32>, ${BR * DS}>;
var<workgroup> gt: array<vec4<f32>, ${BR * DS}>;
var<workgroup> kt: array<vec4<f32>, ${BC * DS}>;
var<workgroup> vt: array<vec4<f32>, ${BC * DS}>;
var<workgroup> dlt: array<f32, ${BR}>;
// Phase-1 dS by [key][row group]: component x is row rg + x * ${BRg}.
var<workgroup> st: array<${packType(R)}, ${BC * BRg}>;

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let lin = wg.x + wg.y * ${gridX}u;
  if (lin >= ${NB * r.BH}u) { return; }
  let bh = lin / ${NB}u;
  let blk = ${blk};
  let rg = lid % ${BRg}u;
  let g = lid / ${BRg}u;
  let ib = blk * ${BR}u;
${
    loadRows({
      r,
      n: BR,
      first: "ib",
      limit: r.Tq,
      threads: NT,
      a: ["qt", qN, "q_row"],
      b: ["gt", "dO", "do_row"],
    })
  }
  workgroupBarrier();
  // delta = rowsum(dO * O) of the block's rows, for this kernel and for dK/dV (dispatched
  // after it), summed in the order phase 1 sums dO·v (with one key, dS is then exactly 0).
  for (var e = lid; e < ${BR}u; e += ${NT}u) {
    let t = ib + e;
    var acc = 0.0;
    if (t < ${r.Tq}u) {
      let ob = o_row(bh, t);
      for (var d = 0u; d < ${D4}u; d++) {
        ${fmaDot("acc", "o[ob + d]", `gt[e * ${DS}u + d]`)}
      }
      delta[bh * ${r.Tq}u + t] = acc;
    }
    dlt[e] = acc;
  }
  workgroupBarrier();
${
    rows((x) =>
      `  let i${x} = ib + rg + ${x * BRg}u;
${scoreRow(r, `${x}`, `i${x}`, `dlt[rg + ${x * BRg}u]`, "  ")}`
    )
  }
${rows((x) => dims((v) => `  var dq${x}_${v} = vec4<f32>(0.0);`))}
${
    r.dropout
      ? `  let thr = drop_threshold();
  let inv = 1.0 / (1.0 - params.p);`
      : `  _ = params.seed; // keep the binding in the layout`
  }
  let ntiles = ${ntiles};${pf ? `\n${pf.decl}\n${pf.fetch("0u", "  ")}` : ""}
  for (var tile = 0u; tile < ntiles; tile++) {
    let j0 = tile * ${BC}u;
    workgroupBarrier(); // the previous tile's phase 2 is done with kt, st
${pf ? pf.store : loadRows({ ...kvLoad, first: "j0" })}
    workgroupBarrier();${
    pf
      ? `\n    // The next tile's keys, in flight during this one's math (none after the last).
    if (tile + 1u < ntiles) {\n${pf.fetch(`j0 + ${BC}u`, "      ")}\n    }`
      : ""
  }
    // Phase 1: q·k and dO·v of this thread's ${R} rows x ${RK} keys, full head dim.
${
    phase1Dots(
      D4,
      DS,
      { n: R, score: ["q", "qt"], grad: ["o", "gt"], row: (x) => `rg + ${x * BRg}u` },
      { n: RK, score: ["k", "kt"], grad: ["v", "vt"], row: (y) => `g + ${y * G}u` },
    )
  }
${
    keys((y) =>
      `    {
      let j = j0 + g + ${y * G}u;
${
        rows((x) =>
          scoreTail(r, `${x}`, `j <= lim${x}`, `s${x}_${y}`, `gd${x}_${y}`, {
            l: `l${x}`,
            dl: `dl${x}`,
            rh: `rh${x}`,
          }, "j")
        )
      }
      st[(g + ${y * G}u) * ${BRg}u + rg] = ${packOf(R, lines(R, (x) => `ds${x}`).split("\n"))};
    }`
    )
  }
    workgroupBarrier();
    // Phase 2: dQ += dS k on this thread's ${R} rows x ${DV4} vec4 dims.
    for (var c = 0u; c < ${BC}u; c++) {
      let ds = st[c * ${BRg}u + rg];
${
    dims((v) =>
      `      {
        let kk = kt[c * ${DS}u + g * ${DV4}u + ${v}u];
${rows((x) => `        dq${x}_${v} += ${packComp("ds", R, x)} * kk;`)}
      }`
    )
  }
    }
  }
${
    rows((x) =>
      `  if (i${x} < ${r.Tq}u) {
    let ob = dq_row(bh, i${x}) + g * ${DV4}u;
${dims((v) => `    ${dqN}[ob + ${v}u] = dq${x}_${v} * ${f32(r.scale)};`)}
  }`
    )
  }
}
`;
}
