/**
 * Float64 CPU reference of (dropout) self-attention, forward and analytic backward, on
 * [BH, T, D] arrays. Rebuilds the GPU dropout mask with {@link dropoutKeep}. For tests.
 *
 * @module
 */

import { dropoutKeep } from "../../kernels/codegen/attention/common.ts";

/** Shapes and options of a reference call (mirrors AttentionSpec, always "bhtd"). */
export interface RefSpec {
  BH: number;
  Tq: number;
  S: number;
  D: number;
  causal: boolean;
  scale?: number;
  /** Dropout {seed, p}; omitted or p = 0 means none. */
  dropout?: { seed: number; p: number };
}

/** Result of the reference forward: O [BH, Tq, D], L [BH, Tq], P and the mask multipliers. */
export interface RefForward {
  o: Float64Array;
  lse: Float64Array;
  /** Softmax probabilities [BH, Tq, S] (before dropout). */
  p: Float64Array;
  /** Dropout multipliers keep/(1-p) [BH, Tq, S] (all 1 without dropout). */
  mult: Float64Array;
}

/** Whether query row i (of Tq, the last rows of S) may see key j. */
export function visible(s: RefSpec, i: number, j: number): boolean {
  return !s.causal || j <= s.S - s.Tq + i;
}

/** Float64 forward: O = (P * mult) V with P = softmax(scale Q K^T) under the mask. */
export function attentionForwardRef(
  s: RefSpec,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
): RefForward {
  const { BH, Tq, S, D } = s;
  const scale = s.scale ?? 1 / Math.sqrt(D);
  const o = new Float64Array(BH * Tq * D);
  const lse = new Float64Array(BH * Tq);
  const p = new Float64Array(BH * Tq * S);
  const mult = new Float64Array(BH * Tq * S);
  const drop = s.dropout && s.dropout.p > 0 ? s.dropout : null;
  const row = new Float64Array(S);
  for (let bh = 0; bh < BH; bh++) {
    for (let i = 0; i < Tq; i++) {
      let mx = -Infinity;
      for (let j = 0; j < S; j++) {
        if (!visible(s, i, j)) continue;
        let d = 0;
        for (let x = 0; x < D; x++) d += q[(bh * Tq + i) * D + x] * k[(bh * S + j) * D + x];
        row[j] = d * scale;
        mx = Math.max(mx, row[j]);
      }
      let sum = 0;
      for (let j = 0; j < S; j++) if (visible(s, i, j)) sum += Math.exp(row[j] - mx);
      lse[bh * Tq + i] = mx + Math.log(sum);
      for (let j = 0; j < S; j++) {
        const pij = visible(s, i, j) ? Math.exp(row[j] - mx) / sum : 0;
        const m = drop ? (dropoutKeep(drop.seed, drop.p, bh, i, j) ? 1 / (1 - drop.p) : 0) : 1;
        p[(bh * Tq + i) * S + j] = pij;
        mult[(bh * Tq + i) * S + j] = m;
        const w = pij * m;
        for (let x = 0; x < D; x++) o[(bh * Tq + i) * D + x] += w * v[(bh * S + j) * D + x];
      }
    }
  }
  return { o, lse, p, mult };
}

/** Float64 analytic gradients of sum(O * dO) w.r.t. Q, K, V. */
export function attentionBackwardRef(
  s: RefSpec,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dO: ArrayLike<number>,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { BH, Tq, S, D } = s;
  const scale = s.scale ?? 1 / Math.sqrt(D);
  const { p, mult } = attentionForwardRef(s, q, k, v);
  const dq = new Float64Array(BH * Tq * D);
  const dk = new Float64Array(BH * S * D);
  const dv = new Float64Array(BH * S * D);
  const dp = new Float64Array(S);
  for (let bh = 0; bh < BH; bh++) {
    for (let i = 0; i < Tq; i++) {
      const pr = (bh * Tq + i) * S;
      // dP_ij = (dO_i . V_j) * mult_ij; dS = P * (dP - sum_j P dP) (softmax backward).
      let rowsum = 0;
      for (let j = 0; j < S; j++) {
        let d = 0;
        for (let x = 0; x < D; x++) d += dO[(bh * Tq + i) * D + x] * v[(bh * S + j) * D + x];
        dp[j] = d * mult[pr + j];
        rowsum += p[pr + j] * dp[j];
        const w = p[pr + j] * mult[pr + j];
        for (let x = 0; x < D; x++) dv[(bh * S + j) * D + x] += w * dO[(bh * Tq + i) * D + x];
      }
      for (let j = 0; j < S; j++) {
        const ds = p[pr + j] * (dp[j] - rowsum) * scale;
        if (ds === 0) continue;
        for (let x = 0; x < D; x++) {
          dq[(bh * Tq + i) * D + x] += ds * k[(bh * S + j) * D + x];
          dk[(bh * S + j) * D + x] += ds * q[(bh * Tq + i) * D + x];
        }
      }
    }
  }
  return { dq, dk, dv };
}
