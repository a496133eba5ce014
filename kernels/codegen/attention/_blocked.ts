/**
 * Tiles and WGSL fragments of the register-blocked attention backward kernels (_dkdv.ts,
 * _dq.ts). Both have the same two-phase shape per inner tile, like two small GEMMs:
 *
 * - phase 1 (scores): each thread computes an R x (inner/G) micro-tile of S = q·k and
 *   dP = dO·v over the full head dimension from workgroup memory (no partial sums across
 *   threads), turns it into P = exp2(S - L), the dropout-weighted P and dS, and stores them
 *   as `vec{R}` per (inner item, thread group) so phase 2 reads its R values in one load;
 * - phase 2 (accumulate): each thread owns R outer items x D/G dims of its accumulators
 *   (dK and dV, or dQ) as separate vec4 variables and adds one outer product per inner item.
 *
 * "Outer" is what a workgroup owns (the key block of dK/dV, the query block of dQ), "inner"
 * what it loops over. A thread's R outer items are `og + x * (outer / R)` (strided, so
 * neighbouring threads read neighbouring rows) and its inner items in phase 1 are
 * `g + y * G`. Rows in workgroup memory are padded to an odd number of vec4s, so the 8
 * threads of a 128-bit load phase hit 8 different bank groups.
 *
 * @module
 */

import { type AttentionLimits, blockCap, readVec, type ResolvedSpec } from "./common.ts";
import { lines } from "./_tiles.ts";

/** Tile of a register-blocked backward kernel (see the module doc). */
export interface BlockedTile {
  /** Items a workgroup owns: keys (dK/dV) or query rows (dQ). */
  outer: number;
  /** Items per step of the loop: query rows (dK/dV) or keys (dQ). */
  inner: number;
  /** Outer items per thread, 1, 2 or 4 (register blocking). */
  R: number;
  /** Thread groups: each owns D/G dims in phase 2 and inner/G items in phase 1. */
  G: number;
  /**
   * Software pipelining: the next inner tile is fetched from global memory into registers
   * while this one is computed (its latency hides behind phase 1 and 2), then stored to
   * workgroup memory after the loop's first barrier. Costs 2 * inner * D / (4 * threads)
   * vec4 registers.
   */
  prefetch: boolean;
}

/** Row stride in vec4s of a padded tile row: D/4 made odd (conflict-free 128-bit loads). */
export function paddedRow(D: number): number {
  const D4 = D / 4;
  return D4 % 2 === 0 ? D4 + 1 : D4;
}

/** Threads per workgroup of a tile. */
export function blockedThreads(t: BlockedTile): number {
  return (t.outer / t.R) * t.G;
}

/**
 * Workgroup bytes: two padded outer tiles (k, v or q, dO), two padded inner tiles,
 * `scoreTiles` outer x inner f32 tiles for phase 2 and one f32 per outer item.
 */
export function blockedBytes(t: BlockedTile, D: number, scoreTiles: number): number {
  const DS = paddedRow(D);
  // + one f32 per outer item (dQ's delta).
  return 2 * (t.outer + t.inner) * DS * 16 + scoreTiles * t.outer * t.inner * 4 + t.outer * 4;
}

function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/** Preferred thread groups for head dim D: D/G = 8 dims each, then 4, 16, 32, ... */
function groupChoices(D: number): number[] {
  const D4 = D / 4;
  const divisors = Array.from({ length: D4 }, (_, i) => D4 - i).filter((g) => D4 % g === 0);
  // Distance from 2 vec4s per group; ties go to more groups (fewer registers), as listed.
  const cost = (g: number) => Math.abs(Math.log2(D4 / g / 2));
  return divisors.sort((a, b) => cost(a) - cost(b));
}

/**
 * Pick the tile of a backward kernel. `override` is [outer, inner] (spec.tiles.dkdv or .dq);
 * R and G come from spec.tiles (dkdvCols / dqRows, split) or default to 4 and D/8.
 * The defaults need under 32 KiB of workgroup memory at D = 64, so lavapipe and an H100 run
 * the same kernel.
 */
