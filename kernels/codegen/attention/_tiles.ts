/**
 * Tile choice and WGSL fragments shared by the fused attention kernels.
 *
 * @module
 */

import {
  type AttentionLimits,
  blockCap,
  headSplit,
  readVec,
  type ResolvedSpec,
  seqLen,
} from "./common.ts";

/**
 * The query rows a shape-generic plan picks its tile for: short sequences (<= 16, decode-like)
 * keep their power-of-two cap, longer ones all plan for 64 (the largest block), so one tile
 * serves every window.
 */
export function dynamicRowsBucket(Tq: number): number {
  return Tq <= 16 ? blockCap(Tq) : 64;
}

/** Numbers of lines, joined: `lines(n, i => ...)`. */
export function lines(n: number, f: (i: number) => string, sep = "\n"): string {
  return Array.from({ length: n }, (_, i) => f(i)).join(sep);
}

/** Tile shape of a query-major kernel (forward, dQ): BR rows x BC keys, NS threads a row. */
export interface RowTile {
  BR: number;
  BC: number;
  NS: number;
}

/** Workgroup bytes of a query-major kernel: K and V tiles plus NS partial-score tiles (x2 for dQ). */
export function rowTileBytes(t: RowTile, D: number, partials: number): number {
  return 2 * t.BC * D * 4 + partials * t.NS * t.BR * (t.BC + 1) * 4;
}

/** Pick BR x BC for a query-major kernel (forward, dQ) that fits the limits. */
export function chooseRowTile(
  r: ResolvedSpec,
  limits: AttentionLimits,
  partials: number,
  override?: [number, number],
  rowsPerThread = 1,
): RowTile {
  const capBR = r.dynamic ? dynamicRowsBucket(r.Tq) : blockCap(r.Tq);
  let NS = r.tiles.split ?? headSplit(r.D);
  // Few query rows (KV-cache decode): spread each row over more threads so a workgroup still
  // fills about one warp instead of a handful of lanes.
  while (
    r.tiles.split === undefined && Math.min(64, capBR) * NS < 32 && (r.D / 4) % (2 * NS) === 0
  ) NS *= 2;
  const fits = (t: RowTile) =>
    t.BR % rowsPerThread === 0 &&
    (t.BR / rowsPerThread) * NS <= limits.maxComputeInvocationsPerWorkgroup &&
    rowTileBytes(t, r.D, partials) <= limits.maxComputeWorkgroupStorageSize;
  if (override) {
    const t = { BR: override[0], BC: override[1], NS };
    if (!fits(t)) {
      throw new Error(
        `attention: tile ${override} x${NS} exceeds device limits (or ${rowsPerThread} rows ` +
          `per thread do not divide ${override[0]})`,
      );
    }
    return t;
  }
  const candidates = [[64, 16], [32, 32], [32, 16], [16, 16], [16, 8], [8, 8], [4, 4]];
  for (const [BR0, BC] of candidates) {
    const t = { BR: Math.min(BR0, capBR), BC, NS };
    if (fits(t)) return t;
  }
  throw new Error(`attention: no tile fits D=${r.D} in the device limits`);
}

/** Label shared by the plans: shape, mask, dropout, layout. */
export function attentionLabel(r: ResolvedSpec, what: string): string {
  const mask = r.causal ? (r.Tq < r.S ? "causal+offset" : "causal") : "full";
  const half = r.qkvDtype === "f16" ? " f16" : "";
  if (r.dynamic) {
    return `attention ${what} H${r.H} T*${
      dynamicRowsBucket(r.Tq)
    } D${r.D} ${mask} ${r.layout}${half}`;
  }
  return `attention ${what} BH${r.BH} Tq${r.Tq} S${r.S} D${r.D} ${mask}` +
    `${r.dropout ? " dropout" : ""} ${r.layout}${half}`;
}

