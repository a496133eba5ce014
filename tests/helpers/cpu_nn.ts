/**
 * Float64 CPU references of the nn ops (softmax family, layer norm, gathers, cross-entropy,
 * matmul, dropout, top-k) and of PyTorch's AdamW with global-norm clipping, written the plain
 * way so they share no index math with the WGSL generators.
 */
import { uniform01 } from "../../kernels/ops/dropout.ts";
import { numel } from "./reference.ts";

/** Apply `fn` to each row of length `C` of `x`, concatenating the results. */
function rowwise(
  x: ArrayLike<number>,
  C: number,
  fn: (row: number[]) => number[],
): Float64Array {
  const rows = x.length / C;
  const out: number[] = [];
  for (let r = 0; r < rows; r++) out.push(...fn(Array.from({ length: C }, (_, c) => x[r * C + c])));
  return Float64Array.from(out);
}

function lse(row: number[]): number {
  const m = Math.max(...row);
  return m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
}

/** Softmax over rows of length C. */
export const softmaxRef = (x: ArrayLike<number>, C: number): Float64Array =>
  rowwise(x, C, (row) => {
    const l = lse(row);
    return row.map((v) => Math.exp(v - l));
  });

/** Log-softmax over rows of length C. */
export const logSoftmaxRef = (x: ArrayLike<number>, C: number): Float64Array =>
  rowwise(x, C, (row) => {
    const l = lse(row);
    return row.map((v) => v - l);
  });

/** logsumexp of each row of length C (one value per row). */
export const logsumexpRef = (x: ArrayLike<number>, C: number): Float64Array =>
  rowwise(x, C, (row) => [lse(row)]);

/** Layer norm over rows of length C with biased variance, as torch.nn.functional.layer_norm. */
export function layerNormRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  C: number,
  eps = 1e-5,
): Float64Array {
  return rowwise(x, C, (row) => {
    const mean = row.reduce((s, v) => s + v, 0) / C;
    const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / C;
    const rstd = 1 / Math.sqrt(variance + eps);
    return row.map((v, c) => (v - mean) * rstd * w[c] + b[c]);
  });
}

/** Rows `idx[n]` of a table with rows of `D` elements. */
export function indexSelectRef(
  table: ArrayLike<number>,
  D: number,
  idx: ArrayLike<number>,
): Float64Array {
  const out = new Float64Array(idx.length * D);
  for (let n = 0; n < idx.length; n++) {
    for (let d = 0; d < D; d++) out[n * D + d] = table[idx[n] * D + d];
  }
  return out;
}

/** x[r, idx[r]] for rows of length C. */
export function gatherLastRef(
  x: ArrayLike<number>,
  C: number,
  idx: ArrayLike<number>,
): Float64Array {
  return Float64Array.from({ length: idx.length }, (_, r) => x[r * C + idx[r]]);
}

/** Mean cross-entropy; with weights sum(w * ce) / sum(w), and 0 when sum(w) is 0. */
export function crossEntropyRef(
  logits: ArrayLike<number>,
  C: number,
  targets: ArrayLike<number>,
  weights?: ArrayLike<number>,
): number {
  const ls = logSoftmaxRef(logits, C);
  let num = 0;
  let den = 0;
  for (let r = 0; r < targets.length; r++) {
    const w = weights ? weights[r] : 1;
    num -= w * ls[r * C + targets[r]];
    den += w;
  }
  return den === 0 ? 0 : num / den;
}

/** A matmul operand: values, shape, and whether the last two axes are used transposed. */
export interface MatOperand {
  data: ArrayLike<number>;
  shape: readonly number[];
  trans?: boolean;
}

/**
 * op(A) · op(B) (+ bias) over the last two axes. Batch axes are equal, or one operand is 2-D
 * and shared by every batch. Returns the values and the output shape.
 */
