/**
 * The fused attention backward kernels (see plan.ts for the design), two dispatches:
 * 1. `dq`: a workgroup per query block (q, dO in workgroup memory); first delta =
 *    rowsum(dO * O) of its rows (written out for dK/dV), then a loop over key tiles up to the
 *    causal limit, recomputing P = exp2(S - L) and dS = P * (dP - delta); each thread holds
 *    R rows x D/G dims of dQ.
 * 2. `dkdv`: a workgroup per key block (K, V in workgroup memory); loops over query tiles
 *    from the first one the causal mask lets see the block; each thread holds R keys x D/G
 *    dims of dK and dV.
 * Both are register-blocked two-phase kernels (scores, then outer-product accumulation; see
 * _blocked.ts). dK/dV and dQ each own their outputs, so there are no atomics and no zero-fill,
 * and every sum runs in a fixed order (deterministic). The two kernels live in _dq.ts and
 * _dkdv.ts.
 *
 * @module
 */

import {
  ATTENTION_PARAMS_BYTES,
  type AttentionLimits,
  type AttentionSpec,
  type KernelPlan,
  resolveSpec,
  tensorBytes,
} from "./common.ts";
import { grid } from "../wgsl.ts";
import { attentionLabel } from "./_tiles.ts";
import { dkdvCode, inputNames } from "./_dkdv.ts";
import { dqCode } from "./_dq.ts";
import { chooseBlockedTile } from "./_blocked.ts";

/** Code-shape choices of the backward kernels, for benchmarks (tiles live in the spec). */
export interface BackwardOptions {
  /**
   * Fetch the next query (dK/dV) or key (dQ) tile into registers while computing this one.
   * Default true; false loads each tile between the loop's two barriers (fewer registers).
   */
  prefetch?: boolean;
}

/**
 * Plan the backward pass: two kernels, to dispatch in order.
 * 1. "dq":   q, k, v (or qkv), dO, lse, o, params -> delta (scratch f32 [BH, Tq],
 *            bindingBytes.delta), dQ (or dqkv)
 * 2. "dkdv": q, k, v (or qkv), dO, lse, delta, params -> dK, dV (or dqkv)
 * lse and params must be those of the forward call (same seed and p for dropout).
 * With "packed_qkv" the two kernels write disjoint slots of dqkv, so together they fill it.
 * Tiles: spec.tiles.dkdv = [keys per workgroup, queries per tile], .dq = [rows per workgroup,
 * keys per tile], .dkdvCols / .dqRows = keys / rows per thread (1, 2 or 4; default 4),
 * .split = thread groups G (each owns D/G dims; default D/8).
 */
export function planAttentionBackward(
  spec: AttentionSpec,
  limits: AttentionLimits,
  options: BackwardOptions = {},
): KernelPlan[] {
  const prefetch = options.prefetch ?? true;
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

  const qt = chooseBlockedTile(r, limits, "dq", prefetch);
  const dqGrid = grid(Math.ceil(r.Tq / qt.outer) * r.BH, maxWg, 2);
  const dqNames = [...inputs, "dO", "lse", "o", "params", "delta", packed ? "dqkv" : "dQ"];

  const kt = chooseBlockedTile(r, limits, "dkdv", prefetch);
  const dkdvGrid = grid(Math.ceil(r.S / kt.outer) * r.BH, maxWg, 2);
  const dkdvNames = [
    ...inputs,
    "dO",
    "lse",
    "delta",
    "params",
    ...(packed ? ["dqkv"] : ["dK", "dV"]),
  ];

  return [
    {
      code: dqCode(r, qt, dqGrid[0]),
      workgroups: dqGrid,
      label: attentionLabel(r, "backward dQ"),
      bindings: dqNames,
      bindingBytes: pick(dqNames),
    },
    {
      code: dkdvCode(r, kt, dkdvGrid[0]),
      workgroups: dkdvGrid,
      label: attentionLabel(r, "backward dK/dV"),
      bindings: dkdvNames,
      bindingBytes: pick(dkdvNames),
    },
  ];
}