/**
 * WGSL prelude common to the query-major kernels (forward, dQ): the linear workgroup id and
 * row indices. Defines bh, blk (query block), sp (dim slice), ntiles (key tiles the whole
 * block needs; workgroup-uniform) and, for each of the thread's `rows` rows x = 0, 1, ...
 * (BR / rows apart): rx (row in block), ix (query row), ivx (ix clamped into range), limx
 * (last key the row may see).
 */
export function rowPrelude(r: ResolvedSpec, t: RowTile, gridX: number, rows: number): string {
  if (r.dynamic) return dynamicRowPrelude(r, t, rows);
  const NB = Math.ceil(r.Tq / t.BR);
  const BRt = t.BR / rows;
  // Causal blocks near the end of the sequence do the most work: start them first.
  const blk = r.causal ? `${NB - 1}u - lin % ${NB}u` : `lin % ${NB}u`;
  const last = r.causal
    ? `min(blk * ${t.BR}u + ${t.BR - 1}u, ${r.Tq - 1}u) + ${r.S - r.Tq}u`
    : `${r.S - 1}u`;
  const row = (x: number) => `
  let r${x} = rt + ${x * BRt}u;
  let i${x} = blk * ${t.BR}u + r${x};
  let iv${x} = min(i${x}, ${r.Tq - 1}u);
  let lim${x} = ${r.causal ? `min(i${x} + ${r.S - r.Tq}u, ${r.S - 1}u)` : `${r.S - 1}u`};`;
  return `  let lin = wg.x + wg.y * ${gridX}u;
  if (lin >= ${NB * r.BH}u) { return; }
  let bh = lin / ${NB}u;
  let blk = ${blk};
  let rt = lid % ${BRt}u;
  let sp = lid / ${BRt}u;${lines(rows, row, "")}
  let ntiles = (${last}) / ${t.BC}u + 1u;`;
}

/**
 * {@link rowPrelude} of a shape-generic plan: T = dims.x (Tq = S), BH = dims.y, the grid
 * read from `nwg` (the entry point declares it).
 */
function dynamicRowPrelude(r: ResolvedSpec, t: RowTile, rows: number): string {
  const NB = `((dims.x + ${t.BR - 1}u) / ${t.BR}u)`;
  const BRt = t.BR / rows;
  const blk = r.causal ? `${NB} - 1u - lin % ${NB}` : `lin % ${NB}`;
  const last = r.causal ? `min(blk * ${t.BR}u + ${t.BR - 1}u, dims.x - 1u)` : "dims.x - 1u";
  const row = (x: number) => `
  let r${x} = rt + ${x * BRt}u;
  let i${x} = blk * ${t.BR}u + r${x};
  let iv${x} = min(i${x}, dims.x - 1u);
  let lim${x} = ${r.causal ? `min(i${x}, dims.x - 1u)` : "dims.x - 1u"};`;
  return `  let lin = wg.x + wg.y * nwg.x;
  if (lin >= ${NB} * dims.y) { return; }
  let bh = lin / ${NB};
  let blk = ${blk};
  let rt = lid % ${BRt}u;
  let sp = lid / ${BRt}u;${lines(rows, row, "")}
  let ntiles = (${last}) / ${t.BC}u + 1u;`;
}

/** Cooperative load of key tile `j0` of K and V into kt, vt (zeros past S). */
export function loadKvTile(
  r: ResolvedSpec,
  t: RowTile,
  kName: string,
  vName: string,
  threads = t.BR * t.NS,
): string {
  const D4 = r.D / 4;
  return `    for (var e = lid; e < ${t.BC * D4}u; e += ${threads}u) {
      let j = j0 + e / ${D4}u;
      let d = e % ${D4}u;
      var kx = vec4<f32>(0.0);
      var vx = vec4<f32>(0.0);
      if (j < ${seqLen(r, "S")}) {
        kx = ${readVec(r, kName, "k_row(bh, j) + d")};
        vx = ${readVec(r, vName, "v_row(bh, j) + d")};
      }
      kt[e] = kx;
      vt[e] = vx;
    }
    workgroupBarrier();`;
}