export function matmulRef(
  a: MatOperand,
  b: MatOperand,
  bias?: ArrayLike<number>,
): { data: Float64Array; shape: number[] } {
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const batchShape = aBatch.length ? aBatch : bBatch;
  const batch = numel(batchShape);
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const [M, K] = a.trans ? [ac, ar] : [ar, ac];
  const N = b.trans ? br : bc;
  // op(X) of batch `bi` as a dense row-major [rows, cols] float64 matrix.
  const dense = (o: MatOperand, bi: number, rows: number, cols: number) => {
    const [r, c] = o.shape.slice(-2);
    const base = o.shape.length > 2 ? bi * r * c : 0;
    const m = new Float64Array(rows * cols);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        m[i * cols + j] = o.trans ? o.data[base + j * c + i] : o.data[base + i * c + j];
      }
    }
    return m;
  };
  const out = new Float64Array(batch * M * N);
  for (let bi = 0; bi < batch; bi++) {
    const A = dense(a, bi, M, K);
    const B = dense(b, bi, K, N);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = bias ? bias[j] : 0;
        for (let k = 0; k < K; k++) s += A[i * K + k] * B[k * N + j];
        out[(bi * M + i) * N + j] = s;
      }
    }
  }
  return { data: out, shape: [...batchShape, M, N] };
}

/** Whether dropout keeps element `i`: the kernel compares against p rounded to f32. */
export function dropoutKeeps(seed: number, i: number, p: number): boolean {
  return uniform01(seed, i) >= Math.fround(p);
}

/** Inverted dropout with the engine's counter-based mask. */
export function dropoutRef(x: ArrayLike<number>, p: number, seed: number): Float64Array {
  return Float64Array.from(
    { length: x.length },
    (_, i) => (dropoutKeeps(seed, i, p) ? x[i] / (1 - p) : 0),
  );
}

/** The k largest values of each row (descending; ties: lower index first) and their indices. */
export function topkRef(
  x: ArrayLike<number>,
  C: number,
  k: number,
): { values: Float64Array; indices: Int32Array } {
  const rows = x.length / C;
  const values = new Float64Array(rows * k);
  const indices = new Int32Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const order = Array.from({ length: C }, (_, c) => c).sort((i, j) =>
      x[r * C + j] - x[r * C + i] || i - j
    );
    for (let j = 0; j < k; j++) {
      indices[r * k + j] = order[j];
      values[r * k + j] = x[r * C + order[j]];
    }
  }
  return { values, indices };
}

/** Hyper-parameters of `AdamWRef` (PyTorch's defaults except lr and weight decay 0.01). */
export interface AdamWRefOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  /** Per parameter: true where weight decay applies. */
  decay?: boolean[];
}

/**
 * torch.optim.AdamW (amsgrad off, maximize off) step by step in float64, preceded by
 * torch.nn.utils.clip_grad_norm_ when `maxGradNorm` is set.
 */
export class AdamWRef {
  readonly m: Float64Array[];
  readonly v: Float64Array[];
  step = 0;
  /** [total norm, clip coefficient (clamped to 1)] of the last step. */
  clip: [number, number] = [0, 1];

  constructor(readonly params: Float64Array[], readonly opts: AdamWRefOptions) {
    this.m = params.map((p) => new Float64Array(p.length));
    this.v = params.map((p) => new Float64Array(p.length));
  }

  /**
   * One step with these gradients; a parameter whose gradient is null is skipped entirely
   * (no decay, moments unchanged) and left out of the norm, as in PyTorch.
   */
  update(grads: readonly (ArrayLike<number> | null)[]): void {
    const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.01 } = this.opts;
    let scale = 1;
    let norm = 0;
    for (const g of grads) for (let i = 0; i < (g?.length ?? 0); i++) norm += g![i] * g![i];
    norm = Math.sqrt(norm);
    if (this.opts.maxGradNorm !== undefined) {
      scale = Math.min(1, this.opts.maxGradNorm / (norm + 1e-6));
    }
    this.clip = [this.opts.maxGradNorm !== undefined ? norm : 0, scale];
    this.step++;
    const bc1 = 1 - beta1 ** this.step;
    const bc2 = 1 - beta2 ** this.step;
    this.params.forEach((p, k) => {
      const grad = grads[k];
      if (!grad) return;
      const decay = this.opts.decay?.[k] ?? true;
      const m = this.m[k];
      const v = this.v[k];
      for (let i = 0; i < p.length; i++) {
        const g = grad[i] * scale;
        if (decay) p[i] *= 1 - lr * weightDecay;
        m[i] = beta1 * m[i] + (1 - beta1) * g;
        v[i] = beta2 * v[i] + (1 - beta2) * g * g;
        const denom = Math.sqrt(v[i]) / Math.sqrt(bc2) + eps;
        p[i] -= (lr / bc1) * (m[i] / denom);
      }
    });
  }
}
