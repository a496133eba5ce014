/**
 * Batched matmul on the tape, over the generated kernels of `codegen/matmul/plan.ts`.
 *
 * A 2-D right operand (a weight) with a non-transposed left operand folds the left's batch
 * axes into M: one big GEMM, and the weight's gradient sums over the batch for free.
 *
 * Under `--precision f16` the fused decode products (layer-norm prologues and KV-cache
 * epilogues) and the f16 path's decode shapes (<= 16 rows, inference) run the skinny
 * kernel on the weight's registered f16 copy (`MatmulSpec.bHalf`; the copy the f16 products
 * read, matmul_f16.ts): half the bytes of the weight stream that bounds a decode step.
 */
import { isGradEnabled, record } from "../core/autograd.ts";
import {
  DYNAMIC_M_BUCKETS,
  dynamicMBucket,
  dynamicMGrid,
  type MatmulSpec,
  planMatmul,
} from "../codegen/matmul/plan.ts";
import { dimsBuffer } from "./dims.ts";
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import { full, mish } from "./elementwise.ts";
import type { EpilogueActivation } from "../codegen/activation.ts";
import { sum } from "./reduce.ts";
import { layerNorm } from "./norm.ts";
import { isSkinny, skinnyFits } from "../codegen/matmul/skinny.ts";
import { appendKv, cacheParams } from "./cached_attention.ts";
import { skinnyRowsKernel } from "./_skinny_rows.ts";
import { f16ShadowOf, matmulF16, usesF16 } from "./matmul_f16.ts";
import { matmulGeometry, sumBatchTo, unfusedEpilogue } from "./_matmul_common.ts";

/** Transposition flags of `matmul`. */
export interface MatmulOptions {
  /** Use A^T: `a` is stored [..., K, M]. */
  transA?: boolean;
  /** Use B^T: `b` is stored [..., N, K]. */
  transB?: boolean;
  /** Add a bias [N] to every output row (fused). */
  bias?: Tensor;
  /**
   * Split long K over more workgroups ("auto" lets the planner decide): for weight gradients,
   * whose outputs are small and whose K is the whole batch of tokens.
   */
  splitK?: "auto" | number;
  /**
   * Fused epilogue: act(op(A)·op(B) + bias) (GPT-2's tanh GELU or the exact erf GELU), in the
   * matmul's output pass (or its split-K reduce) instead of a separate elementwise dispatch.
   */
  activation?: EpilogueActivation;
  /** Fused epilogue: add this tensor (the output's shape) last, e.g. a residual stream. */
  residual?: Tensor;
  /**
   * Prologue: layer-norm the rows of `a` first, i.e. matmul(layerNorm(a, weight, bias, eps),
   * b, ...). Fused into the skinny decode kernel (codegen/matmul/skinny.ts: each workgroup
   * computes the row statistics of the A rows it reads anyway) when the shape takes it and
   * nothing needs a gradient; otherwise composed from the `layerNorm` op (same result).
   */
  layerNorm?: {
    weight: Tensor;
    bias: Tensor;
    eps?: number;
    /** Then Mish of the normalized rows (the Q head's LN + Mish), before multiplying. */
    activation?: "mish";
  };
  /**
   * Epilogue for the packed QKV projection of decoding (output [seqs, t, 3d]): also write its
   * key and value columns into a layer's KV cache (kernels/ops/cached_attention.ts layout) at
   * positions start.. . Fused into the skinny kernel when nothing needs a gradient; otherwise
   * an `appendKv` dispatch follows the product (same values).
   */
  kvCache?: { cache: Tensor; start: number };
}

