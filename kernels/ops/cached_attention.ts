/**
 * Attention against a key/value cache, for incremental decoding (no gradient).
 *
 * A layer's cache is one tensor [2, N, H, capacity, D]: keys (half 0) and values
 * (half 1) of N sequences, H heads, `capacity` positions. Its element type is f32, or f16
 * under `--precision f16` (half the memory and the bytes each decode step reads): every
 * kernel here converts f16 to f32 on load and does its arithmetic in f32, and writes round
 * to f16 (saturating at +-65504, so an outlier stays finite instead of making the softmax
 * NaN). f32 caches run the same WGSL as before f16 existed. All sequences of a cache hold the
 * same number of positions. The current position, the number of sequences N and of new
 * tokens t are read at run time from a small uniform (kernels/ops/dims.ts pattern), so one
 * pipeline per (H, D, capacity) serves every decoding step and every number of environments.
 *
 * - `appendKv`: write the keys and values of t new tokens (from the packed QKV projection
 *   [N, t, 3 * H * D], the layout of models/world_action/transformer.ts) at positions start..start+t-1.
 * - `cachedAttention`: queries of the new tokens attend the cached keys 0..start+i (causal
 *   with offset: new token i sits at absolute position start + i).
 * - `cachedAttentionProj`: the same attention, then each head's output times its slice of the
 *   output projection: per-head partial products [H, N*t, d] whose sum over heads is
 *   proj(attention) without the bias; one small dispatch sums them with the residual and
 *   normalizes (kernels/ops/sum_parts_norm.ts), so attention and proj take one dispatch.
 *   Where the weight has an f16 copy (`--precision f16`, matmul_f16.ts `f16ShadowOf`) that
 *   copy is read (vec4<f16>, widened) and the attention output is rounded to f16 before the
 *   product, as the f16 product rounds its A.
 * - `gatherCache`: a new cache whose sequence m copies sequence parents[m] (positions
 *   < length only): beam-search branching without recomputing the shared prefix.
 *
 * The attention kernel runs one workgroup of 256 threads per (sequence, head, query) (and,
 * with the projection, per column block): scores of up to `capacity` keys live in workgroup
 * memory, then a softmax and a weighted sum of values split across 256 / (D/4) key groups.
 * Decoding is memory-bound on reading the cache, which this reads once per query (per block
 * with the projection: L2 hits).
 *
 * @module
 */
import { runtime } from "../core/runtime.ts";
import { constTensor, Tensor } from "../core/tensor.ts";
import { f32 } from "../codegen/wgsl.ts";
import { toHalf4 } from "../codegen/half.ts";
import { ROUND_HALF4_WGSL } from "../codegen/matmul/f16.ts";
import { f16ShadowOf } from "./matmul_f16.ts";
import { genericKernel } from "./dims.ts";
import { SKINNY_WORKGROUPS } from "../codegen/matmul/skinny.ts";
import { checkIndices } from "./gather.ts";

const WG = 64;
const MAX_X = 32768;

/** Grid for `count` workgroups; shaders rebuild the id from num_workgroups (count-free code). */
function dynGrid(count: number): [number, number, number] {
  const x = Math.min(Math.max(count, 1), MAX_X);
  return [x, Math.ceil(count / x), 1];
}

const LINEAR_ID = "(wid.x + wid.y * nwg.x)";
const BUILTINS =
  "@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, " +
  "@builtin(local_invocation_index) lid: u32";
const PARAMS = `struct Params { start: u32, length: u32, p2: u32, p3: u32 }`;

/**
 * {start, length} as a uniform block: a shared constant (kernels/core/tensor.ts `constTensor`),
 * uploaded once per value, so decoding steps upload nothing and a capture replays nothing
 * for it. The returned view is disposed by the caller after the dispatch is recorded.
 */
export function cacheParams(start: number, length: number): Tensor {
  return constTensor(new Uint32Array([start, length, 0, 0]), [4], "u32");
}

