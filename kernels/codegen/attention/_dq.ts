/**
 * Backward dQ kernel of the fused attention (see _backward.ts).
 *
 * @module
 */

import { dropoutWgsl, type ResolvedSpec, rowFn, tensorAddr } from "./common.ts";
import { f32 } from "../wgsl.ts";
import { attentionLabel, lines, loadKvTile, rowPrelude, type RowTile } from "./_tiles.ts";
import { inputDecls, LOG2E } from "./_dkdv.ts";

export function dqCode(r: ResolvedSpec, t: RowTile, RQ: number, gridX: number): string {
  const { BR, BC, NS } = t;
  const D4 = r.D / 4;
  const DH4 = D4 / NS;
  const threads = (BR / RQ) * NS;
  const PS = BC + 1;
  const packed = r.layout === "packed_qkv";
  const [qN, kN, vN] = packed ? ["qkv", "qkv", "qkv"] : ["q", "k", "v"];
  const decl = inputDecls(r, [
    { name: "dO", type: "array<vec4<f32>>" },
    { name: "lse", type: "array<f32>" },
    { name: "delta", type: "array<f32>" },
  ]);
  let b = decl.length;
  const paramsBinding = b++;
  const dqN = packed ? "dqkv" : "dQ";
  decl.push(`@group(0) @binding(${b++}) var<storage, read_write> ${dqN}: array<vec4<f32>>;`);
  const rows = (f: (x: number) => string, sep = "\n") => lines(RQ, f, sep);
  const sum = (arr: string, x: number) =>
    lines(NS, (s) => `${arr}[${s * BR * PS}u + r${x} * ${PS}u + c]`, " + ");
  return `// ${
    attentionLabel(r, "backward dQ")
  }; tile ${BR}x${BC}, ${NS} threads per row, ${RQ} rows per thread
${decl.join("\n")}
${dropoutWgsl(paramsBinding)}
${rowFn("q", tensorAddr(r, "q"), r.H)}
${rowFn("k", tensorAddr(r, "k"), r.H)}
${rowFn("v", tensorAddr(r, "v"), r.H)}
${rowFn("do", tensorAddr(r, "dO"), r.H)}
${rowFn("dq", tensorAddr(r, "dQ"), r.H)}

var<workgroup> kt: array<vec4<f32>, ${BC * D4}>;
var<workgroup> vt: array<vec4<f32>, ${BC * D4}>;
var<workgroup> ps: array<f32, ${NS * BR * PS}>;
var<workgroup> pg: array<f32, ${NS * BR * PS}>;

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${rowPrelude(r, t, gridX, RQ)}
${
    rows((x) =>
      `  let qb${x} = q_row(bh, iv${x}) + sp * ${DH4}u;
  let gb${x} = do_row(bh, iv${x}) + sp * ${DH4}u;
${lines(DH4, (k) => `  let q${x}_${k} = ${qN}[qb${x} + ${k}u] * ${f32(r.scale * Math.LOG2E)};`)}
${lines(DH4, (k) => `  let g${x}_${k} = dO[gb${x} + ${k}u];`)}
${lines(DH4, (k) => `  var dq${x}_${k} = vec4<f32>(0.0);`)}
  let li${x} = lse[bh * ${r.Tq}u + iv${x}] * ${LOG2E};
  let di${x} = delta[bh * ${r.Tq}u + iv${x}];${
        r.dropout ? `\n  let rh${x} = row_hash(bh, i${x});` : ""
      }`
    )
  }
${
    r.dropout
      ? `  let thr = drop_threshold();
  let inv = 1.0 / (1.0 - params.p);`
      : `  _ = params.seed; // keep the binding in the layout`
  }
  for (var tile = 0u; tile < ntiles; tile++) {
    let j0 = tile * ${BC}u;
${loadKvTile(r, t, kN, vN, threads)}
    for (var c = 0u; c < ${BC}u; c++) {
      let xb = c * ${D4}u + sp * ${DH4}u;
${lines(DH4, (k) => `      let kv${k} = kt[xb + ${k}u];\n      let vv${k} = vt[xb + ${k}u];`)}
${
    rows((x) =>
      `      ps[(sp * ${BR}u + r${x}) * ${PS}u + c] = ${
        lines(DH4, (k) => `dot(q${x}_${k}, kv${k})`, " + ")
      };
      pg[(sp * ${BR}u + r${x}) * ${PS}u + c] = ${
        lines(DH4, (k) => `dot(g${x}_${k}, vv${k})`, " + ")
      };`
    )
  }
    }
    workgroupBarrier();
    for (var c = 0u; c < ${BC}u; c++) {
      let j = j0 + c;
${
    rows((x) =>
      `      let p${x} = select(0.0, exp2(${sum("ps", x)} - li${x}), j <= lim${x});
      let gd${x} = ${sum("pg", x)};
${
        r.dropout
          ? `      let ds${x} = p${x} * (gd${x} * keep_mult(rh${x}, j, thr, inv) - di${x});`
          : `      let ds${x} = p${x} * (gd${x} - di${x});`
      }`
    )
  }
      let xb = c * ${D4}u + sp * ${DH4}u;
${
    lines(DH4, (k) =>
      `      {
        let kv = kt[xb + ${k}u];
${rows((x) => `        dq${x}_${k} += ds${x} * kv;`)}
      }`)
  }
    }
    workgroupBarrier();
  }
${
    rows((x) =>
      `  if (i${x} < ${r.Tq}u) {
    let ob = dq_row(bh, i${x}) + sp * ${DH4}u;
${lines(DH4, (k) => `    ${dqN}[ob + ${k}u] = dq${x}_${k} * ${f32(r.scale)};`)}
  }`
    )
  }
}
`;
}

/**
 * Plan the backward pass: three kernels, to dispatch in order.
 * 1. "delta":  o, dO -> delta (scratch f32 [BH, Tq], bindingBytes.delta)
 * 2. "dkdv":   q, k, v (or qkv), dO, lse, delta, params -> dK, dV (or dqkv)
 * 3. "dq":     q, k, v (or qkv), dO, lse, delta, params -> dQ (or dqkv)
 * lse and params must be those of the forward call (same seed and p for dropout).
 * With "packed_qkv" kernels 2 and 3 write disjoint slots of dqkv, so together they fill it.
 */