/** op(A) · op(B) over the last two axes; leading axes are batch (equal, or B 2-D). */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  if (opts.kvCache) return matmulKv(a, b, opts, opts.kvCache);
  if (opts.layerNorm) return matmulLayerNorm(a, b, opts, opts.layerNorm);
  // f16 storage, f32 accumulation (ops/matmul_f16.ts): f16 operands, an f16 weight copy or
  // precision f16.
  if (usesF16(a, b)) return skinnyHalf(a, b, opts) ?? matmulF16(a, b, opts);
  const { spec, outShape, N } = specOf(a, b, opts);
  const { activation, residual } = opts;
  if (residual && residual.shape.join() !== outShape.join()) {
    throw new Error(
      `matmul: residual [${residual.shape}] must have the output shape [${outShape}]`,
    );
  }
  if (activation || residual) {
    // Under noGrad (decoding) nothing is recorded, so trainable weights may fuse too.
    const needsGrad = isGradEnabled() &&
      [a, b, opts.bias, residual].some((t) => t?.requiresGrad);
    if (needsGrad) {
      // On the tape: the unfused composition, whose backward rules exist already.
      const y = matmul(a, b, { ...opts, activation: undefined, residual: undefined });
      return unfusedEpilogue(y, activation, residual);
    }
    spec.activation = activation;
    spec.residual = !!residual;
    const out = Tensor.empty(outShape, "f32");
    run(spec, a, b, out, opts.bias ?? null, null, residual ?? null);
    return out;
  }
  const out = Tensor.empty(outShape, "f32");
  run(spec, a, b, out, opts.bias ?? null, null);
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const inputs = opts.bias ? [a, b, opts.bias] : [a, b];
  return record(out, "matmul", inputs, (g) => {
    const ga = a.requiresGrad ? gradA(g, a, b, transA, transB) : null;
    if (opts.bias?.requiresGrad && b.requiresGrad && b.rank === 2 && !transA) {
      // The bias gradient (column sums of G) comes out of the weight-gradient GEMM.
      const [gb, gbias] = gradBAndBias(g, a, transB);
      return [ga, gb, gbias];
    }
    const gb = b.requiresGrad ? gradB(g, a, b, transA, transB) : null;
    const gbias = opts.bias?.requiresGrad ? sumRows(g, N) : null;
    return opts.bias ? [ga, gb, gbias] : [ga, gb];
  });
}

/** {@link matmul} with its layer-norm prologue: fused where possible, else composed. */
function matmulLayerNorm(
  a: Tensor,
  b: Tensor,
  opts: MatmulOptions,
  ln: NonNullable<MatmulOptions["layerNorm"]>,
): Tensor {
  const eps = ln.eps ?? 1e-5;
  const rest = { ...opts, layerNorm: undefined };
  checkLn(ln, a.shape[a.rank - 1], true);
  const { spec, outShape } = specOf(a, b, rest);
  const needsGrad = isGradEnabled() &&
    [a, b, opts.bias, opts.residual, ln.weight, ln.bias].some((t) => t?.requiresGrad);
  if (needsGrad || opts.transA || opts.splitK !== undefined || !isSkinny(spec)) {
    const n = layerNorm(a, ln.weight, ln.bias, eps);
    return matmul(ln.activation === "mish" ? mish(n) : n, b, rest);
  }
  if (opts.residual && opts.residual.shape.join() !== outShape.join()) {
    throw new Error(
      `matmul: residual [${opts.residual.shape}] must have the output shape [${outShape}]`,
    );
  }
  spec.activation = opts.activation;
  spec.residual = !!opts.residual;
  spec.lnEps = eps;
  spec.lnAct = ln.activation;
  const hb = halfCopy(b, spec);
  const out = Tensor.empty(outShape, "f32");
  run(spec, a, hb, out, opts.bias ?? null, null, opts.residual ?? null, [ln.weight, ln.bias]);
  return out;
}

/**
 * The weight a fused decode product reads: the f16 copy of `b` registered for the f16
 * products (matmul_f16.ts `registerF16Shadow`, `--precision f16`; the same copy, refreshed
 * after each optimizer step), marking `spec.bHalf`; else `b` itself (f32: spec unchanged).
 */