export function chooseBlockedTile(
  r: ResolvedSpec,
  limits: AttentionLimits,
  what: "dkdv" | "dq",
  prefetch = true,
): BlockedTile {
  const [outerN, innerN] = what === "dkdv" ? [r.S, r.Tq] : [r.Tq, r.S];
  const R = (what === "dkdv" ? r.tiles.dkdvCols : r.tiles.dqRows) ?? 4;
  const scoreTiles = what === "dkdv" ? 2 : 1;
  if (![1, 2, 4].includes(R)) {
    throw new Error(`attention: backward ${what} blocks 1, 2 or 4 items per thread, not ${R}`);
  }
  const fits = (t: BlockedTile) =>
    t.outer % t.R === 0 && t.inner % t.G === 0 && (r.D / 4) % t.G === 0 &&
    blockedThreads(t) <= limits.maxComputeInvocationsPerWorkgroup &&
    blockedBytes(t, r.D, scoreTiles) <= limits.maxComputeWorkgroupStorageSize;
  const override = what === "dkdv" ? r.tiles.dkdv : r.tiles.dq;
  const groups = r.tiles.split !== undefined ? [r.tiles.split] : groupChoices(r.D);
  if (override) {
    for (const G of groups) {
      const t = { outer: override[0], inner: override[1], R, G, prefetch };
      if (fits(t)) return t;
    }
    throw new Error(
      `attention: backward ${what} tile ${override} exceeds device limits (or ${R} items per ` +
        `thread do not divide ${override[0]}, or ${groups[0]} groups do not divide ` +
        `${override[1]} and D/4=${r.D / 4})`,
    );
  }
  // [outer, inner]: dK/dV 32 keys x 16 queries, dQ 32 rows x 16 keys (about 30 KiB at D=64).
  for (const [o0, i0] of [[32, 16], [16, 16], [16, 8], [8, 8], [4, 4]]) {
    for (const G of groups) {
      // Short sequences: shrink the blocks (outer to a multiple of R, inner to one of G).
      const outer = roundUp(Math.min(o0, blockCap(outerN)), R);
      const inner = roundUp(Math.min(roundUp(i0, G), blockCap(innerN)), G);
      const t = { outer, inner, R, G, prefetch };
      if (fits(t)) return t;
    }
  }
  throw new Error(`attention: no backward ${what} tile fits D=${r.D} in the device limits`);
}

/**
 * `acc += dot(a, b)` as a chain of four fma: `dot` then `+` is five instructions on NVIDIA
 * (the sum is not contracted into the dot product), the chain four.
 */
export function fmaDot(acc: string, a: string, b: string): string {
  const c = "xyzw";
  let e = acc;
  for (const x of c) e = `fma(${a}.${x}, ${b}.${x}, ${e})`;
  return `${acc} = ${e};`;
}

/** One side of phase 1's products: per-thread items, the names and tiles of both operands. */
export interface DotSide {
  /** Items per thread. */
  n: number;
  /** The score operand (q or k): its variable prefix and workgroup tile. */
  score: [string, string];
  /** The gradient operand (dO or v): its variable prefix and workgroup tile. */
  grad: [string, string];
  /** Tile row of item i (a WGSL expression). */
  row: (i: number) => string;
}

/**
 * Phase 1's products in both backward kernels, over the full head dim: s{x}_{y} = q·k and
 * gd{x}_{y} = dO·v for the thread's `outer.n` x `inner.n` items (each side's operands read
 * from its padded tiles, outer first).
 */
export function phase1Dots(D4: number, DS: number, outer: DotSide, inner: DotSide): string {
  const pairs = (f: (x: number, y: number) => string) =>
    lines(outer.n, (x) => lines(inner.n, (y) => f(x, y)));
  const load = (sd: DotSide) =>
    lines(
      sd.n,
      (i) =>
        `      let ${sd.score[0]}${i} = ${sd.score[1]}[(${sd.row(i)}) * ${DS}u + d];\n      let ${
          sd.grad[0]
        }${i} = ${sd.grad[1]}[(${sd.row(i)}) * ${DS}u + d];`,
    );
  return `${pairs((x, y) => `    var s${x}_${y} = 0.0;\n    var gd${x}_${y} = 0.0;`)}
    for (var d = 0u; d < ${D4}u; d++) {
${load(outer)}
${load(inner)}
${
    pairs((x, y) =>
      `      ${fmaDot(`s${x}_${y}`, `${outer.score[0]}${x}`, `${inner.score[0]}${y}`)}\n      ${
        fmaDot(`gd${x}_${y}`, `${outer.grad[0]}${x}`, `${inner.grad[0]}${y}`)
      }`
    )
  }
    }`;
}

