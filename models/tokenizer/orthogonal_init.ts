/**
 * The authors' tokenizer initialization (their utils.py `init_weights`, applied to the encoder
 * and decoder): every convolution weight orthogonal with gain sqrt(2) (ReLU's, as
 * `nn.init.orthogonal_(w, nn.init.calculate_gain("relu"))`), every convolution bias 0.
 *
 * @module
 */
import { assignValues, type Module } from "../../kernels/nn/module.ts";
import type { InitRng } from "../../kernels/nn/layers.ts";

/**
 * A [rows, cols] matrix (row-major) with orthonormal rows (rows <= cols) or columns
 * (rows > cols), times `gain`: torch's `orthogonal_`. A Gaussian matrix, oriented tall, goes
 * through QR (modified Gram-Schmidt in float64, whose R has a positive diagonal, i.e. torch's
 * Q times sign(diag R)), then back.
 */
export function orthogonal(rows: number, cols: number, gain: number, rng: InitRng): Float32Array {
  const tall = rows >= cols;
  const m = tall ? rows : cols; // length of each vector to orthonormalize
  const n = tall ? cols : rows; // number of vectors
  const g = rng.normal(m * n, 1);
  // v[j] = column j of the tall matrix.
  const v = Array.from({ length: n }, (_, j) => {
    const col = new Float64Array(m);
    for (let i = 0; i < m; i++) col[i] = tall ? g[i * n + j] : g[j * m + i];
    return col;
  });
  for (let j = 0; j < n; j++) {
    const a = v[j];
    for (let k = 0; k < j; k++) {
      const b = v[k];
      let dot = 0;
      for (let i = 0; i < m; i++) dot += a[i] * b[i];
      for (let i = 0; i < m; i++) a[i] -= dot * b[i];
    }
    let norm = 0;
    for (let i = 0; i < m; i++) norm += a[i] * a[i];
    norm = Math.sqrt(norm);
    for (let i = 0; i < m; i++) a[i] /= norm;
  }
  const out = new Float32Array(rows * cols);
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < m; i++) {
      if (tall) out[i * cols + j] = gain * v[j][i];
      else out[j * cols + i] = gain * v[j][i];
    }
  }
  return out;
}

/**
 * Re-initialize the convolutions of `module` (rank-4 weights and their biases) as the
 * authors do: orthogonal weights with gain sqrt(2), zero biases. Norms are left alone.
 */
export function orthogonalConvInit(module: Module, rng: InitRng): void {
  const named = new Map(module.namedParameters());
  for (const [name, w] of named) {
    if (w.rank !== 4 || !name.endsWith(".weight")) continue;
    const [out, ...rest] = w.shape;
    const cols = rest.reduce((a, b) => a * b, 1);
    assignValues(w, orthogonal(out, cols, Math.SQRT2, rng));
    const b = named.get(name.slice(0, -"weight".length) + "bias");
    if (b) assignValues(b, new Float32Array(b.size));
  }
}