function halfCopy(b: Tensor, spec: MatmulSpec): Tensor {
  const copy = b.dtype === "f32" ? f16ShadowOf(b) : undefined;
  if (!copy) return b;
  spec.bHalf = true;
  return copy;
}

/**
 * An f16-path product (`matmul_f16.ts`) at a decode shape (inference, <= 16 rows, long K) on
 * the skinny kernel with the weight's f16 copy: `matmulF16`'s values (A rounded to f16 on
 * load, the f16 copy of B, f32 sums; only the summation order differs) in one dispatch whose
 * threads loop over at most 16 k-slices, where the tiled f16 kernel loops over all of K.
 * Null where it does not apply (then `matmulF16` runs).
 */
function skinnyHalf(a: Tensor, b: Tensor, opts: MatmulOptions): Tensor | null {
  const { bias, residual } = opts;
  if (
    a.dtype !== "f32" || b.dtype !== "f32" || !f16ShadowOf(b) || isGradEnabled() ||
    opts.transA || opts.splitK !== undefined || (bias && bias.dtype !== "f32") ||
    (residual && residual.dtype !== "f32")
  ) return null;
  const { spec, outShape } = specOf(a, b, opts);
  if (residual && residual.shape.join() !== outShape.join()) return null;
  spec.activation = opts.activation;
  spec.residual = !!residual;
  const hb = halfCopy(b, spec);
  if (!skinnyRowsKernel(spec, runtime().ctx.limits)) return null;
  const out = Tensor.empty(outShape, "f32");
  run(spec, a, hb, out, bias ?? null, null, residual ?? null);
  return out;
}

function checkLn(ln: NonNullable<MatmulOptions["layerNorm"]>, K: number, act = false): void {
  if (ln.activation && !act) throw new Error("matmul: a layerNorm activation needs a plain matmul");
  for (const [name, t] of [["weight", ln.weight], ["bias", ln.bias]] as const) {
    if (t.rank !== 1 || t.shape[0] !== K || t.dtype !== "f32") {
      throw new Error(`matmul: layerNorm ${name} ${t} must be f32 [${K}]`);
    }
  }
}

/**
 * The cache's sizes (and element type: f32, or f16 with `dtype`) for the QKV output
 * [seqs, t, 3d] of `a`: throws on a mismatch.
 */
function kvSpec(a: Tensor, cache: Tensor, N: number): NonNullable<MatmulSpec["kvWrite"]> {
  const [two, seqs, heads, cap, headSize] = cache.shape;
  if (cache.rank !== 5 || two !== 2 || a.rank !== 3 || a.shape[0] !== seqs) {
    throw new Error(`matmul: kvCache [${cache.shape}] does not fit the rows of [${a.shape}]`);
  }
  if (cache.dtype !== "f32" && cache.dtype !== "f16") {
    throw new Error(`matmul: kvCache ${cache} must be f32 or f16`);
  }
  if (N !== 3 * heads * headSize) {
    throw new Error(`matmul: kvCache needs ${3 * heads * headSize} output columns, got ${N}`);
  }
  const kv = { seqs, t: a.shape[1], heads, headSize, cap };
  // f32 leaves the spec (and so its plan keys and WGSL) as it was.
  return cache.dtype === "f16" ? { ...kv, dtype: "f16" } : kv;
}

