/**
 * Dropout + residual add + layer norm in one kernel, the seam between the sublayers of a
 * pre-LN transformer in training:
 *
 *   h = x + dropout(y, p, seed)      (the residual stream; x absent: h = dropout(y))
 *   n = layerNorm(h) * weight + bias (the next sublayer's input)
 *
 * One dispatch where the unfused chain takes three (dropout, add, layerNorm). The backward
 * (one joint rule for both outputs, kernels/core/autograd.ts `recordJoint`) is one kernel for
 * the input gradients (layer norm's input gradient plus the stream's own gradient, then the
 * dropout mask) that also writes per-row-block partial column sums for the norm's weight and
 * bias, and one kernel adding those partials: two dispatches where the unfused chain takes
 * four or five (layerNorm.grad_x, layerNorm.grad_wb in one or two passes, the tape's add,
 * dropout.grad). The mask is dropout.ts's counter-based hash of (seed, flat element index),
 * so the same seed drops the same elements as `dropout(y, p, seed)`; the forward and input
 * gradients use layerNorm's sums in its order (equal to the unfused composition bit for bit
 * on lavapipe; tests/fused_residual_norm_test.ts).
 *
 * @module
 */
import { recordJoint } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import type { PooledBuffer } from "../core/buffer_pool.ts";
import { binding, f32, grid, linearWorkgroup } from "../codegen/wgsl.ts";
import { resolveSeed, type Seed } from "../../util/rng.ts";
import { HASH_WGSL } from "./dropout.ts";
import {
  COL_SUM_COLS,
  COL_SUM_ENTRY,
  COL_SUM_GROUPS,
  columnIdsWgsl,
  columnTreeWgsl,
  layerNormRowWgsl,
  layerNormWorkgroup,
  reduceEntryWgsl,
  treeSumWgsl,
} from "./_norm_wgsl.ts";

/** Options of {@link dropoutAddLayerNorm}. */
export interface DropoutAddLayerNormOptions {
  /** Drop probability of `y` in [0, 1); 0 is a plain residual add + layer norm. */
  p: number;
  /** The dropout mask's seed (a function for a captured step, as `dropout`). */
  seed: Seed;
  /** Layer norm epsilon (default 1e-5). */
  eps?: number;
}

/** The two outputs of {@link dropoutAddLayerNorm}. */
export interface ResidualNorm {
  /** The residual stream x + dropout(y). */
  h: Tensor;
  /** layerNorm(h) with the given weight and bias. */
  n: Tensor;
}

/**
 * h = x + dropout(y, p, seed) and n = layerNorm(h) * weight + bias over the last axis, in
 * one dispatch; differentiable in x, y, weight and bias through one joint backward rule (the
 * gradients reaching h and n are summed inside the backward kernel). `x` null: h =
 * dropout(y) (the embedding dropout before the first block).
 */
