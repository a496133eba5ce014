/**
 * The fused attention forward kernel (see plan.ts for the design).
 *
 * @module
 */

import {
  ATTENTION_PARAMS_BYTES,
  type AttentionLimits,
  type AttentionSpec,
  dropoutWgsl,
  inputVec,
  type KernelPlan,
  qkvEnable,
  readVec,
  type ResolvedSpec,
  resolveSpec,
  rowFn,
  seqLen,
  tensorAddr,
  tensorBytes,
} from "./common.ts";
import { f32, grid } from "../wgsl.ts";
import {
  attentionLabel,
  chooseRowTile,
  lines,
  loadKvTile,
  rowPrelude,
  type RowTile,
} from "./_tiles.ts";

/**
 * Generate the forward kernel. Each thread owns RQ rows (r0, r1, ...; BR/RQ apart) and D/NS
 * dims of each: every K or V vec4 read from workgroup memory feeds RQ rows (register blocking).
 */
function forwardCode(r: ResolvedSpec, t: RowTile, RQ: number, gridX: number): string {
  const { BR, BC, NS } = t;
  const D4 = r.D / 4;
  const DH4 = D4 / NS;
  const threads = (BR / RQ) * NS;
  const packed = r.layout === "packed_qkv";
  const qN = packed ? "qkv" : "q", kN = packed ? "qkv" : "k", vN = packed ? "qkv" : "v";
  const inputs = packed ? ["qkv"] : ["q", "k", "v"];
  let b = 0;
  const decl = inputs.map((n) =>
    `@group(0) @binding(${b++}) var<storage, read> ${n}: array<${inputVec(r, n)}>;`
  );
  decl.push(`@group(0) @binding(${b++}) var<storage, read_write> o: array<vec4<f32>>;`);
  decl.push(`@group(0) @binding(${b++}) var<storage, read_write> lse: array<f32>;`);
  // Shape-generic: {T, BH} after the params uniform.
  const dims = r.dynamic ? `\n@group(0) @binding(${b + 1}) var<uniform> dims: vec4<u32>;` : "";
  const nwg = r.dynamic ? ", @builtin(num_workgroups) nwg: vec3<u32>" : "";
  const sc2 = f32(r.scale * Math.LOG2E);
  const PS = BC + 1; // padded row of the partial-score tile (no bank conflicts)
  const rows = (f: (x: number) => string, sep = "\n") => lines(RQ, f, sep);
  const sums = (x: number, c: number) =>
    lines(NS, (s) => `part[${s * BR * PS}u + r${x} * ${PS}u + ${c}u]`, " + ");
  const maxOf = (x: number) =>
    lines(BC, (c) => `s${x}_${c}`).split("\n").reduce((acc, v) => `max(${acc}, ${v})`, `m${x}`);
  return `${qkvEnable(r)}// ${
    attentionLabel(r, "forward")
  }; tile ${BR}x${BC}, ${NS} threads per row, ${RQ} rows per thread
${decl.join("\n")}
${dropoutWgsl(b)}${dims}
${rowFn("q", tensorAddr(r, "q"), r.H)}
${rowFn("k", tensorAddr(r, "k"), r.H)}
${rowFn("v", tensorAddr(r, "v"), r.H)}
${rowFn("o", tensorAddr(r, "o"), r.H)}

var<workgroup> kt: array<vec4<f32>, ${BC * D4}>;
var<workgroup> vt: array<vec4<f32>, ${BC * D4}>;
var<workgroup> part: array<f32, ${NS * BR * PS}>;

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32${nwg}) {
${rowPrelude(r, t, gridX, RQ)}
${
    rows((x) =>
      `  let qb${x} = q_row(bh, iv${x}) + sp * ${DH4}u;
${lines(DH4, (k) => `  let q${x}_${k} = ${readVec(r, qN, `qb${x} + ${k}u`)} * ${sc2};`)}
${lines(DH4, (k) => `  var o${x}_${k} = vec4<f32>(0.0);`)}
  var m${x} = -1e30;
  var l${x} = 0.0;`
    )
  }
${
    r.dropout
      ? `${rows((x) => `  let rh${x} = row_hash(bh, i${x});`)}
  let thr = drop_threshold();
  let inv = 1.0 / (1.0 - params.p);`
      : `  _ = params.seed; // keep the binding in the layout`
  }
  for (var tile = 0u; tile < ntiles; tile++) {
    let j0 = tile * ${BC}u;
${loadKvTile(r, t, kN, vN, threads)}
    // This thread's share of q·k for every key of the tile.
    for (var c = 0u; c < ${BC}u; c++) {
      let kb = c * ${D4}u + sp * ${DH4}u;
${lines(DH4, (k) => `      let kv${k} = kt[kb + ${k}u];`)}
${
    rows((x) =>
      `      part[(sp * ${BR}u + r${x}) * ${PS}u + c] = ${
        lines(DH4, (k) => `dot(q${x}_${k}, kv${k})`, " + ")
      };`
    )
  }
    }
    workgroupBarrier();
${
    rows((x) =>
      `${
        lines(
          BC,
          (c) => `    let s${x}_${c} = select(-1e30, ${sums(x, c)}, j0 + ${c}u <= lim${x});`,
        )
      }
    let mx${x} = ${maxOf(x)};
    let alpha${x} = exp2(m${x} - mx${x});
    m${x} = mx${x};
${
        lines(
          BC,
          (c) =>
            `    let p${x}_${c} = select(0.0, exp2(s${x}_${c} - mx${x}), j0 + ${c}u <= lim${x});`,
        )
      }
    l${x} = l${x} * alpha${x} + ${lines(BC, (c) => `p${x}_${c}`, " + ")};
${
        r.dropout
          ? lines(
            BC,
            (c) => `    let w${x}_${c} = p${x}_${c} * keep_mult(rh${x}, j0 + ${c}u, thr, inv);`,
          )
          : lines(BC, (c) => `    let w${x}_${c} = p${x}_${c};`)
      }
${lines(DH4, (k) => `    o${x}_${k} = o${x}_${k} * alpha${x};`)}`
    )
  }
${
    lines(BC, (c) =>
      lines(DH4, (k) =>
        `    {
      let vv = vt[${c * D4}u + sp * ${DH4}u + ${k}u];
${rows((x) => `      o${x}_${k} += w${x}_${c} * vv;`)}
    }`))
  }
    workgroupBarrier();
  }