/** {@link matmul} with the KV-cache epilogue: fused where possible, else appendKv after. */
function matmulKv(
  a: Tensor,
  b: Tensor,
  opts: MatmulOptions,
  kv: NonNullable<MatmulOptions["kvCache"]>,
): Tensor {
  const rest = { ...opts, kvCache: undefined };
  const { spec, outShape, N } = specOf(a, b, rest);
  const kvw = kvSpec(a, kv.cache, N);
  if (!Number.isInteger(kv.start) || kv.start < 0 || kv.start + kvw.t > kvw.cap) {
    throw new Error(`matmul: kvCache positions from ${kv.start} exceed the capacity ${kvw.cap}`);
  }
  const ln = opts.layerNorm;
  if (ln) checkLn(ln, a.shape[a.rank - 1]);
  const needsGrad = isGradEnabled() &&
    [a, b, opts.bias, opts.residual, ln?.weight, ln?.bias].some((t) => t?.requiresGrad);
  spec.activation = opts.activation;
  spec.residual = !!opts.residual;
  spec.lnEps = ln ? ln.eps ?? 1e-5 : undefined;
  spec.kvWrite = kvw;
  const fused = !needsGrad && !opts.transA && opts.splitK === undefined &&
    skinnyFits(spec, runtime().ctx.limits) &&
    (!opts.residual || opts.residual.shape.join() === outShape.join());
  if (!fused) {
    const out = matmul(a, b, rest);
    appendKv(out, kv.cache, kv.start);
    return out;
  }
  const hb = halfCopy(b, spec);
  const out = Tensor.empty(outShape, "f32");
  const prm = cacheParams(kv.start, kv.start + kvw.t);
  run(
    spec,
    a,
    hb,
    out,
    opts.bias ?? null,
    null,
    opts.residual ?? null,
    ln ? [ln.weight, ln.bias] : null,
    [kv.cache, prm],
  );
  prm.dispose();
  return out;
}

/**
 * Whether a `layerNorm` prologue of `rows` x K times a weight [N, K]^T runs as one fused
 * dispatch on this device (the skinny kernel); callers keep their unfused path otherwise,
 * which is fewer dispatches then.
 */
export function fusesPrologue(rows: number, N: number, K: number): boolean {
  const spec: MatmulSpec = {
    batch: 1,
    M: rows,
    N,
    K,
    transA: false,
    transB: true,
    aBatchStride: 0,
    bBatchStride: 0,
  };
  return skinnyFits(spec, runtime().ctx.limits);
}

/**
 * op(A) · op(B) as {@link matmul} (no bias, not recorded on the tape: for backward passes),
 * plus the sum over k of op(A) (`which` "a": one value per output row, [rows]) or of op(B)
 * ("b": one per output column, [N]; batch-major when batched) from the same kernel.
 */
export function matmulKSum(
  a: Tensor,
  b: Tensor,
  which: "a" | "b",
  opts: Omit<MatmulOptions, "bias"> = {},
): { out: Tensor; sum: Tensor } {
  const { spec, outShape } = specOf(a, b, opts);
  spec.sumK = which;
  const out = Tensor.empty(outShape, "f32");
  const sum = Tensor.empty([spec.batch * (which === "a" ? spec.M : spec.N)], "f32");
  run(spec, a, b, out, null, sum);
  return { out, sum };
}

function specOf(
  a: Tensor,
  b: Tensor,
  opts: MatmulOptions,
): { spec: MatmulSpec; outShape: number[]; N: number } {
  // A rank error (matmulGeometry's) comes first.
  if (a.rank >= 2 && b.rank >= 2 && (a.dtype !== "f32" || b.dtype !== "f32")) {
    throw new Error(`matmul: f32 operands only, got ${a.dtype} and ${b.dtype}`);
  }
  const { geometry, outShape } = matmulGeometry(a, b, opts);
  const spec: MatmulSpec = { ...geometry };
  const N = geometry.N;
  spec.bias = !!opts.bias;
  if (opts.splitK) spec.splitK = opts.splitK;
  return { spec, outShape, N };
}