/** Element type of a KV cache: f32, or f16 under `--precision f16` (f32 arithmetic either way). */
export type CacheDType = "f32" | "f16";

/** Shape [2, N, H, capacity, D] of a layer's cache; throws when `cache` does not have it. */
function cacheDims(op: string, cache: Tensor) {
  if (cache.rank !== 5 || cache.shape[0] !== 2 || !isCacheDType(cache.dtype)) {
    throw new Error(`${op}: cache [${cache.shape}] must be f32 or f16 [2, N, H, capacity, D]`);
  }
  const [, N, H, cap, D] = cache.shape;
  if (D % 4 !== 0) throw new Error(`${op}: head size ${D} must be a multiple of 4`);
  return { N, H, cap, D, D4: D / 4, half: cache.dtype === "f16" };
}

/** Whether `dtype` is a KV cache's element type. */
export function isCacheDType(dtype: string): dtype is CacheDType {
  return dtype === "f32" || dtype === "f16";
}

function checkQkv(op: string, qkv: Tensor, N: number, H: number, D: number): number {
  if (qkv.rank !== 3 || qkv.shape[0] !== N || qkv.shape[2] !== 3 * H * D) {
    throw new Error(`${op}: qkv [${qkv.shape}] must be [${N}, t, ${3 * H * D}]`);
  }
  return qkv.shape[1];
}

function checkRange(op: string, start: number, t: number, cap: number): void {
  if (!Number.isInteger(start) || start < 0 || start + t > cap) {
    throw new Error(`${op}: positions [${start}, ${start + t}) exceed the capacity ${cap}`);
  }
}

/**
 * {start, start + t, N, blocks} as a uniform block (a shared constant, see
 * {@link cacheParams}): the run-time sizes of the shape-generic cache kernels below.
 */
function genericParams(start: number, t: number, N: number, blocks = 1): Tensor {
  return constTensor(new Uint32Array([start, start + t, N, blocks]), [4], "u32");
}

/**
 * Write the keys and values of `qkv` [N, t, 3HD] into `cache` at positions start.. . One
 * pipeline per (H, capacity, D): N, t and start are read from the uniform.
 */
export function appendKv(qkv: Tensor, cache: Tensor, start: number): void {
  const { N, H, cap, D, D4, half } = cacheDims("appendKv", cache);
  const t = checkQkv("appendKv", qkv, N, H, D);
  checkRange("appendKv", start, t, cap);
  const total = N * t * H * D4;
  if (total === 0) return;
  const key = `ak|${H}|${cap}|${D4}${half ? "|f16" : ""}`;
  const kernel = genericKernel(key, Math.ceil(total / WG), () => {
    const store = (v: string) => half ? toHalf4(v) : v;
    const code = `${half ? "enable f16;\n" : ""}${PARAMS}
@group(0) @binding(0) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> cache: array<vec4<${half ? "f16" : "f32"}>>;
@group(0) @binding(2) var<uniform> prm: Params;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  let t = prm.length - prm.start;
  let e = ${LINEAR_ID} * ${WG}u + lid;
  if (e >= prm.p2 * t * ${H * D4}u) { return; }
  let c = e % ${D4}u;
  let h = (e / ${D4}u) % ${H}u;
  let r = e / ${H * D4}u;
  let i = r % t;
  let n = r / t;
  let src = r * ${3 * H * D4}u + h * ${D4}u + c;
  let dst = ((n * ${H}u + h) * ${cap}u + prm.start + i) * ${D4}u + c;
  cache[dst] = ${store(`qkv[src + ${H * D4}u]`)};
  cache[dst + prm.p2 * ${H * cap * D4}u] = ${store(`qkv[src + ${2 * H * D4}u]`)};
}
`;
    return { code, label: half ? "appendKv f16" : "appendKv" };
  }, dynGrid);
  const prm = genericParams(start, t, N);
  runtime().dispatch(kernel, [qkv.buffer, cache.buffer, prm.buffer]);
  prm.dispose();
}

