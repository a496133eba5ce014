/**
 * Matmul with f16 storage and f32 accumulation on the tape (generator:
 * kernels/codegen/matmul/f16.ts). `matmul` (ops/matmul.ts) routes here for f16 operands and,
 * under `setPrecision("f16")` (kernels/core/precision.ts), for every plain product.
 *
 * Operands: an f16 tensor is read as is; an f32 tensor is rounded to f16 as the kernel loads
 * it; an f32 weight with a registered f16 copy ({@link registerF16Shadow}, kept fresh after
 * each optimizer step by kernels/nn/f16_shadow.ts) is read from that copy, and its gradient
 * (f32) flows to the f32 master. Gradients are f32 and computed by the same kernels (the
 * incoming gradient rounded to f16 where it enters a product, as autocast does).
 *
 * Inference (no gradient tape) of a plain 2-D product reads its rows at run time (the dims
 * uniform, kernels/ops/dims.ts), as ops/matmul.ts does for f32: one pipeline per row bucket
 * and kind (weights' shape, dtypes, epilogue), all compiled by the kind's first product, so an
 * evaluation with another number of environments, beams or window length compiles nothing.
 *
 * @module
 */
import { isGradEnabled, record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import type { EpilogueActivation } from "../codegen/activation.ts";
import {
  chooseF16Splits,
  type F16MatmulSpec,
  f16RowsTile,
  f16Tiles,
  generateF16Matmul,
  type HalfOrFloat,
} from "../codegen/matmul/f16.ts";
import { DYNAMIC_M_BUCKETS } from "../codegen/matmul/plan.ts";
import { grid } from "../codegen/wgsl.ts";
import { dimsBuffer } from "./dims.ts";
import { sum } from "./reduce.ts";
import { precision } from "../core/precision.ts";
import { matmulGeometry, sumBatchTo, unfusedEpilogue } from "./_matmul_common.ts";

/** Options of {@link matmulF16} (those of `matmul` it supports, plus the output type). */
export interface MatmulF16Options {
  transA?: boolean;
  transB?: boolean;
  bias?: Tensor;
  activation?: EpilogueActivation;
  residual?: Tensor;
  /**
   * Output dtype (default f32). An f16 output is rounded once at the store; its gradient
   * (f32, e.g. from attention on f16 q, k, v) passes straight through the rounding.
   */
  outDtype?: HalfOrFloat;
  /** Split K over workgroups ("auto": when there are few output tiles); f32 output only. */
  splitK?: "auto" | number;
}

const shadows = new WeakMap<Tensor, Tensor>();

/** Make products read `shadow` (f16, same shape) in place of the f32 weight `master`. */
export function registerF16Shadow(master: Tensor, shadow: Tensor): void {
  if (master.dtype !== "f32" || shadow.dtype !== "f16") {
    throw new Error(`registerF16Shadow: needs an f32 master and an f16 copy, got ${master}`);
  }
  if (master.shape.join() !== shadow.shape.join()) {
    throw new Error(`registerF16Shadow: shapes [${master.shape}] and [${shadow.shape}] differ`);
  }
  shadows.set(master, shadow);
}

/** Stop reading an f16 copy for `master`. */
export function unregisterF16Shadow(master: Tensor): void {
  shadows.delete(master);
}

/** The registered f16 copy of `master`, if any. */
export function f16ShadowOf(master: Tensor): Tensor | undefined {
  const s = shadows.get(master);
  return s && !s.disposed ? s : undefined;
}

/**
 * Whether `matmul(a, b)` takes the f16 path: an f16 operand, an operand with a registered f16
 * copy (the weights of an f16-trained or f16-evaluated model), or `setPrecision("f16")`.
 */
export function usesF16(a: Tensor, b: Tensor): boolean {
  return a.dtype === "f16" || b.dtype === "f16" || precision() === "f16" ||
    shadows.has(a) || shadows.has(b);
}

/** The tensor a product reads for `t`: its f16 copy (gradient to `t`) or `t` itself. */
function operand(t: Tensor): Tensor {
  const s = t.dtype === "f32" ? f16ShadowOf(t) : undefined;
  if (!s) return t;
  const v = s.view(s.shape);
  // The copy is the master rounded: the gradient (f32) passes straight to the master.
  return record(v, "f16_shadow", [t], (g) => [g]);
}

/** op(A)·op(B) with f16 storage and f32 accumulation (shapes as `matmul`). */
export function matmulF16(a: Tensor, b: Tensor, opts: MatmulF16Options = {}): Tensor {
  for (const t of [a, b]) {
    if (t.dtype !== "f32" && t.dtype !== "f16") {
      throw new Error(`matmul (f16): operands must be f32 or f16, got ${t.dtype}`);
    }
  }
  const { activation, residual } = opts;
  const outDtype = opts.outDtype ?? "f32";
  const A = operand(a);
  const B = operand(b);
  const { spec, outShape, N } = specOf(A, B, opts, outDtype);
  if (residual && residual.shape.join() !== outShape.join()) {
    throw new Error(
      `matmul: residual [${residual.shape}] must have the output shape [${outShape}]`,
    );
  }
  for (const t of [opts.bias, residual]) {
    if (t && t.dtype !== "f32") throw new Error(`matmul (f16): bias and residual must be f32`);
  }
  const needsGrad = isGradEnabled() &&
    [A, B, opts.bias, residual].some((t) => t?.requiresGrad);
  if ((activation || residual) && needsGrad) {
    if (outDtype === "f16") {
      throw new Error("matmul (f16): an f16 output on the tape takes a bias only, no epilogue");
    }
    // On the tape: the unfused composition (the epilogue ops have backward rules).
    const y = matmulF16(A, B, { ...opts, activation: undefined, residual: undefined });
    return unfusedEpilogue(y, activation, residual);
  }
  spec.activation = activation;
  spec.residual = !!residual;
  // Inference: rows at run time (one pipeline per row bucket); training keeps baked shapes.
  spec.dynamicM = !isGradEnabled() && spec.batch === 1 && !spec.transA &&
    opts.splitK === undefined;
  const out = runSpec(spec, outShape, A, B, opts.bias ?? null, residual ?? null, opts.splitK);
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const inputs = opts.bias ? [A, B, opts.bias] : [A, B];
  return record(out, "matmul_f16", inputs, (g) => {
    const ga = A.requiresGrad ? gradA(g, A, B, transA, transB) : null;
    const gb = B.requiresGrad ? gradB(g, A, B, transA, transB) : null;
    const gbias = opts.bias?.requiresGrad ? sum(g.view([g.size / N, N]), 0) : null;
    return opts.bias ? [ga, gb, gbias] : [ga, gb];
  });
}

/** The untaped product (backward passes use it). */
function raw(
  a: Tensor,
  b: Tensor,
  opts: { transA?: boolean; transB?: boolean; splitK?: "auto" },
): Tensor {
  const { spec, outShape } = specOf(a, b, opts, "f32");
  return runSpec(spec, outShape, a, b, null, null, opts.splitK);
}

function runSpec(
  spec: F16MatmulSpec,
  outShape: number[],
  a: Tensor,
  b: Tensor,
  bias: Tensor | null,
  residual: Tensor | null,
  splitK: "auto" | number | undefined,
): Tensor {
  const size = outShape.reduce((x, y) => x * y, 1);
  if (size === 0) return Tensor.empty(outShape, spec.outType);
  if (spec.K === 0) throw new Error("matmul: empty inner dimension");
  const plain = !spec.bias && !spec.activation && !spec.residual && spec.outType === "f32";
  const splits = !plain || splitK === undefined
    ? 1
    : splitK === "auto"
    ? chooseF16Splits(spec)
    : Math.max(1, Math.min(splitK, Math.ceil(spec.K / 16)));
  spec.splits = splits;
  const rt = runtime();
  if (spec.dynamicM) return runDynamic(spec, outShape, [a, b, bias, residual]);
  const kernel = planCache(`mmf16|${JSON.stringify(spec)}`, () => generateF16Matmul(spec));
  if (splits === 1) {
    const out = Tensor.empty(outShape, spec.outType);
    const bufs = [a.buffer, b.buffer, out.buffer];
    if (bias) bufs.push(bias.buffer);
    if (residual) bufs.push(residual.buffer);
    rt.dispatch(kernel, bufs);
    return out;
  }
  // Partial products per K range, then a fixed-order sum (deterministic).
  const parts = Tensor.empty([splits, size], "f32");
  rt.dispatch(kernel, [a.buffer, b.buffer, parts.buffer]);
  const total = sum(parts, 0);
  parts.dispose();
  const shaped = total.view(outShape);
  total.dispose();
  return shaped;
}

/** Kinds (everything but M) whose every row bucket's pipeline has been compiled. */
const warmedKinds = new Set<string>();

/** The shape-generic kernel source of `spec`'s row bucket and kind (no grid). */
function dynamicKernel(spec: F16MatmulSpec, kind: string) {
  const rows = f16RowsTile(spec);
  return planCache(`mmf16d.src|${rows}|${kind}`, () => {
    const k = generateF16Matmul(spec);
    return { code: k.code, label: k.label };
  });
}

/** A shape-generic product (`spec.dynamicM`): M from the dims uniform, grid from this M. */
function runDynamic(
  spec: F16MatmulSpec,
  outShape: number[],
  operands: (Tensor | null)[],
): Tensor {
  const rt = runtime();
  const kind = JSON.stringify({ ...spec, M: 0 });
  const source = dynamicKernel(spec, kind);
  const kernel = planCache(`mmf16d|${spec.M}|${kind}`, () => ({
    ...source,
    workgroups: grid(f16Tiles(spec)),
  }));
  const out = Tensor.empty(outShape, spec.outType);
  const bufs = [operands[0]!.buffer, operands[1]!.buffer, out.buffer];
  for (const t of operands.slice(2)) if (t) bufs.push(t.buffer);
  if (!warmedKinds.has(kind)) {
    // The first product of a kind also compiles the other row tile's pipeline (one empty
    // workgroup, M = 0), so later products with other row counts compile nothing.
    warmedKinds.add(kind);
    const tiles = new Set([f16RowsTile(spec)]);
    for (const M of DYNAMIC_M_BUCKETS) {
      const other = { ...spec, M };
      if (tiles.has(f16RowsTile(other))) continue;
      tiles.add(f16RowsTile(other));
      rt.dispatch({ ...dynamicKernel(other, kind), workgroups: [1, 1, 1] }, [
        ...bufs,
        dimsBuffer(0),
      ]);
    }
  }
  rt.dispatch(kernel, [...bufs, dimsBuffer(spec.M)]);
  return out;
}

function specOf(
  a: Tensor,
  b: Tensor,
  opts: { transA?: boolean; transB?: boolean; bias?: Tensor },
  outType: HalfOrFloat,
): { spec: F16MatmulSpec; outShape: number[]; N: number } {
  const { geometry, outShape } = matmulGeometry(a, b, opts);
  const spec: F16MatmulSpec = {
    ...geometry,
    aType: a.dtype as HalfOrFloat,
    bType: b.dtype as HalfOrFloat,
    outType,
    bias: !!opts.bias,
  };
  return { spec, outShape, N: geometry.N };
}

// With C = op(A)·op(B): d op(A) = G·op(B)^T and d op(B) = op(A)^T·G (as ops/matmul.ts).
function gradA(g: Tensor, a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  const full = transA
    ? raw(b, g, { transA: transB, transB: true })
    : raw(g, b, { transB: !transB });
  return sumBatchTo(full, a.shape);
}

function gradB(g: Tensor, a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  if (b.rank === 2 && a.rank > 2 && !transA) {
    // Folded batch: one product over all rows sums the batch (split K: few output tiles).
    const K = a.shape[a.rank - 1];
    const a2 = a.view([a.size / K, K]);
    const g2 = g.view([g.size / g.shape[g.rank - 1], g.shape[g.rank - 1]]);
    const out = transB
      ? raw(g2, a2, { transA: true, splitK: "auto" })
      : raw(a2, g2, { transA: true, splitK: "auto" });
    a2.dispose();
    g2.dispose();
    return out;
  }
  const full = transB
    ? raw(g, a, { transA: true, transB: transA })
    : raw(a, g, { transA: !transA });
  return sumBatchTo(full, b.shape);
}