/** Record the plan's dispatches (one, or two with split-K) into `out` (and `sum`). */
function run(
  spec: MatmulSpec,
  a: Tensor,
  b: Tensor,
  out: Tensor,
  bias: Tensor | null,
  sum: Tensor | null,
  residual: Tensor | null = null,
  ln: [Tensor, Tensor] | null = null,
  tail: Tensor[] = [],
): void {
  if (out.size === 0) return;
  if (spec.K === 0) throw new Error("matmul: empty inner dimension");
  const rt = runtime();
  const sp = spec;
  if (rowsGeneric(sp)) {
    // Inference: one pipeline for every number of rows (evaluation's environments, beams and
    // windows); M is a run-time dim and the grid follows it.
    sp.dynamicM = true;
    const kind = `${sp.N}|${sp.K}|${sp.transB}|${sp.bias}|${sp.activation}|${sp.residual}|` +
      `${sp.accumulate}`;
    const plan = dynamicPlan(sp, kind);
    const kernel = planCache(`mmd|${kind}|${sp.M}`, () => ({
      code: plan.code,
      label: plan.label,
      workgroups: dynamicMGrid(sp, plan.tile, rt.ctx.limits),
    }));
    const bufs = [a.buffer, b.buffer, out.buffer];
    if (bias) bufs.push(bias.buffer);
    if (residual) bufs.push(residual.buffer);
    if (!warmedKinds.has(kind)) {
      // The first product of a kind also compiles the other row buckets' pipelines (one empty
      // workgroup, M = 0): evaluation's later groups, with fewer or more rows than the first
      // agent step's, then compile nothing.
      warmedKinds.add(kind);
      for (const M of DYNAMIC_M_BUCKETS) {
        const other = { ...sp, M };
        if (dynamicMBucket(M) === dynamicMBucket(sp.M) || !rowsGeneric(other)) continue;
        const warm = dynamicPlan(other, kind);
        rt.dispatch({ ...warm, workgroups: [1, 1, 1] }, [...bufs, dimsBuffer(0)]);
      }
    }
    bufs.push(dimsBuffer(sp.M));
    rt.dispatch(kernel, bufs);
    return;
  }
  const rowsKernel = skinnyRowsKernel(sp, rt.ctx.limits);
  if (rowsKernel) {
    // Inference decode shapes (<= 16 rows): one pipeline per row bucket, rows at run time.
    const bufs = [a.buffer, b.buffer, out.buffer];
    if (bias) bufs.push(bias.buffer);
    if (residual) bufs.push(residual.buffer);
    if (ln) bufs.push(ln[0].buffer, ln[1].buffer);
    for (const t of tail) bufs.push(t.buffer);
    bufs.push(dimsBuffer(sp.M));
    rt.dispatch(rowsKernel, bufs);
    return;
  }
  const plan = planCache(
    `mm|${sp.batch}|${sp.M}|${sp.N}|${sp.K}|${sp.transA}|${sp.transB}|${sp.aBatchStride}|` +
      `${sp.bBatchStride}|${sp.bias}|${sp.splitK}|${sp.sumK}|${sp.activation}|${sp.residual}|` +
      `${sp.lnEps}|${sp.lnAct}|${JSON.stringify(sp.kvWrite ?? null)}` +
      (sp.bHalf ? "|w16" : ""),
    () => planMatmul(sp, rt.ctx.limits),
  );
  if (plan.splitK) {
    // Partial products per K range into scratch, then a fixed-order sum (deterministic).
    const scratch = rt.pool.acquire(plan.splitK.scratchBytes);
    const sumScratch = sum ? rt.pool.acquire(plan.splitK.sumScratchBytes) : null;
    rt.dispatch(
      plan,
      sumScratch ? [a.buffer, b.buffer, scratch, sumScratch] : [
        a.buffer,
        b.buffer,
        scratch,
      ],
    );
    const reduceBufs = [scratch, out.buffer];
    if (bias) reduceBufs.push(bias.buffer);
    if (residual) reduceBufs.push(residual.buffer);
    if (sumScratch) reduceBufs.push(sumScratch, sum!.buffer);
    rt.dispatch(plan.splitK.reduce, reduceBufs);
    rt.pool.release(scratch);
    if (sumScratch) rt.pool.release(sumScratch);
  } else {
    const bufs = [a.buffer, b.buffer, out.buffer];
    if (bias) bufs.push(bias.buffer);
    if (residual) bufs.push(residual.buffer);
    if (ln) bufs.push(ln[0].buffer, ln[1].buffer);
    for (const t of tail) bufs.push(t.buffer);
    if (sum) bufs.push(sum.buffer);
    rt.dispatch(plan, bufs);
  }
}