/**
 * Causal attention of the t new tokens in `qkv` [N, t, 3HD] (at positions start..start+t-1)
 * over `cache` (which must already hold them: call `appendKv` first). Returns [N, t, H*D].
 */
export function cachedAttention(
  qkv: Tensor,
  cache: Tensor,
  start: number,
  scale?: number,
): Tensor {
  return attend("cachedAttention", qkv, cache, start, scale, null);
}

/**
 * {@link cachedAttention} followed by the output projection `weight` [d, d] (a Linear's
 * [out, in], d = H*D), split by head: returns partials [H, N*t, d] with
 * partials[h] = attention_h · weight[:, hD:(h+1)D]^T, so sum_h partials[h] = attention ·
 * weight^T (no bias). Workgroups are (query row, head, column block): each recomputes its
 * row's attention for its head (cheap: <= capacity keys x D) and multiplies it by its block
 * of the head's weight columns; the blocks are chosen so that a decode step launches at
 * least SKINNY_WORKGROUPS workgroups (a per-(row, head) grid is 48 workgroups for JOWA-150M
 * at 4 beams).
 */
export function cachedAttentionProj(
  qkv: Tensor,
  cache: Tensor,
  start: number,
  weight: Tensor,
  scale?: number,
): Tensor {
  return attend("cachedAttentionProj", qkv, cache, start, scale, weight);
}

/** Threads of an attention workgroup: 256 keys per score pass, 256 / (D/4) key groups. */
const WG_ATT = 256;
/** Fewest projection columns per workgroup (a block below this re-reads attention for little). */
const MIN_BLOCK_COLUMNS = 32;

/** Column blocks of `cachedAttentionProj` for `groups` (rows x heads) workgroups and d columns. */
export function projBlocks(groups: number, d: number): number {
  const want = Math.ceil(SKINNY_WORKGROUPS / Math.max(1, groups));
  return Math.max(1, Math.min(want, Math.ceil(d / MIN_BLOCK_COLUMNS)));
}