${
    rows((x) =>
      `  if (i${x} < ${seqLen(r, "Tq")}) {
    let il = 1.0 / l${x};
    let ob = o_row(bh, i${x}) + sp * ${DH4}u;
${lines(DH4, (k) => `    o[ob + ${k}u] = o${x}_${k} * il;`)}
    if (sp == 0u) {
      lse[bh * ${seqLen(r, "Tq")} + i${x}] = (m${x} + log2(l${x})) * ${f32(Math.LN2)};
    }
  }`
    )
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
  const RQ = r.tiles.forwardRows ?? 1;
  const t = chooseRowTile(r, limits, 1, r.tiles.forward, RQ);
  const workgroups = forwardGrid(r, t, limits);
  const inputs = r.layout === "packed_qkv" ? ["qkv"] : ["q", "k", "v"];
  const bindingBytes: Record<string, number> = {
    o: tensorBytes(r, "o"),
    lse: r.BH * r.Tq * 4,
    params: ATTENTION_PARAMS_BYTES,
  };
  for (const n of inputs) bindingBytes[n] = tensorBytes(r, n === "qkv" ? "q" : n as "q");
  return {
    code: forwardCode(r, t, RQ, workgroups[0]),
    workgroups,
    label: attentionLabel(r, "forward"),
    bindings: [...inputs, "o", "lse", "params", ...(r.dynamic ? ["dims"] : [])],
    bindingBytes,
  };
}

function forwardGrid(
  r: ResolvedSpec,
  t: RowTile,
  limits: AttentionLimits,
): [number, number, number] {
  return grid(Math.ceil(r.Tq / t.BR) * r.BH, limits.maxComputeWorkgroupsPerDimension, 2);
}

/**
 * The grid of a shape-generic forward plan for this call's T (`spec.Tq`) and batch*heads: the
 * plan's WGSL is the same for every call of its bucket, only the grid follows the shape.
 */
export function attentionForwardGrid(
  spec: AttentionSpec,
  limits: AttentionLimits,
): [number, number, number] {
  const r = resolveSpec(spec);
  const t = chooseRowTile(r, limits, 1, r.tiles.forward, r.tiles.forwardRows ?? 1);
  return forwardGrid(r, t, limits);
}
