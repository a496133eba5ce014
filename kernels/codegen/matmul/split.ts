/**
 * Split-K for matmuls with few output tiles and a long K (weight gradients such as
 * [512, 18944]·[18944, 2048]): S workgroups share each output tile, each summing one K range
 * into its own slice of a scratch buffer [S, batch, M, N]; a second kernel adds the S partial
 * results (in a fixed order, so results are deterministic) plus bias and the old C.
 *
 * @module
 */

import { grid } from "../wgsl.ts";
import { activationWgsl, type EpilogueActivation } from "../activation.ts";

/** How K is cut: `parts` ranges of `chunk` (a multiple of TK); the last may be longer. */
export interface SplitK {
  parts: number;
  chunk: number;
  /** Full TK slices and leftover K in the last range. */
  lastFull: number;
  lastRem: number;
}

/** Cuts K into about `parts` ranges whose length is a multiple of TK. */
export function splitOf(K: number, TK: number, parts: number): SplitK {
  const chunk = Math.max(TK, Math.ceil(K / parts / TK) * TK);
  let n = Math.ceil(K / chunk);
  // A last range shorter than one slice is merged into the one before it.
  if (n > 1 && K - (n - 1) * chunk < TK) n -= 1;
  const last = K - (n - 1) * chunk;
  return { parts: n, chunk, lastFull: Math.floor(last / TK), lastRem: last % TK };
}

/** The second pass: C = sum over parts of scratch (+ bias) (+ C). */
export interface SplitReduce {
  code: string;
  workgroups: [number, number, number];
  label: string;
}

const REDUCE_THREADS = 256;

/**
 * Generates the reduction. Bindings: 0 scratch [parts, batch, M, N] (read), 1 C (read_write),
 * 2 bias[N] (read) when `bias`, then the residual [batch, M, N] (read) when `residual`; then,
 * when `sum` > 0 (elements of a k-sum, see
 * `MatmulSpec.sumK`), the k-sum scratch [parts, sum] (read) and the k-sum [sum] (read_write).
 */
export function generateSplitReduce(
  opts: {
    batch: number;
    M: number;
    N: number;
    parts: number;
    accumulate: boolean;
    bias: boolean;
    residual?: boolean;
    activation?: EpilogueActivation;
    sum?: number;
  },
  maxWorkgroupsPerDimension: number,
  label: string,
): SplitReduce {
  const { batch, M, N, parts } = opts;
  const vec = N % 4 === 0;
  const w = vec ? 4 : 1;
  const count = (batch * M * N) / w; // elements (vec4 or scalar) of C
  const type = vec ? "vec4<f32>" : "f32";
  const sum = opts.sum ?? 0;
  const groups = Math.ceil(Math.max(count, sum) / REDUCE_THREADS);
  const wgs = grid(groups, maxWorkgroupsPerDimension);
  const o: string[] = [];
  o.push(`// ${label}: sum of ${parts} split-K partials`);
  o.push(`@group(0) @binding(0) var<storage, read> s_g: array<${type}, ${count * parts}>;`);
  o.push(`@group(0) @binding(1) var<storage, read_write> c_g: array<${type}, ${count}>;`);
  if (opts.bias) {
    o.push(`@group(0) @binding(2) var<storage, read> bias_g: array<${type}, ${N / w}>;`);
  }
  const resAt = opts.bias ? 3 : 2;
  if (opts.residual) {
    o.push(`@group(0) @binding(${resAt}) var<storage, read> res_g: array<${type}, ${count}>;`);
  }
  if (sum > 0) {
    const at = resAt + (opts.residual ? 1 : 0);
    o.push(`@group(0) @binding(${at}) var<storage, read> ss_g: array<f32, ${sum * parts}>;`);
    o.push(`@group(0) @binding(${at + 1}) var<storage, read_write> sum_g: array<f32, ${sum}>;`);
  }
  if (opts.activation) o.push(activationWgsl(opts.activation));
  o.push(`@compute @workgroup_size(${REDUCE_THREADS})`);
  o.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, " +
      "@builtin(local_invocation_index) lid: u32) {",
  );
  const lin = `wid.x + wid.y * ${wgs[0]}u + wid.z * ${wgs[0] * wgs[1]}u`;
  o.push(`  let i = (${lin}) * ${REDUCE_THREADS}u + lid;`);
  if (sum > 0) {
    const t: string[] = [];
    for (let s = 0; s < parts; s++) t.push(`ss_g[i${s ? ` + ${s * sum}u` : ""}]`);
    o.push(`  if (i < ${sum}u) { sum_g[i] = ${t.join(" + ")}; }`);
  }
  o.push(`  if (i >= ${count}u) { return; }`);
  const terms: string[] = [];
  for (let s = 0; s < parts; s++) terms.push(`s_g[i${s ? ` + ${s * count}u` : ""}]`);
  if (opts.bias) terms.push(`bias_g[i % ${N / w}u]`);
  // Same association as before epilogues existed: ((s0 + s1 + ...) + bias) + C.
  let v = terms.join(" + ");
  if (opts.activation) v = `act${vec ? "4" : ""}_${opts.activation}(${v})`;
  if (opts.residual) v = `${v} + res_g[i]`;
  if (opts.accumulate) v = `${v} + c_g[i]`;
  o.push(`  c_g[i] = ${v};`);
  o.push("}");
  return { code: o.join("\n") + "\n", workgroups: wgs, label: `${label} split-K reduce` };
}