function attend(
  op: string,
  qkv: Tensor,
  cache: Tensor,
  start: number,
  scale: number | undefined,
  weight: Tensor | null,
): Tensor {
  const { N, H, cap, D, D4, half } = cacheDims(op, cache);
  const t = checkQkv(op, qkv, N, H, D);
  checkRange(op, start, t, cap);
  if (D4 > WG) throw new Error(`${op}: head size ${D} above ${4 * WG}`);
  const d = H * D;
  if (weight && (weight.rank !== 2 || weight.shape[0] !== d || weight.shape[1] !== d)) {
    throw new Error(`${op}: weight [${weight.shape}] must be [${d}, ${d}]`);
  }
  const out = Tensor.empty(weight ? [H, N * t, d] : [N, t, d]);
  const rows = N * t;
  if (rows === 0) return out;
  const s = scale ?? 1 / Math.sqrt(D);
  const blocks = weight ? projBlocks(rows * H, d) : 1;
  const W = WG_ATT;
  // N, t, start and the column blocks come from the uniform {start, start + t, N, blocks}.
  // The proj weight's f16 copy where the f16 products read one (`--precision f16`): the
  // attention output is rounded to f16 before the product, as the f16 product rounds A.
  const wCopy = weight && weight.dtype === "f32" ? f16ShadowOf(weight) : undefined;
  const wh = !!wCopy;
  const key = `ca|${H}|${cap}|${D4}|${s}|${!!weight}${half ? "|f16" : ""}${wh ? "|w16" : ""}`;
  const kernel = genericKernel(key, rows * H * blocks, () => {
    const G = Math.floor(W / D4); // key groups in the value pass
    // An f16 cache is widened on load: scores, softmax and the weighted sum stay f32.
    const load = (i: string) => half ? `vec4<f32>(kv[${i}])` : `kv[${i}]`;
    const qLoads: string[] = [];
    const dot: string[] = [];
    const projDot: string[] = [];
    for (let c = 0; c < D4; c++) {
      qLoads.push(`  let q${c} = qkv[qb + ${c}u];`);
      dot.push(`dot(q${c}, ${load(`kb + ${c}u`)})`);
      projDot.push(
        wh ? `dot(ys[${c}u], vec4<f32>(wp[wb + ${c}u]))` : `dot(ys[${c}u], wp[wb + ${c}u])`,
      );
    }
    // Plain: thread c of key group 0 stores its chunk. Proj: the chunks go to workgroup memory,
    // then thread j of the block takes its columns j, j + W, ...: out[h, r, col] (one writer).
    const finish = weight
      ? `  if (g == 0u) { ys[c] = ${wh ? "rh4(o / total)" : "o / total"}; }
  workgroupBarrier();
  let width = (${d}u + prm.p3 - 1u) / prm.p3;
  let end = min(${d}u, (blk + 1u) * width);
  for (var col = blk * width + lid; col < end; col += ${W}u) {
    let wb = col * ${d / 4}u + h * ${D4}u;
    out[(h * rows + r) * ${d}u + col] = ${projDot.join(" + ")};
  }`
      : `  if (g == 0u) { out[r * ${H * D4}u + h * ${D4}u + c] = o / total; }`;
    const code = `${half || wh ? "enable f16;\n" : ""}${PARAMS}
@group(0) @binding(0) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> kv: array<vec4<${half ? "f16" : "f32"}>>;
@group(0) @binding(2) var<storage, read_write> out: array<${weight ? "f32" : "vec4<f32>"}>;
@group(0) @binding(3) var<uniform> prm: Params;
${
      weight
        ? `@group(0) @binding(4) var<storage, read> wp: array<vec4<${wh ? "f16" : "f32"}>>;`
        : ""
    }${wh ? `\n${ROUND_HALF4_WGSL}` : ""}
var<workgroup> sc: array<f32, ${cap}>;
var<workgroup> red: array<f32, ${W}>;
var<workgroup> part: array<vec4<f32>, ${W}>;
${weight ? `var<workgroup> ys: array<vec4<f32>, ${D4}>;` : ""}
@compute @workgroup_size(${W})
fn main(${BUILTINS}) {
  let t = prm.length - prm.start;
  let rows = prm.p2 * t;
  let lin = ${LINEAR_ID};
  if (lin >= rows * ${H}u * prm.p3) { return; }
  // Column blocks fastest: the blocks of one (row, head) run side by side and share its keys
  // and values in L2 (each block re-reads them).
  let blk = lin % prm.p3;
  let r = (lin / prm.p3) % rows;
  let h = lin / (prm.p3 * rows);
  let i = r % t;
  let n = r / t;
  let keys = prm.start + i + 1u;
  let qb = r * ${3 * H * D4}u + h * ${D4}u;
${qLoads.join("\n")}
  let head = (n * ${H}u + h) * ${cap * D4}u;
  var m = -3.0e38;
  for (var j = lid; j < keys; j += ${W}u) {
    let kb = head + j * ${D4}u;
    let v = (${dot.join(" + ")}) * ${f32(s)};
    sc[j] = v;
    m = max(m, v);
  }
  red[lid] = m;
  workgroupBarrier();
  for (var w = ${W / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] = max(red[lid], red[lid + w]); }
    workgroupBarrier();
  }
  let mx = red[0];
  workgroupBarrier();
  var l = 0.0;
  for (var j = lid; j < keys; j += ${W}u) {
    let e = exp(sc[j] - mx);
    sc[j] = e;
    l += e;
  }
  red[lid] = l;
  workgroupBarrier();
  for (var w = ${W / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] = red[lid] + red[lid + w]; }
    workgroupBarrier();
  }
  let total = red[0];
  let c = lid % ${D4}u;
  let g = lid / ${D4}u;
  var acc = vec4<f32>(0.0);
  if (g < ${G}u) {
    let vb = prm.p2 * ${H * cap * D4}u + head + c;
    for (var j = g; j < keys; j += ${G}u) {
      acc += sc[j] * ${load(`vb + j * ${D4}u`)};
    }
  }
  part[lid] = acc;
  workgroupBarrier();
  var o = part[c];
  for (var k = 1u; k < ${G}u; k++) { o += part[c + k * ${D4}u]; }
${finish}
}
`;
    return { code, label: `${op}${half ? " f16" : ""}${wh ? " w16" : ""}` };
  }, dynGrid);
  const prm = genericParams(start, t, N, blocks);
  const bufs = [qkv.buffer, cache.buffer, out.buffer, prm.buffer];
  if (weight) bufs.push((wCopy ?? weight).buffer);
  runtime().dispatch(kernel, bufs);
  prm.dispose();
  return out;
}

