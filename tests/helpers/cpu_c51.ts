/**
 * Float64 references of the distributional losses, written the textbook way (floor/ceil
 * scatter of each atom) so they check the GPU's closed-form projection independently.
 */

/** Support atoms. */
export function atoms(n = 51, vMin = -10, vMax = 30): number[] {
  const dz = (vMax - vMin) / (n - 1);
  return Array.from({ length: n }, (_, i) => vMin + i * dz);
}

/** Categorical projection of r + gamma (1 - done) z (Bellemare et al. 2017, Algorithm 1). */
export function project(
  p: ArrayLike<number>,
  r: number,
  done: number,
  gamma: number,
  n = 51,
  vMin = -10,
  vMax = 30,
): number[] {
  const dz = (vMax - vMin) / (n - 1);
  const z = atoms(n, vMin, vMax);
  const m = new Array(n).fill(0);
  for (let j = 0; j < n; j++) {
    const tz = Math.min(vMax, Math.max(vMin, r + gamma * (1 - done) * z[j]));
    const b = (tz - vMin) / dz;
    const l = Math.floor(b);
    const u = Math.ceil(b);
    if (l === u) m[l] += p[j];
    else {
      m[l] += p[j] * (u - b);
      m[u] += p[j] * (b - l);
    }
  }
  return m;
}

/** Batch of transitions in float64 for the action losses. */
export interface CpuActionBatch {
  N: number;
  A: number;
  K: number;
  probs: Float64Array; // [N, A, K]
  next: Float64Array; // [N, A, K]
  actions: number[];
  rewards: number[];
  terminals: number[];
  valid: number[]; // [N, A]
  mask: number[];
}

function q(p: Float64Array, n: number, a: number, A: number, K: number, z: number[]): number {
  let s = 0;
  for (let i = 0; i < K; i++) s += p[(n * A + a) * K + i] * z[i];
  return s;
}

/** C51 TD loss: masked mean of -sum_i m_i log(p_i(a_data) + 1e-8). */
export function tdLoss(b: CpuActionBatch, gamma: number): number {
  const z = atoms(b.K);
  let num = 0;
  let den = 0;
  for (let n = 0; n < b.N; n++) {
    let best = -1;
    let bestQ = -Infinity;
    for (let a = 0; a < b.A; a++) {
      if (!b.valid[n * b.A + a]) continue;
      const v = q(b.next, n, a, b.A, b.K, z);
      if (v > bestQ) {
        bestQ = v;
        best = a;
      }
    }
    const target = project(
      b.next.subarray((n * b.A + best) * b.K, (n * b.A + best + 1) * b.K),
      b.rewards[n],
      b.terminals[n],
      gamma,
      b.K,
    );
    let ce = 0;
    for (let i = 0; i < b.K; i++) {
      ce -= target[i] * Math.log(b.probs[(n * b.A + b.actions[n]) * b.K + i] + 1e-8);
    }
    num += b.mask[n] * ce;
    den += b.mask[n];
  }
  return num / Math.max(den, 1e-12);
}

/**
 * CQL: alpha * masked mean of logsumexp_a Q(o,a) - Q(o,a_data), the logsumexp over all
 * actions (Eq. 9, the authors' code) or, with `actions` "valid", over the valid ones only.
 */
export function cql(b: CpuActionBatch, alpha: number, actions: "all" | "valid" = "all"): number {
  const z = atoms(b.K);
  let num = 0;
  let den = 0;
  for (let n = 0; n < b.N; n++) {
    const qs: number[] = [];
    for (let a = 0; a < b.A; a++) {
      if (actions === "all" || b.valid[n * b.A + a]) qs.push(q(b.probs, n, a, b.A, b.K, z));
    }
    const m = Math.max(...qs);
    const lse = m + Math.log(qs.reduce((s, v) => s + Math.exp(v - m), 0));
    num += b.mask[n] * (lse - q(b.probs, n, b.actions[n], b.A, b.K, z));
    den += b.mask[n];
  }
  return alpha * num / Math.max(den, 1e-12);
}
