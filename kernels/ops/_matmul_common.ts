/**
 * What ops/matmul.ts (f32) and ops/matmul_f16.ts share: the shape rules of op(A)·op(B)
 * (sizes, batch broadcasting, the folding of a 2-D weight's left batch into M), the gradient
 * of a broadcast operand, and the fused epilogue composed from taped ops.
 *
 * @module
 */
import type { Tensor } from "../core/tensor.ts";
import type { MatmulGeometry } from "../codegen/matmul/plan.ts";
import type { EpilogueActivation } from "../codegen/activation.ts";
import { add, gelu, geluErf, relu } from "./elementwise.ts";
import { sum } from "./reduce.ts";

/**
 * The geometry and output shape of op(A)·op(B), or a one-line error. A 2-D right operand (a
 * weight) with a non-transposed left operand folds the left's batch axes into M (one GEMM);
 * otherwise the batch axes are equal or one operand is 2-D and broadcast.
 */
export function matmulGeometry(
  a: Tensor,
  b: Tensor,
  opts: { transA?: boolean; transB?: boolean; bias?: Tensor },
): { geometry: MatmulGeometry; outShape: number[] } {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  if (a.rank < 2 || b.rank < 2) {
    throw new Error(`matmul: operands need rank >= 2, got [${a.shape}] and [${b.shape}]`);
  }
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const M = transA ? ac : ar;
  const K = transA ? ar : ac;
  const Kb = transB ? bc : br;
  const N = transB ? br : bc;
  if (K !== Kb) {
    throw new Error(
      `matmul: inner sizes differ: [${a.shape}]${transA ? "^T" : ""} x [${b.shape}]${
        transB ? "^T" : ""
      } (${K} vs ${Kb})`,
    );
  }
  if (opts.bias && (opts.bias.rank !== 1 || opts.bias.shape[0] !== N)) {
    throw new Error(`matmul: bias [${opts.bias.shape}] must be [${N}]`);
  }
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  if (bBatch.length === 0 && !transA) {
    const rows = aBatch.reduce((x, y) => x * y, 1) * M;
    return {
      geometry: { batch: 1, M: rows, N, K, transA, transB, aBatchStride: 0, bBatchStride: 0 },
      outShape: [...aBatch, M, N],
    };
  }
  if (aBatch.length && bBatch.length && aBatch.join() !== bBatch.join()) {
    throw new Error(`matmul: batch shapes [${aBatch}] and [${bBatch}] differ`);
  }
  const batchShape = aBatch.length ? aBatch : bBatch;
  return {
    geometry: {
      batch: batchShape.reduce((x, y) => x * y, 1),
      M,
      N,
      K,
      transA,
      transB,
      aBatchStride: aBatch.length === 0 ? 0 : M * K,
      bBatchStride: bBatch.length === 0 ? 0 : K * N,
    },
    outShape: [...batchShape, M, N],
  };
}

/** A broadcast 2-D operand's gradient is the sum of the per-batch products. */
export function sumBatchTo(t: Tensor, shape: readonly number[]): Tensor {
  if (t.size === shape.reduce((x, y) => x * y, 1)) return t.view(shape);
  const [r, c] = t.shape.slice(-2);
  return sum(t.view([t.size / (r * c), r, c]), 0).view(shape);
}

/**
 * act(y) + residual from taped ops: a fused epilogue's composition, for products on the
 * gradient tape (the ops have backward rules).
 */
export function unfusedEpilogue(
  y: Tensor,
  activation: EpilogueActivation | undefined,
  residual: Tensor | undefined,
): Tensor {
  if (activation) {
    y = activation === "gelu" ? gelu(y) : activation === "relu" ? relu(y) : geluErf(y);
  }
  return residual ? add(y, residual) : y;
}
