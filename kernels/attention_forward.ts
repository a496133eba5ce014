/**
 * The fused attention forward kernel (see attention_wgsl.ts for the design).
 *
 * @module
 */

import {
  ATTENTION_PARAMS_BYTES,
  type AttentionLimits,
  type AttentionSpec,
  dropoutWgsl,
  f32Lit,
  foldGrid,
  type KernelPlan,
  type ResolvedSpec,
  resolveSpec,
  rowFn,
  tensorAddr,
  tensorBytes,
} from "./attention_common.ts";
import {
  attentionLabel,
  chooseRowTile,
  lines,
  loadKvTile,
  rowPrelude,
  type RowTile,
} from "./attention_tiles.ts";

/** Generate the forward kernel. */
function forwardCode(r: ResolvedSpec, t: RowTile, gridX: number): string {
  const { BR, BC, NS } = t;
  const D4 = r.D / 4;
  const DH4 = D4 / NS;
  const packed = r.layout === "packed_qkv";
  const qN = packed ? "qkv" : "q", kN = packed ? "qkv" : "k", vN = packed ? "qkv" : "v";
  const inputs = packed ? ["qkv"] : ["q", "k", "v"];
  let b = 0;
  const decl = inputs.map((n) =>
    `@group(0) @binding(${b++}) var<storage, read> ${n}: array<vec4<f32>>;`
  );
  decl.push(`@group(0) @binding(${b++}) var<storage, read_write> o: array<vec4<f32>>;`);
  decl.push(`@group(0) @binding(${b++}) var<storage, read_write> lse: array<f32>;`);
  const sc2 = f32Lit(r.scale * Math.LOG2E);
  const PS = BC + 1; // padded row of the partial-score tile (no bank conflicts)
  const sums = (c: number) => lines(NS, (s) => `part[${s * BR * PS}u + r * ${PS}u + ${c}u]`, " + ");
  return `// ${attentionLabel(r, "forward")}; tile ${BR}x${BC}, ${NS} threads per row
${decl.join("\n")}
${dropoutWgsl(b)}
${rowFn("q", tensorAddr(r, "q"), r.H)}
${rowFn("k", tensorAddr(r, "k"), r.H)}
${rowFn("v", tensorAddr(r, "v"), r.H)}
${rowFn("o", tensorAddr(r, "o"), r.H)}

var<workgroup> kt: array<vec4<f32>, ${BC * D4}>;
var<workgroup> vt: array<vec4<f32>, ${BC * D4}>;
var<workgroup> part: array<f32, ${NS * BR * PS}>;

@compute @workgroup_size(${BR * NS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${rowPrelude(r, t, gridX)}
  let qb = q_row(bh, iv) + sp * ${DH4}u;
${lines(DH4, (k) => `  let q${k} = ${qN}[qb + ${k}u] * ${sc2};`)}
${lines(DH4, (k) => `  var o${k} = vec4<f32>(0.0);`)}
  var m = -1e30;
  var l = 0.0;
${
    r.dropout
      ? `  let rh = row_hash(bh, i);
  let thr = drop_threshold();
  let inv = 1.0 / (1.0 - params.p);`
      : `  _ = params.seed; // keep the binding in the layout`
  }
  for (var tile = 0u; tile < ntiles; tile++) {
    let j0 = tile * ${BC}u;
${loadKvTile(r, t, kN, vN)}
    // This thread's share of q·k for every key of the tile.
    for (var c = 0u; c < ${BC}u; c++) {
      let kb = c * ${D4}u + sp * ${DH4}u;
      part[(sp * ${BR}u + r) * ${PS}u + c] = ${
    lines(DH4, (k) => `dot(q${k}, kt[kb + ${k}u])`, " + ")
  };
    }
    workgroupBarrier();
${lines(BC, (c) => `    let s${c} = select(-1e30, ${sums(c)}, j0 + ${c}u <= lim);`)}
    let mx = max(m, ${lines(BC - 1, (c) => `max(s${c}`, ", ")}${BC > 1 ? ", " : ""}s${BC - 1}${
    ")".repeat(BC - 1)
  });
    let alpha = exp2(m - mx);
    m = mx;
${lines(BC, (c) => `    let p${c} = select(0.0, exp2(s${c} - mx), j0 + ${c}u <= lim);`)}
    l = l * alpha + ${lines(BC, (c) => `p${c}`, " + ")};
${
    r.dropout
      ? lines(BC, (c) => `    let w${c} = p${c} * keep_mult(rh, j0 + ${c}u, thr, inv);`)
      : lines(BC, (c) => `    let w${c} = p${c};`)
  }
${lines(DH4, (k) => `    o${k} = o${k} * alpha;`)}
${
    lines(BC, (c) =>
      lines(DH4, (k) => `    o${k} += w${c} * vt[${c * D4}u + sp * ${DH4}u + ${k}u];`))
  }
    workgroupBarrier();
  }
  if (i < ${r.Tq}u) {
    let il = 1.0 / l;
    let ob = o_row(bh, i) + sp * ${DH4}u;
${lines(DH4, (k) => `    o[ob + ${k}u] = o${k} * il;`)}
    if (sp == 0u) {
      lse[bh * ${r.Tq}u + i] = (m + log2(l)) * ${f32Lit(Math.LN2)};
    }
  }
}
`;
}

/**
 * Plan the forward kernel. Bindings: q, k, v (or qkv for "packed_qkv"), o, lse, params
 * (uniform {seed: u32, p: f32}, ATTENTION_PARAMS_BYTES; always bound, read only with dropout).
 */
export function planAttentionForward(spec: AttentionSpec, limits: AttentionLimits): KernelPlan {
  const r = resolveSpec(spec);
  const t = chooseRowTile(r, limits, 1, r.tiles.forward);
  const total = Math.ceil(r.Tq / t.BR) * r.BH;
  const workgroups = foldGrid(total, limits.maxComputeWorkgroupsPerDimension);
  const inputs = r.layout === "packed_qkv" ? ["qkv"] : ["q", "k", "v"];
  const bindingBytes: Record<string, number> = {
    o: tensorBytes(r, "o"),
    lse: r.BH * r.Tq * 4,
    params: ATTENTION_PARAMS_BYTES,
  };
  for (const n of inputs) bindingBytes[n] = tensorBytes(r, n === "qkv" ? "q" : n as "q");
  return {
    code: forwardCode(r, t, workgroups[0]),
    workgroups,
    label: attentionLabel(r, "forward"),
    bindings: [...inputs, "o", "lse", "params"],
    bindingBytes,
  };
}