/** Kinds (weights and flags) of shape-generic products whose both row buckets are compiled. */
const warmedKinds = new Set<string>();

/**
 * The shape-generic plan of `sp` (dynamicM): only what does not depend on M (source, label,
 * tile), cached per row bucket and kind.
 */
function dynamicPlan(sp: MatmulSpec, kind: string) {
  return planCache(`mmd|${dynamicMBucket(sp.M)}|${kind}`, () => {
    const p = planMatmul(sp, runtime().ctx.limits);
    return { code: p.code, label: p.label, tile: p.tile };
  });
}

/**
 * Whether a product takes the shape-generic plan (rows read at run time): outside a gradient
 * tape (training keeps its baked shapes), a plain 2-D product with a weight that the skinny
 * decode kernel does not take.
 */
function rowsGeneric(sp: MatmulSpec): boolean {
  return !isGradEnabled() && sp.batch === 1 && !sp.transA && sp.splitK === undefined &&
    !sp.sumK && sp.lnEps === undefined && !sp.kvWrite && !isSkinny(sp);
}

// With C = op(A)·op(B): d op(A) = G·op(B)^T and d op(B) = op(A)^T·G.
function gradA(g: Tensor, a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  const full = transA
    ? matmul(b, g, { transA: transB, transB: true })
    : matmul(g, b, { transB: !transB });
  return sumBatchTo(full, a.shape);
}

/**
 * Gradients of a 2-D weight B (op(A) not transposed) and of the bias, from one GEMM: the bias
 * gradient is the column sum of G, which the weight-gradient GEMM reads as its A (B^T stored:
 * dB^T = G^T·A) or B operand (dB = A^T·G) anyway.
 */
function gradBAndBias(g: Tensor, a: Tensor, transB: boolean): [Tensor, Tensor] {
  const K = a.shape[a.rank - 1];
  const N = g.shape[g.rank - 1];
  const a2 = a.view([a.size / K, K]);
  const g2 = g.view([g.size / N, N]);
  // Same split choice as gradB: the folded (batched) case may split K, the plain 2-D one not.
  const splitK = a.rank > 2 ? "auto" as const : undefined;
  const { out, sum } = transB
    ? matmulKSum(g2, a2, "a", { transA: true, splitK })
    : matmulKSum(a2, g2, "b", { transA: true, splitK });
  a2.dispose();
  g2.dispose();
  return [out, sum];
}

function gradB(g: Tensor, a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  if (b.rank === 2 && a.rank > 2) {
    if (transA) {
      // Per-batch products, then the sum over the (flattened) batch.
      const [K, M] = a.shape.slice(-2);
      const a3 = a.view([a.size / (K * M), K, M]);
      const g3 = g.view([a3.shape[0], M, g.shape[g.rank - 1]]);
      const per = transB ? matmul(g3, a3, { transA: true, transB: true }) : matmul(a3, g3);
      return sum(per, 0);
    }
    // Folded batch: treat A and G as 2-D so one product sums over the batch.
    const K = a.shape[a.rank - 1];
    const a2 = a.view([a.size / K, K]);
    const g2 = g.view([g.size / g.shape[g.rank - 1], g.shape[g.rank - 1]]);
    return transB
      ? matmul(g2, a2, { transA: true, splitK: "auto" })
      : matmul(a2, g2, { transA: true, splitK: "auto" });
  }
  const full = transB
    ? matmul(g, a, { transA: true, transB: transA })
    : matmul(a, g, { transA: !transA });
  return sumBatchTo(full, b.shape);
}

function sumRows(g: Tensor, N: number): Tensor {
  const ones = full([1, g.size / N], 1);
  const out = matmul(ones, g.view([g.size / N, N]), { splitK: "auto" }).view([N]);
  ones.dispose();
  return out;
}