/**
 * A new cache tensor [2, M, H, capacity, D] (the dtype of `cache`) whose sequence m holds
 * positions [0, length) of sequence `parents[m]` of `cache` (i32 [M]); later positions are
 * left undefined. An f16 cache is copied as bits (4 halves as a vec2<u32>).
 */
export function gatherCache(cache: Tensor, parents: Tensor, length: number): Tensor {
  const { N, H, cap, D4, half } = cacheDims("gatherCache", cache);
  if (parents.rank !== 1) throw new Error(`gatherCache: parents [${parents.shape}] must be [M]`);
  checkIndices("gatherCache", parents, N);
  if (!Number.isInteger(length) || length < 0 || length > cap) {
    throw new Error(`gatherCache: length ${length} outside [0, ${cap}]`);
  }
  const M = parents.shape[0];
  const out = Tensor.empty([2, M, H, cap, cache.shape[4]], cache.dtype);
  const total = 2 * M * H * length * D4;
  if (total === 0) return out;
  // Sized by `length`, M and N (read from the uniform: {0, length, M, N}), so the code does
  // not change with them: one pipeline for every number of environments and beams.
  const key = `gk|${H}|${cap}|${D4}${half ? "|f16" : ""}`;
  const kernel = genericKernel(key, Math.ceil(total / WG), () => {
    const el = half ? "vec2<u32>" : "vec4<f32>";
    const code = `${PARAMS}
@group(0) @binding(0) var<storage, read> src: array<${el}>;
@group(0) @binding(1) var<storage, read> parents: array<i32>;
@group(0) @binding(2) var<storage, read_write> dst: array<${el}>;
@group(0) @binding(3) var<uniform> prm: Params;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  let e = ${LINEAR_ID} * ${WG}u + lid;
  let per = prm.length * ${D4}u;
  if (e >= 2u * prm.p2 * ${H}u * per) { return; }
  let inner = e % per;
  let hm = e / per;
  let h = hm % ${H}u;
  let m = (hm / ${H}u) % prm.p2;
  let half = hm / (${H}u * prm.p2);
  let p = u32(clamp(parents[m], 0, i32(prm.p3) - 1));
  dst[((half * prm.p2 + m) * ${H}u + h) * ${cap * D4}u + inner] =
    src[((half * prm.p3 + p) * ${H}u + h) * ${cap * D4}u + inner];
}
`;
    return { code, label: half ? "gatherCache f16" : "gatherCache" };
  }, dynGrid);
  const rt = runtime();
  const prm = constTensor(new Uint32Array([0, length, M, N]), [4], "u32");
  rt.dispatch(kernel, [
    cache.buffer,
    parents.buffer,
    out.buffer,
    prm.buffer,
  ]);
  prm.dispose();
  return out;
}
