/**
 * Shape-generic skinny GEMMs for inference: decode products (M <= 16 rows) whose row count
 * changes with the number of environments and beams compile one pipeline per row bucket
 * (4, 8, 16) instead of one per M. The kernel is generated for the bucket's rows and reads
 * the actual rows from a `dims` uniform (codegen/matmul/skinny.ts `dynamicRows`): rows above
 * it are computed but never stored, which costs ALU on at most twice the rows (4x for one
 * row; the weights, which dominate, are streamed once either way). The first
 * product of a kind compiles the other buckets too (no dispatch), so an evaluation whose
 * later steps see other row counts compiles nothing.
 *
 * @module
 */
import { isGradEnabled } from "../core/autograd.ts";
import { planCache } from "../core/plan_cache.ts";
import { type Kernel, runtime } from "../core/runtime.ts";
import { chooseSkinny, generateSkinny, isSkinny, skinnyFits } from "../codegen/matmul/skinny.ts";
import { matmulLabel, type MatmulLimits, type MatmulSpec } from "../codegen/matmul/plan.ts";
import { grid } from "../codegen/wgsl.ts";

/**
 * Row buckets of the shape-generic skinny kernel (the most rows each variant takes): three,
 * so that warming a kind compiles two extra pipelines (slow on a CPU adapter); 1 to 3 rows
 * share the 4-row variant (the weights dominate there).
 */
export const SKINNY_ROW_BUCKETS: readonly number[] = [4, 8, 16];

/** The bucket of M rows (1 <= M <= 16): the smallest of SKINNY_ROW_BUCKETS that holds M. */
export function skinnyRowBucket(M: number): number {
  return SKINNY_ROW_BUCKETS.find((b) => b >= M) ?? M;
}

/** Kinds whose every bucket has been compiled. */
const warmed = new Set<string>();

/**
 * The shape-generic skinny kernel for `sp` (bind the usual buffers, then `dimsBuffer(M)`),
 * or null where the product does not take it (a gradient may be recorded, batched or
 * transposed A, split-K or k-sums, a non-skinny shape, or a bucket that does not fit).
 */
export function skinnyRowsKernel(sp: MatmulSpec, limits: MatmulLimits): Kernel | null {
  if (
    isGradEnabled() || sp.batch !== 1 || sp.transA || sp.splitK !== undefined || sp.sumK ||
    sp.dynamicM || sp.aBatchStride !== 0 || sp.bBatchStride !== 0 || !isSkinny(sp)
  ) return null;
  const kv = sp.kvWrite;
  const kind = `${sp.N}|${sp.K}|${sp.transB}|${sp.bias}|${sp.activation}|${sp.residual}|` +
    `${sp.accumulate}|${sp.lnEps}|${sp.lnAct}|` +
    (kv ? `${kv.heads},${kv.headSize},${kv.cap}${kv.dtype ? `,${kv.dtype}` : ""}` : "") +
    (sp.bHalf ? "|w16" : "");
  const kernel = bucketKernel(sp, skinnyRowBucket(sp.M), kind, limits);
  if (kernel && !warmed.has(kind)) {
    warmed.add(kind);
    for (const M of SKINNY_ROW_BUCKETS) {
      const other = bucketKernel(sp, M, kind, limits);
      if (other) runtime().prepare(other);
    }
  }
  return kernel;
}

function bucketKernel(
  sp: MatmulSpec,
  bucket: number,
  kind: string,
  limits: MatmulLimits,
): Kernel | null {
  return planCache(`mms|${bucket}|${kind}`, () => {
    // The bucket's spec: its rows, and (for the KV epilogue) sequences x tokens read at run
    // time, so only heads, head size and capacity stay in the source.
    const bs: MatmulSpec = {
      ...sp,
      M: bucket,
      kvWrite: sp.kvWrite && { ...sp.kvWrite, seqs: bucket, t: 1 },
    };
    if (!skinnyFits(bs, limits)) return null;
    const shape = chooseSkinny(bs, limits);
    const workgroups = grid(Math.ceil(bs.N / shape.C), limits.maxComputeWorkgroupsPerDimension);
    const label = `${matmulLabel(bs)} skinny`;
    const code = generateSkinny(bs, shape, workgroups, { a: 0, b: bs.K * bs.N, c: 0 }, label, {
      lnEps: bs.lnEps,
      lnAct: bs.lnAct,
      dynamicRows: true,
    });
    return { code, label, workgroups };
  });
}
