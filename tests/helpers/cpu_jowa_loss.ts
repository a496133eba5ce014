/**
 * Float64 reference of the authors' stage-2 loss (`JOWAModel.compute_loss` with C51 and CQL,
 * src/models/jowa_model.py at the commit of tests/fixtures/jowa), written from their
 * definition: -100 labels for padding and ONE mean per cross-entropy, the TD set as the
 * row-major pairing of "mask_padding minus each row's last real step" with "mask_padding
 * minus each row's first real step" plus every real terminal step (target r alone), CQL as
 * the difference of two means over mask_padding. It shares no mask code with
 * train/world_batch.ts.
 *
 * @module
 */

/** A segment batch (row-major arrays). */
export interface CpuSegmentBatch {
  B: number;
  L: number;
  /** Tokens per observation. */
  P: number;
  obsTokens: ArrayLike<number>; // [B, L, P]
  actions: ArrayLike<number>; // [B, L]
  rewards: ArrayLike<number>; // [B, L], raw
  ends: ArrayLike<number>; // [B, L] 0/1
  mask: ArrayLike<number>; // [B, L] mask_padding 0/1
  valid: ArrayLike<number>; // [B, A] 0/1
}

/** Head outputs of a full-segment forward (float64, row-major). */
export interface CpuHeadOutputs {
  /** [B, L*P, V]: every observation-head row (per step offsets 0..P-2 and the action token). */
  obsLogits: ArrayLike<number>;
  rewardLogits: ArrayLike<number>; // [B, L, 3]
  endLogits: ArrayLike<number>; // [B, L, 2]
  /** [B, L, A, K]: the online head's ensemble-mean distributions. */
  probs: ArrayLike<number>;
  /** [B, L, A, K]: the target head's. */
  targetProbs: ArrayLike<number>;
}

/** Sizes and weights. */
export interface CpuLossConfig {
  V: number;
  A: number;
  atoms: number;
  vMin: number;
  vMax: number;
  gamma: number;
  /** CQL weight. */
  alpha: number;
  /** supervised_weight (beta). */
  beta: number;
  /** CQL logsumexp over all actions (theirs) or the valid ones. */
  cqlActions?: "all" | "valid";
}

/** The loss parts (world parts unweighted) and their total. */
export interface CpuLossValues {
  obs: number;
  reward: number;
  end: number;
  td: number;
  cql: number;
  /** Their logs: mean logsumexp and mean Q(o, a_data). */
  qNegative: number;
  qPositive: number;
  total: number;
}

function lse(x: ArrayLike<number>, from: number, n: number): number {
  let m = -Infinity;
  for (let i = 0; i < n; i++) m = Math.max(m, x[from + i]);
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(x[from + i] - m);
  return m + Math.log(s);
}

/** Mean CE over labels != -100 (F.cross_entropy's default). */
function crossEntropy(logits: ArrayLike<number>, labels: number[], C: number): number {
  let sum = 0, n = 0;
  labels.forEach((y, r) => {
    if (y === -100) return;
    sum += lse(logits, r * C, C) - logits[r * C + y];
    n++;
  });
  return sum / n;
}

/** The authors' stage-2 loss of `o` on `b`. */
export function cpuJowaLoss(
  o: CpuHeadOutputs,
  b: CpuSegmentBatch,
  c: CpuLossConfig,
): CpuLossValues {
  const { B, L, P } = b;
  const { A, atoms: K } = c;
  const dz = (c.vMax - c.vMin) / (K - 1);
  const z = Array.from({ length: K }, (_, i) => c.vMin + i * dz);
  // World: labels = obs tokens (-100 on padded steps) flattened per row, [:, 1:]; logits
  // = every obs row but the last.
  const obsLabels: number[] = [];
  const obsRows: number[] = [];
  for (let i = 0; i < B; i++) {
    for (let j = 1; j < L * P; j++) {
      const t = Math.floor(j / P);
      obsLabels.push(b.mask[i * L + t] ? b.obsTokens[(i * L + t) * P + (j % P)] : -100);
      for (let v = 0; v < c.V; v++) obsRows.push(o.obsLogits[(i * L * P + j - 1) * c.V + v]);
    }
  }
  const stepLabels = (f: (k: number) => number) =>
    Array.from({ length: B * L }, (_, k) => (b.mask[k] ? f(k) : -100));
  const obs = crossEntropy(obsRows, obsLabels, c.V);
  const reward = crossEntropy(o.rewardLogits, stepLabels((k) => Math.sign(b.rewards[k]) + 1), 3);
  const end = crossEntropy(o.endLogits, stepLabels((k) => b.ends[k]), 2);

  const dist = (p: ArrayLike<number>, k: number, a: number) =>
    Array.from({ length: K }, (_, i) => p[(k * A + a) * K + i]);
  const qOf = (p: ArrayLike<number>, k: number, a: number) =>
    dist(p, k, a).reduce((s, v, i) => s + v * z[i], 0);
  // TD: compute_q_mask / compute_q_target_mask, paired in row-major order, then the ends.
  const qIdx: number[] = [], nextIdx: number[] = [], endIdx: number[] = [];
  for (let i = 0; i < B; i++) {
    const real = Array.from({ length: L }, (_, t) => i * L + t).filter((k) => b.mask[k]);
    qIdx.push(...real.slice(0, -1));
    nextIdx.push(...real.slice(1));
    endIdx.push(...real.filter((k) => b.ends[k]));
  }
  const project = (p: number[], r: number, g: number) =>
    z.map((zi) =>
      p.reduce((s, pj, j) => {
        const tz = Math.min(c.vMax, Math.max(c.vMin, r + g * z[j]));
        return s + pj * Math.min(1, Math.max(0, 1 - Math.abs(tz - zi) / dz));
      }, 0)
    );
  const ce = (k: number, m: number[]) => {
    const p = dist(o.probs, k, b.actions[k]);
    return -m.reduce((s, mi, i) => s + mi * Math.log(p[i] + 1e-8), 0);
  };
  let tdSum = 0;
  qIdx.forEach((k, n) => {
    const kn = nextIdx[n];
    const item = Math.floor(kn / L);
    let best = -1, bestQ = -Infinity;
    for (let a = 0; a < A; a++) {
      if (!b.valid[item * A + a]) continue;
      const v = qOf(o.targetProbs, kn, a);
      if (v > bestQ) [best, bestQ] = [a, v];
    }
    tdSum += ce(k, project(dist(o.targetProbs, kn, best), b.rewards[k], c.gamma));
  });
  for (const k of endIdx) tdSum += ce(k, project(new Array(K).fill(1 / K), b.rewards[k], 0));
  const td = tdSum / (qIdx.length + endIdx.length);
  // CQL: mean logsumexp_a Q - mean Q(o, a_data) over mask_padding.
  let neg = 0, pos = 0, n = 0;
  for (let k = 0; k < B * L; k++) {
    if (!b.mask[k]) continue;
    const item = Math.floor(k / L);
    const qs: number[] = [];
    for (let a = 0; a < A; a++) {
      if (c.cqlActions !== "valid" || b.valid[item * A + a]) qs.push(qOf(o.probs, k, a));
    }
    neg += lse(qs, 0, qs.length);
    pos += qOf(o.probs, k, b.actions[k]);
    n++;
  }
  const qNegative = neg / n, qPositive = pos / n;
  const cql = (qNegative - qPositive) * c.alpha;
  const total = c.beta * (obs + reward + end) + td + cql;
  return { obs, reward, end, td, cql, qNegative, qPositive, total };
}