export function dropoutAddLayerNorm(
  x: Tensor | null,
  y: Tensor,
  weight: Tensor,
  bias: Tensor,
  opts: DropoutAddLayerNormOptions,
): ResidualNorm {
  const { p, seed } = opts;
  const eps = opts.eps ?? 1e-5;
  const name = "dropoutAddLayerNorm";
  if (!(p >= 0 && p < 1)) throw new Error(`${name}: p must be in [0, 1), got ${p}`);
  for (const t of [x, y, weight, bias]) {
    if (t && t.dtype !== "f32") throw new Error(`${name}: f32 tensors only, got ${t.dtype}`);
  }
  if (y.rank === 0) throw new Error(`${name}: needs at least one axis`);
  if (x && x.shape.join() !== y.shape.join()) {
    throw new Error(`${name}: residual [${x.shape}] and branch [${y.shape}] differ`);
  }
  const C = y.shape[y.rank - 1];
  if (weight.rank !== 1 || weight.shape[0] !== C || bias.rank !== 1 || bias.shape[0] !== C) {
    throw new Error(
      `${name}: weight [${weight.shape}] and bias [${bias.shape}] must be [${C}] for [${y.shape}]`,
    );
  }
  const rows = y.size / C;
  const h = Tensor.empty(y.shape, "f32");
  const n = Tensor.empty(y.shape, "f32");
  const stats = Tensor.empty([rows, 2], "f32"); // mean, rstd of each row of h
  if (rows === 0 || C === 0) {
    stats.dispose();
    return { h, n };
  }
  // Threads per row: layerNorm's choice (same sums, same bits).
  const wg = layerNormWorkgroup(C);
  const hasX = x !== null;
  const kernel = planCache(`dropAddLn|${C}|${rows}|${p}|${eps}|${hasX}`, () => {
    const ins = [...(hasX ? ["x"] : []), "y", ...(p > 0 ? ["seed"] : []), "w", "b"];
    const decl = ins.map((v, i) => binding(i, v, v === "seed" ? "u32" : "f32")).join("\n");
    const k = ins.length;
    const branch = p > 0
      ? `select(0.0, y[i] * ${f32(1 / (1 - p))}, uniform01(seed[0], i) >= ${f32(p)})`
      : "y[i]";
    const code = `${decl}
${binding(k, "h", "f32", true)}
${binding(k + 1, "n", "f32", true)}
${binding(k + 2, "stats", "f32", true)}
${p > 0 ? HASH_WGSL : ""}
${reduceEntryWgsl(wg)}
  let row = ${linearWorkgroup(rows)};
  if (row >= ${rows}u) { return; }
  let base = row * ${C}u;
  var ta = 0.0;
  var tb = 0.0;
  var s = 0.0;
  for (var c = lid; c < ${C}u; c += ${wg}u) {
    let i = base + c;
    let v = ${hasX ? `x[i] + ${branch}` : branch};
    h[i] = v;
    s += v;
  }
${layerNormRowWgsl("h", "n", C, wg, eps)}
}
`;
    return { code, label: "dropoutAddLayerNorm", workgroups: grid(rows) };
  });
  const seedBuf = p > 0 ? seedBuffer(seed) : null;
  runtime().dispatch(kernel, [
    ...(x ? [x.buffer] : []),
    y.buffer,
    ...(seedBuf ? [seedBuf] : []),
    weight.buffer,
    bias.buffer,
    h.buffer,
    n.buffer,
    stats.buffer,
  ]);
  // The dispatch is recorded; the pool never hands this buffer to an upload before it runs.
  if (seedBuf) runtime().pool.release(seedBuf);
  const inputs = [...(x ? [x] : []), y, weight, bias];
  recordJoint([h, n], name, inputs, ([gH, gN]) => {
    const wantWB = gN !== null && (weight.requiresGrad || bias.requiresGrad);
    const r = residualNormGrad(gH, gN, h, weight, stats, {
      p,
      seed,
      rows,
      C,
      wg,
      hasX,
      wantWB,
    });
    if (x && !x.requiresGrad) r.gx?.dispose();
    if (!y.requiresGrad) r.gy.dispose();
    if (r.dw && !weight.requiresGrad) r.dw.dispose();
    if (r.db && !bias.requiresGrad) r.db.dispose();
    return [
      ...(x ? [x.requiresGrad ? r.gx : null] : []),
      y.requiresGrad ? r.gy : null,
      weight.requiresGrad ? r.dw : null,
      bias.requiresGrad ? r.db : null,
    ];
  });
  // Without a tape nothing will read the statistics again.
  if (!h.node) stats.dispose();
  return { h, n };
}

/** The mask seed as a one-word buffer (a function seed: recomputed on every replay). */
function seedBuffer(seed: Seed): PooledBuffer {
  return typeof seed === "number"
    ? runtime().uploadStatic(new Uint32Array([seed >>> 0]))
    : runtime().uploadDynamic(() => new Uint32Array([resolveSeed(seed) >>> 0]));
}

/** Rows per workgroup of the backward: about 1024 workgroups, at least one row each. */
function rowsPerGroup(rows: number): number {
  return Math.max(1, Math.ceil(rows / 1024));
}

/**
 * The backward in one dispatch (two with the weight/bias gradients): per row, t = gH + the
 * layer-norm input gradient of gN (either may be absent), gx = t (the residual's gradient)
 * and gy = dropout's backward of t (the same mask). With `wantWB` each workgroup also keeps
 * per-thread column sums of gN * xhat and gN over its block of rows and writes them as one
 * row of partials; a second kernel adds the partials per column in block order (fixed by
 * rows and C: deterministic), so layer norm's own two-pass column sum is not needed.
 */
