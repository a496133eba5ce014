/**
 * The fused attention backward kernels (see plan.ts for the design):
 * 1. `delta`: delta[bh, i] = rowsum(dO * O), one thread per row.
 * 2. `dkdv`: a workgroup per BC-key block; NS threads per key hold D/NS dims of k, v and of
 *    the dK, dV accumulators; loops over BR-query tiles (from the first one the causal mask
 *    lets see the block), recomputing P = exp2(S - L) and dS = P * (dP - delta).
 * 3. `dq`: a workgroup per BR-query block; loops over key tiles like the forward.
 * dK/dV and dQ each own their outputs, so there are no atomics and no zero-fill. The two big
 * kernels live in _dkdv.ts and _dq.ts.
 *
 * @module
 */

import {
  ATTENTION_PARAMS_BYTES,
  type AttentionLimits,
  type AttentionSpec,
  type KernelPlan,
  type ResolvedSpec,
  resolveSpec,
  rowFn,
  tensorAddr,
  tensorBytes,
} from "./common.ts";
import { grid } from "../wgsl.ts";
import { attentionLabel, chooseRowTile, lines } from "./_tiles.ts";
import { chooseColTile, dkdvCode, inputNames } from "./_dkdv.ts";
import { dqCode } from "./_dq.ts";

/** delta[bh, i] = dot(dO[bh, i], O[bh, i]), one thread per row. */
function deltaCode(r: ResolvedSpec, gridX: number): string {
  const D4 = r.D / 4;
  const rows = r.BH * r.Tq;
  return `// ${attentionLabel(r, "backward delta")}
@group(0) @binding(0) var<storage, read> o: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> dO: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
${rowFn("o", tensorAddr(r, "o"), r.H)}
${rowFn("do", tensorAddr(r, "dO"), r.H)}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = (wg.x + wg.y * ${gridX}u) * 64u + lid;
  if (row >= ${rows}u) { return; }
  let bh = row / ${r.Tq}u;
  let i = row % ${r.Tq}u;
  let ob = o_row(bh, i);
  let gb = do_row(bh, i);
  delta[row] = ${lines(D4, (k) => `dot(o[ob + ${k}u], dO[gb + ${k}u])`, "\n    + ")};
}
`;
}

/**
 * dK/dV kernel. Each thread owns RK keys (c0, c1, ...; BC/RK apart) and D/NS dims of each, so
 * every q or dO vec4 read from workgroup memory feeds RK keys (register blocking).
 */
export function planAttentionBackward(
  spec: AttentionSpec,
  limits: AttentionLimits,
): KernelPlan[] {
  const r = resolveSpec(spec);
  const maxWg = limits.maxComputeWorkgroupsPerDimension;
  const bytes: Record<string, number> = {
    q: tensorBytes(r, "q"),
    k: tensorBytes(r, "k"),
    v: tensorBytes(r, "v"),
    qkv: tensorBytes(r, "q"),
    o: tensorBytes(r, "o"),
    dO: tensorBytes(r, "dO"),
    lse: r.BH * r.Tq * 4,
    delta: r.BH * r.Tq * 4,
    params: ATTENTION_PARAMS_BYTES,
    dQ: tensorBytes(r, "dQ"),
    dK: tensorBytes(r, "dK"),
    dV: tensorBytes(r, "dV"),
    dqkv: tensorBytes(r, "dQ"),
  };
  const pick = (names: string[]) => Object.fromEntries(names.map((n) => [n, bytes[n]]));
  const inputs = inputNames(r);
  const packed = r.layout === "packed_qkv";

  const deltaGrid = grid(Math.ceil((r.BH * r.Tq) / 64), maxWg, 2);
  const deltaNames = ["o", "dO", "delta"];

  const ct = chooseColTile(r, limits);
  const dkdvGrid = grid(Math.ceil(r.S / ct.BC) * r.BH, maxWg, 2);
  const dkdvNames = [
    ...inputs,
    "dO",
    "lse",
    "delta",
    "params",
    ...(packed ? ["dqkv"] : [
      "dK",
      "dV",
    ]),
  ];

  const RQ = r.tiles.dqRows ?? 1;
  const rt = chooseRowTile(r, limits, 2, r.tiles.dq, RQ);
  const dqGrid = grid(Math.ceil(r.Tq / rt.BR) * r.BH, maxWg, 2);
  const dqNames = [...inputs, "dO", "lse", "delta", "params", packed ? "dqkv" : "dQ"];

  return [
    {
      code: deltaCode(r, deltaGrid[0]),
      workgroups: deltaGrid,
      label: attentionLabel(r, "backward delta"),
      bindings: deltaNames,
      bindingBytes: pick(deltaNames),
    },
    {
      code: dkdvCode(r, ct, dkdvGrid[0]),
      workgroups: dkdvGrid,
      label: attentionLabel(r, "backward dK/dV"),
      bindings: dkdvNames,
      bindingBytes: pick(dkdvNames),
    },
    {
      code: dqCode(r, rt, RQ, dqGrid[0]),
      workgroups: dqGrid,
      label: attentionLabel(r, "backward dQ"),
      bindings: dqNames,
      bindingBytes: pick(dqNames),
    },
  ];
}