/** WGSL type of R f32 values packed together (phase-1 scores of a thread's outer items). */
export function packType(R: number): string {
  return R === 1 ? "f32" : `vec${R}<f32>`;
}

/** Component x of a packed value `v` (see {@link packType}). */
export function packComp(v: string, R: number, x: number): string {
  return R === 1 ? v : `${v}.${"xyzw"[x]}`;
}

/** Constructor of a packed value from R expressions. */
export function packOf(R: number, parts: string[]): string {
  return R === 1 ? parts[0] : `${packType(R)}(${parts.join(", ")})`;
}

/**
 * Cooperative load of `n` rows from row `first` (a WGSL expression) of two tensors into their
 * padded workgroup arrays (zeros past `limit`), between two barriers.
 */
export function loadRows(o: RowsLoad & { first: string }): string {
  const D4 = o.r.D / 4;
  const DS = paddedRow(o.r.D);
  const [a, srcA, rowA] = o.a;
  const [b, srcB, rowB] = o.b;
  return `    for (var e = lid; e < ${o.n * D4}u; e += ${o.threads}u) {
      let row = e / ${D4}u;
      let d = e % ${D4}u;
      let t = ${o.first} + row;
      var ax = vec4<f32>(0.0);
      var bx = vec4<f32>(0.0);
      if (t < ${o.limit}u) {
        ax = ${readVec(o.r, srcA, `${rowA}(bh, t) + d`)};
        bx = ${readVec(o.r, srcB, `${rowB}(bh, t) + d`)};
      }
      ${a}[row * ${DS}u + d] = ax;
      ${b}[row * ${DS}u + d] = bx;
    }`;
}

/** A tile load of two tensors: {@link loadRows}, {@link prefetchRows}. */
export interface RowsLoad {
  r: ResolvedSpec;
  /** Rows per tile. */
  n: number;
  /** Rows past this index load as zeros. */
  limit: number;
  threads: number;
  /** [workgroup array, binding, row function] of the two tensors. */
  a: [string, string, string];
  b: [string, string, string];
}

/**
 * Register-prefetched tile loads: `decl` declares the staging registers, `fetch(first)`
 * loads rows first.. into them (zeros past the limit), `store` writes them to the padded
 * workgroup arrays. Each thread owns fixed vec4 units lid + u * threads of the tile.
 */
export function prefetchRows(o: RowsLoad): {
  decl: string;
  fetch: (first: string, indent: string) => string;
  store: string;
} {
  const D4 = o.r.D / 4;
  const DS = paddedRow(o.r.D);
  const total = o.n * D4;
  const units = Math.ceil(total / o.threads);
  const partial = units * o.threads > total;
  const [a, srcA, rowA] = o.a;
  const [b, srcB, rowB] = o.b;
  const each = (f: (u: number) => string, sep = "\n") =>
    Array.from({ length: units }, (_, u) => f(u)).join(sep);
  const unit = (u: number) => `lid + ${u * o.threads}u`;
  const decl = each((u) => `  var pa${u} = vec4<f32>(0.0);\n  var pb${u} = vec4<f32>(0.0);`);
  const fetch = (first: string, ind: string) =>
    each((u) =>
      `${ind}{
${ind}  let e = ${unit(u)};
${ind}  let t = ${first} + e / ${D4}u;
${ind}  pa${u} = vec4<f32>(0.0);
${ind}  pb${u} = vec4<f32>(0.0);
${ind}  if (${partial ? `e < ${total}u && ` : ""}t < ${o.limit}u) {
${ind}    pa${u} = ${readVec(o.r, srcA, `${rowA}(bh, t) + e % ${D4}u`)};
${ind}    pb${u} = ${readVec(o.r, srcB, `${rowB}(bh, t) + e % ${D4}u`)};
${ind}  }
${ind}}`
    );
  const store = each((u) => {
    const guard = partial && (u + 1) * o.threads > total;
    return `    {
      let e = ${unit(u)};${guard ? `\n      if (e < ${total}u) {` : ""}
      ${a}[(e / ${D4}u) * ${DS}u + e % ${D4}u] = pa${u};
      ${b}[(e / ${D4}u) * ${DS}u + e % ${D4}u] = pb${u};${guard ? "\n      }" : ""}
    }`;
  });
  return { decl, fetch, store };
}