function residualNormGrad(
  gH: Tensor | null,
  gN: Tensor | null,
  h: Tensor,
  w: Tensor,
  stats: Tensor,
  o: {
    p: number;
    seed: Seed;
    rows: number;
    C: number;
    wg: number;
    hasX: boolean;
    wantWB: boolean;
  },
): { gx: Tensor | null; gy: Tensor; dw: Tensor | null; db: Tensor | null } {
  const { p, rows, C, wg, hasX, wantWB } = o;
  const gx = hasX ? Tensor.empty(h.shape, "f32") : null;
  const gy = Tensor.empty(h.shape, "f32");
  const hasN = gN !== null, hasH = gH !== null;
  const R = rowsPerGroup(rows);
  const blocks = Math.ceil(rows / R);
  const K = Math.ceil(C / wg); // columns per thread
  const pw = wantWB ? Tensor.empty([blocks, C], "f32") : null;
  const pb = wantWB ? Tensor.empty([blocks, C], "f32") : null;
  const key = `dropAddLnGrad|${C}|${rows}|${p}|${hasX}|${hasN}|${hasH}|${wantWB}`;
  const kernel = planCache(key, () => {
    // Without gN the kernel only masks gH: the norm's buffers stay unbound ("auto" layouts
    // drop unused bindings).
    const ins = [
      ...(hasN ? ["gn"] : []),
      ...(hasH ? ["gh"] : []),
      ...(hasN ? ["h", "w", "stats"] : []),
      ...(p > 0 ? ["seed"] : []),
    ];
    const outs = [...(hasX ? ["gx"] : []), "gy", ...(wantWB ? ["pw", "pb"] : [])];
    const decl = [
      ...ins.map((v, i) => binding(i, v, v === "seed" ? "u32" : "f32")),
      ...outs.map((v, i) => binding(ins.length + i, v, "f32", true)),
    ].join("\n");
    // The same expressions as norm.ts's layerNorm.grad_x, then the tape's add (gh + d:
    // float addition commutes) and dropout.grad's select.
    const total = hasN
      ? `${hasH ? "gh[i] + " : ""}rstd * (gn[i] * w[c] - ma - (h[i] - mean) * rstd * mb)`
      : "gh[i]";
    const stat = hasN
      ? `
    let mean = stats[row * 2u];
    let rstd = stats[row * 2u + 1u];
    var sa = 0.0; var sb = 0.0;
    for (var k = 0u; k < ${K}u; k++) {
      let c = lid + k * ${wg}u;
      if (c < ${C}u) {
        let gv = gn[base + c];
        let gx = gv * w[c];
        let xh = (h[base + c] - mean) * rstd;
        sa += gx; sb += gx * xh;${wantWB ? "\n        cw[k] += gv * xh; cb[k] += gv;" : ""}
      }
    }
    ra[lid] = sa; rb[lid] = sb;
${treeSumWgsl(wg).replaceAll("\n", "\n  ")}
    let ma = ta / ${C}.0; let mb = tb / ${C}.0;`
      : "";
    const code = `${decl}
${p > 0 ? HASH_WGSL : ""}
${reduceEntryWgsl(wg)}
  let blk = ${linearWorkgroup(blocks)};
  if (blk >= ${blocks}u) { return; }
  var ta = 0.0;
  var tb = 0.0;${wantWB ? `\n  var cw: array<f32, ${K}>;\n  var cb: array<f32, ${K}>;` : ""}
  let r1 = min((blk + 1u) * ${R}u, ${rows}u);
  for (var row = blk * ${R}u; row < r1; row++) {
    let base = row * ${C}u;${stat}
    for (var c = lid; c < ${C}u; c += ${wg}u) {
      let i = base + c;
      let t = ${total};${hasX ? "\n      gx[i] = t;" : ""}
      gy[i] = ${
      p > 0 ? `select(0.0, t * ${f32(1 / (1 - p))}, uniform01(seed[0], i) >= ${f32(p)})` : "t"
    };
    }
  }${
      wantWB
        ? `
  for (var k = 0u; k < ${K}u; k++) {
    let c = lid + k * ${wg}u;
    if (c < ${C}u) { pw[blk * ${C}u + c] = cw[k]; pb[blk * ${C}u + c] = cb[k]; }
  }`
        : ""
    }
}
`;
    return { code, label: "dropoutAddLayerNorm.grad", workgroups: grid(blocks) };
  });
  const seedBuf = p > 0 ? seedBuffer(o.seed) : null;
  runtime().dispatch(kernel, [
    ...(gN ? [gN.buffer] : []),
    ...(gH ? [gH.buffer] : []),
    ...(gN ? [h.buffer, w.buffer, stats.buffer] : []),
    ...(seedBuf ? [seedBuf] : []),
    ...(gx ? [gx.buffer] : []),
    gy.buffer,
    ...(pw && pb ? [pw.buffer, pb.buffer] : []),
  ]);
  if (seedBuf) runtime().pool.release(seedBuf);
  if (!pw || !pb) return { gx, gy, dw: null, db: null };
  const [dw, db] = sumPartials(pw, pb, blocks, C);
  pw.dispose();
  pb.dispose();
  return { gx, gy, dw, db };
}

/**
 * dw[c] = sum_b pw[b, c] and db[c] = sum_b pb[b, c] in one kernel: a workgroup owns 32
 * columns and 8 groups of threads that stride over the blocks, then a fixed-order tree (the
 * column-sum layout of layer norm's own weight/bias gradient, _norm_wgsl.ts).
 */
function sumPartials(pw: Tensor, pb: Tensor, blocks: number, C: number): [Tensor, Tensor] {
  const dw = Tensor.empty([C], "f32");
  const db = Tensor.empty([C], "f32");
  const groups = Math.ceil(C / COL_SUM_COLS);
  const kernel = planCache(`dropAddLnGradWb|${C}|${blocks}`, () => {
    const code = `${binding(0, "pw", "f32")}
${binding(1, "pb", "f32")}
${binding(2, "dw", "f32", true)}
${binding(3, "db", "f32", true)}
${COL_SUM_ENTRY}
  let grp = ${linearWorkgroup(groups)};
  if (grp >= ${groups}u) { return; }
${columnIdsWgsl("bg", C)}
  var sw = 0.0;
  var sb = 0.0;
  for (var b = bg; b < ${blocks}u; b += ${COL_SUM_GROUPS}u) {
    sw += pw[b * ${C}u + c];
    sb += pb[b * ${C}u + c];
  }
${columnTreeWgsl("bg", C, "dw[c] = ra[lid]; db[c] = rb[lid];")}
}
`;
    return { code, label: "dropoutAddLayerNorm.grad_wb", workgroups: grid(groups) };
  });
  runtime().dispatch(kernel, [pw.buffer, pb.buffer, dw.buffer, db.buffer]);
  return [dw, db];
}
