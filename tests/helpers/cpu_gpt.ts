/**
 * A float64 CPU forward of models/world_action/transformer.ts's Gpt (no dropout), written independently
 * from the GPU code: the reference for the engine's end-to-end gradient test. Its pieces
 * (linear, layer norm, GELU, one pre-LN block) are exported for other model references
 * (tests/helpers/cpu_wam.ts).
 */

/** Parameters by dotted name, as float64. */
export type Params = Map<string, Float64Array>;

/** Model sizes the reference needs. */
export interface CpuGptConfig {
  vocab: number;
  layers: number;
  d: number;
  heads: number;
}

/** y = x W^T + b for `rows` rows, W stored [dout, din]. */
export function linear(
  x: Float64Array,
  rows: number,
  w: Float64Array,
  b: Float64Array | undefined,
  din: number,
  dout: number,
) {
  const y = new Float64Array(rows * dout);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < dout; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < din; i++) s += x[r * din + i] * w[o * din + i];
      y[r * dout + o] = s;
    }
  }
  return y;
}

/** Layer norm over rows of d (eps 1e-5). */
export function layerNorm(
  x: Float64Array,
  rows: number,
  d: number,
  w: Float64Array,
  b: Float64Array,
) {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let i = 0; i < d; i++) m += x[r * d + i];
    m /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[r * d + i] - m) ** 2;
    v /= d;
    const rs = 1 / Math.sqrt(v + 1e-5);
    for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i] - m) * rs * w[i] + b[i];
  }
  return y;
}

/** GPT-2's tanh GELU. */
export const gelu = (x: number): number =>
  0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/** Masked mean next-token cross-entropy of the model on ids [B, T]. */
export function cpuGptLoss(
  p: Params,
  cfg: CpuGptConfig,
  ids: Int32Array,
  targets: Int32Array,
  mask: Float32Array,
  B: number,
  T: number,
): number {
  const { d, heads: H, vocab: V } = cfg;
  const get = (n: string) => {
    const v = p.get(n);
    if (!v) throw new Error(`reference: no parameter ${n}`);
    return v;
  };
  const N = B * T;
  let x: Float64Array = new Float64Array(N * d);
  const tok = get("tokens.weight");
  const pos = get("positions.weight");
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < d; i++) x[n * d + i] = tok[ids[n] * d + i] + pos[(n % T) * d + i];
  }
  for (let l = 0; l < cfg.layers; l++) x = cpuBlock(get, `blocks.${l}.`, x, B, T, d, H);
  const hf = layerNorm(x, N, d, get("ln_f.weight"), get("ln_f.bias"));
  const logits = linear(hf, N, get("head.weight"), undefined, d, V);
  let loss = 0;
  let wsum = 0;
  for (let n = 0; n < N; n++) {
    if (!mask[n]) continue;
    let m = -Infinity;
    for (let c = 0; c < V; c++) m = Math.max(m, logits[n * V + c]);
    let z = 0;
    for (let c = 0; c < V; c++) z += Math.exp(logits[n * V + c] - m);
    loss += mask[n] * (m + Math.log(z) - logits[n * V + targets[n]]);
    wsum += mask[n];
  }
  return loss / wsum;
}

/**
 * One causal pre-LN block (models/world_action/transformer.ts `Block`) on x [B, T, d]; returns the new x.
 * `act` is the MLP's GELU (GPT-2's tanh form by default; geluErf64 for the exact form).
 */
export function cpuBlock(
  get: (name: string) => Float64Array,
  pre: string,
  x: Float64Array,
  B: number,
  T: number,
  d: number,
  H: number,
  act: (x: number) => number = gelu,
): Float64Array {
  const N = B * T;
  const D = d / H;
  const h = layerNorm(x, N, d, get(pre + "ln1.weight"), get(pre + "ln1.bias"));
  const qkv = linear(h, N, get(pre + "attn.qkv.weight"), get(pre + "attn.qkv.bias"), d, 3 * d);
  const att = new Float64Array(N * d);
  for (let b = 0; b < B; b++) {
    for (let hd = 0; hd < H; hd++) {
      for (let i = 0; i < T; i++) {
        const q = (b * T + i) * 3 * d + hd * D;
        const scores: number[] = [];
        for (let j = 0; j <= i; j++) {
          const k = (b * T + j) * 3 * d + d + hd * D;
          let s = 0;
          for (let c = 0; c < D; c++) s += qkv[q + c] * qkv[k + c];
          scores.push(s / Math.sqrt(D));
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, c) => a + c, 0);
        for (let j = 0; j <= i; j++) {
          const v = (b * T + j) * 3 * d + 2 * d + hd * D;
          for (let c = 0; c < D; c++) {
            att[(b * T + i) * d + hd * D + c] += (e[j] / z) * qkv[v + c];
          }
        }
      }
    }
  }
  const proj = linear(att, N, get(pre + "attn.proj.weight"), get(pre + "attn.proj.bias"), d, d);
  x = x.map((v, i) => v + proj[i]);
  const h2 = layerNorm(x, N, d, get(pre + "ln2.weight"), get(pre + "ln2.bias"));
  const f1 = linear(h2, N, get(pre + "mlp.fc1.weight"), get(pre + "mlp.fc1.bias"), d, 4 * d).map(
    act,
  );
  const f2 = linear(f1, N, get(pre + "mlp.fc2.weight"), get(pre + "mlp.fc2.bias"), 4 * d, d);
  x = x.map((v, i) => v + f2[i]);
  return x;
}
