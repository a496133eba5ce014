/**
 * A float64 CPU forward of the world-action model (no dropout), written from jowa.md with
 * the pieces of cpu_gpt.ts: the reference for the model-level forward and gradient tests.
 * Head rows are derived here from the plain definition (offset = position % (K + 1)):
 * obs head where offset != K - 1, reward/termination where offset == K, Q where
 * offset == K - 1.
 */
import { cpuBlock, gelu, layerNorm, linear, type Params } from "./cpu_gpt.ts";
import { geluErf64 } from "./cpu_ops.ts";
import type { WorldActionConfig } from "../../models/world_action/configs.ts";

/** Head outputs, row-major, rows in position order. */
export interface CpuWamOutputs {
  obsRows: number[];
  actionRows: number[];
  qRows: number[];
  obsLogits: Float64Array; // [B, obsRows, V]
  rewardLogits: Float64Array; // [B, actionRows, 3]
  endLogits: Float64Array; // [B, actionRows, 2]
  qLogProbs: Float64Array; // [B, qRows, A, atoms] log of the ensemble-mean distribution
  qValues: Float64Array; // [B, qRows, A]
}

const mish = (x: number) => x * Math.tanh(Math.log1p(Math.exp(x)));

/** Rows of the block [0, T) each head reads. */
export function cpuRows(c: WorldActionConfig, T: number) {
  const K = c.obsTokens;
  const obsRows: number[] = [];
  const actionRows: number[] = [];
  const qRows: number[] = [];
  for (let p = 0; p < T; p++) {
    const off = p % (K + 1);
    if (off !== K - 1) obsRows.push(p);
    if (off === K) actionRows.push(p);
    if (off === K - 1) qRows.push(p);
  }
  return { obsRows, actionRows, qRows };
}

function pick(x: Float64Array, B: number, T: number, d: number, rows: number[]): Float64Array {
  const out = new Float64Array(B * rows.length * d);
  for (let b = 0; b < B; b++) {
    rows.forEach((r, k) =>
      out.set(x.subarray((b * T + r) * d, (b * T + r + 1) * d), (b * rows.length + k) * d)
    );
  }
  return out;
}

/** Forward of tokens [B, T] (raw ids) for tasks [B] with parameters `p` (by name). */
export function cpuWamForward(
  p: Params,
  c: WorldActionConfig,
  tokens: Int32Array,
  tasks: Int32Array,
  B: number,
  T: number,
  qPrefix = "head_q",
): CpuWamOutputs {
  const get = (n: string) => {
    const v = p.get(n);
    if (!v) throw new Error(`reference: no parameter ${n}`);
    return v;
  };
  const d = c.d;
  const K = c.obsTokens;
  let x: Float64Array = new Float64Array(B * T * d);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const act = t % (K + 1) === K;
      const tok = get(act ? "embed.action.weight" : "embed.obs.weight");
      const task = get(act ? "embed.task_action.weight" : "embed.task_obs.weight");
      const pos = get("embed.position.weight");
      const id = tokens[b * T + t];
      for (let i = 0; i < d; i++) {
        x[(b * T + t) * d + i] = tok[id * d + i] + pos[t * d + i] + task[tasks[b] * d + i];
      }
    }
  }
  const act = c.gelu === "tanh" ? gelu : geluErf64;
  for (let l = 0; l < c.layers; l++) {
    x = cpuBlock(get, `blocks.${l}.`, x, B, T, d, c.heads, act);
  }
  const h = layerNorm(x, B * T, d, get("ln_f.weight"), get("ln_f.bias"));
  const rows = cpuRows(c, T);
  const mlp = (name: string, rs: number[], classes: number) => {
    const n = B * rs.length;
    const a = linear(
      pick(h, B, T, d, rs),
      n,
      get(`${name}.fc1.weight`),
      get(`${name}.fc1.bias`),
      d,
      d,
    )
      .map((v) => Math.max(v, 0));
    return linear(a, n, get(`${name}.fc2.weight`), get(`${name}.fc2.bias`), d, classes);
  };
  const nq = B * rows.qRows.length;
  const A = c.actions;
  const Z = c.atoms;
  const probs = new Float64Array(nq * A * Z);
  const qIn = pick(h, B, T, d, rows.qRows);
  for (let e = 0; e < c.qEnsemble; e++) {
    let a = qIn;
    let din = d;
    for (let j = 0; j < c.qLayers - 1; j++) {
      const pre = `${qPrefix}.${e}.hidden.${j}.`;
      const y = linear(a, nq, get(pre + "linear.weight"), get(pre + "linear.bias"), din, c.qHidden);
      a = layerNorm(y, nq, c.qHidden, get(pre + "norm.weight"), get(pre + "norm.bias")).map(mish);
      din = c.qHidden;
    }
    const logits = linear(
      a,
      nq,
      get(`${qPrefix}.${e}.out.weight`),
      get(`${qPrefix}.${e}.out.bias`),
      din,
      A * Z,
    );
    for (let r = 0; r < nq * A; r++) {
      let m = -Infinity;
      for (let z = 0; z < Z; z++) m = Math.max(m, logits[r * Z + z]);
      let s = 0;
      for (let z = 0; z < Z; z++) s += Math.exp(logits[r * Z + z] - m);
      for (let z = 0; z < Z; z++) {
        probs[r * Z + z] += Math.exp(logits[r * Z + z] - m) / s / c.qEnsemble;
      }
    }
  }
  const dz = (c.vMax - c.vMin) / (Z - 1);
  const qValues = new Float64Array(nq * A);
  for (let r = 0; r < nq * A; r++) {
    for (let z = 0; z < Z; z++) qValues[r] += probs[r * Z + z] * (c.vMin + z * dz);
  }
  return {
    ...rows,
    obsLogits: mlp("head_obs", rows.obsRows, c.obsVocab),
    rewardLogits: mlp("head_reward", rows.actionRows, c.rewardClasses),
    endLogits: mlp("head_end", rows.actionRows, c.endClasses),
    qLogProbs: probs.map(Math.log),
    qValues,
  };
}

/** Mean cross-entropy of logits [n, C] against targets [n]. */
export function cpuCrossEntropy(logits: Float64Array, targets: Int32Array, C: number): number {
  let total = 0;
  for (let r = 0; r < targets.length; r++) {
    let m = -Infinity;
    for (let k = 0; k < C; k++) m = Math.max(m, logits[r * C + k]);
    let s = 0;
    for (let k = 0; k < C; k++) s += Math.exp(logits[r * C + k] - m);
    total += m + Math.log(s) - logits[r * C + targets[r]];
  }
  return total / targets.length;
}

/** The test's scalar loss touching every head (see world_action_model_grad_test.ts). */
export function cpuWamLoss(
  o: CpuWamOutputs,
  c: WorldActionConfig,
  t: {
    obs: Int32Array;
    reward: Int32Array;
    end: Int32Array;
    wLogP: Float64Array;
    wQ: Float64Array;
  },
): number {
  let loss = cpuCrossEntropy(o.obsLogits, t.obs, c.obsVocab) +
    cpuCrossEntropy(o.rewardLogits, t.reward, c.rewardClasses) +
    cpuCrossEntropy(o.endLogits, t.end, c.endClasses);
  for (let i = 0; i < o.qLogProbs.length; i++) loss += o.qLogProbs[i] * t.wLogP[i];
  for (let i = 0; i < o.qValues.length; i++) loss += o.qValues[i] * t.wQ[i];
  return loss;
}
