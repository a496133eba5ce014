/**
 * Float64 reference of the COMBO penalty (train/combo.ts), written from the authors'
 * `q_penalty: combo` branch: alpha * (masked mean over negative rows of logsumexp_a Q(s, a)
 * - masked mean over positive rows of Q(s, a_data)), Q = sum_i z_i p_i.
 */
import { atoms } from "./cpu_c51.ts";

/** Rows of the reference (float64). */
export interface CpuComboBatch {
  N: number;
  A: number;
  K: number;
  /** [N, A, K] distributions. */
  probs: Float64Array;
  actions: number[];
  negativeMask: number[];
  positiveMask: number[];
  /** [N, A] or undefined (all actions). */
  valid?: number[];
}

/** The penalty in float64. */
export function comboRef(b: CpuComboBatch, alpha: number): number {
  const z = atoms(b.K);
  const q = (n: number, a: number) => {
    let s = 0;
    for (let i = 0; i < b.K; i++) s += b.probs[(n * b.A + a) * b.K + i] * z[i];
    return s;
  };
  let neg = 0, negDen = 0, pos = 0, posDen = 0;
  for (let n = 0; n < b.N; n++) {
    const qs: number[] = [];
    for (let a = 0; a < b.A; a++) if (!b.valid || b.valid[n * b.A + a]) qs.push(q(n, a));
    const m = Math.max(...qs);
    const lse = m + Math.log(qs.reduce((s, v) => s + Math.exp(v - m), 0));
    neg += b.negativeMask[n] * lse;
    negDen += b.negativeMask[n];
    pos += b.positiveMask[n] * q(n, b.actions[n]);
    posDen += b.positiveMask[n];
  }
  return alpha * (neg / Math.max(negDen, 1e-12) - pos / Math.max(posDen, 1e-12));
}
