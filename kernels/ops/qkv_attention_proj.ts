/**
 * Decoding's first fused dispatch (no gradient): for every (sequence n, head h) ONE workgroup
 * does, for each new token i of its sequence in order,
 *
 *   xn    = layerNorm(x[n, i])                                  (ln1 prologue, two-pass)
 *   q,k,v = xn · Wqkv[cols of head h]^T + bias                   (3 D of the 3 d columns)
 *   cache[k|v, n, h, start + i] = k, v                           (KV write; f32 or f16 cache)
 *   y     = softmax(q · K[0..start+i]^T / sqrt(D)) · V           (attention over the cache)
 *   out[h, n t + i] = y · Wproj[:, hD:(h+1)D]^T                  (the head's proj partial)
 *
 * so `sum_h out[h]` = proj(attention(qkv(ln1(x)))) without the proj bias, as
 * cached_attention.ts `cachedAttentionProj` returns it after matmul's ln + qkv + KV write
 * (two dispatches there, one here). The attention of head h needs only q_h, k_h, v_h, so no
 * workgroup waits for another; the keys and values it writes are read back by the same
 * workgroup after a storage barrier, so an f16 cache rounds them exactly as the unfused path.
 *
 * Optional greedy-token prologue (`greedy`, single-token steps of the planner): the step's
 * input token is the argmax of the previous step's observation logits row n (the argmax op's
 * rule: first maximum), looked up as eval/greedy_tokens.ts does ((obs[tok] + taskObs[task]) +
 * position[start], the same bits); workgroup h = 0 stores the token into column `column` of
 * `obs`, into `tokens`, and the embedding row into `x` (the layer's residual). This replaces
 * the greedy-token dispatch of every imagined observation token.
 *
 * f16 weights (`--precision f16`: both weights have the f16 copies the f16 products read,
 * matmul_f16.ts `f16ShadowOf`): wq and wp are read as vec4<f16> and widened; the normalized
 * rows and the attention output are rounded to f16 before their products (the f16 product's
 * rule), so the kernel matches the 5-dispatch kernels on the same copies.
 *
 * Numerics: the same formulas as the unfused path; the products' reduction order differs (K
 * split over S = 16 k-groups, partials summed in a fixed order), so values agree to f32
 * rounding (tests/decode_compact_layer_test.ts bounds them against float64).
 *
 * GPU cost (JOWA-150M, one environment, 4 beams: rows = 4, d = 768, 12 heads, D = 64, about
 * 260 cached positions; estimated, not timed): 48 workgroups of 1024 threads (where the
 * adapter allows; else fewer), each reading its head's 192 qkv weight rows (576 KB, shared by
 * the 4 rows' workgroups through L2: sequences run side by side), 2 x 260 x 64 cached floats
 * (133 KB) and its 64 proj columns of 768 rows (192 KB): ~900 KB a workgroup, ~43 MB of L2
 * reads a layer, on 48 SMs. Longest serial work a thread: 36 weight vec4 loads (qkv), ~21
 * cache loads, 16 weight loads (proj), ~50 barriers. The layer's comparison with the
 * 5-dispatch path: kernels/ops/sum_parts_mlp_up.ts.
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

/** The weights of a decode layer's first half (a pre-LN block's ln1, attn.qkv and attn.proj). */
export interface QkvAttentionWeights {
  /** ln1 weight and bias [d], epsilon. */
  lnWeight: Tensor;
  lnBias: Tensor;
  lnEps: number;
  /** qkv weight [3d, d] (a Linear's [out, in]) and bias [3d]. */
  qkvWeight: Tensor;
  qkvBias: Tensor;
  /** proj weight [d, d] (its bias is the consumer's). */
  projWeight: Tensor;
}

/** Greedy-token prologue: the input tokens are argmax(logits) (see the module doc). */
export interface GreedyInput {
  /** Previous step's observation logits f32 [N, V]. */
  logits: Tensor;
  /** Imagined observation tokens i32 [N, O] (written in place at `column`). */
  obs: Tensor;
  column: number;
  /** Receives the tokens, i32 [N] (or [N, 1]). */
  tokens: Tensor;
  /** Observation embedding table f32 [V', d], task table of observation positions [tasks, d]. */
  obsTable: Tensor;
  taskTable: Tensor;
  /** Position table f32 [context, d]. */
  positionTable: Tensor;
  /** i32 [N] task of each sequence. */
  tasks: Tensor;
}

/** Workgroup shape: T threads, S k-groups in the qkv product. */
interface Plan {
  T: number;
  S: number;
}

const floorPow2 = (x: number) => 2 ** Math.floor(Math.log2(Math.max(1, x)));
const ceilPow2 = (x: number) => 2 ** Math.ceil(Math.log2(Math.max(1, x)));

/** The largest power-of-two workgroup (<= 1024 threads) whose workgroup memory fits. */
function plan(d: number, H: number, cap: number): Plan | null {
  const lim = runtime().ctx.limits;
  const D = d / H;
  const K4 = d / 4;
  if (d % H !== 0 || D % 4 !== 0 || K4 < 4) return null;
  const S = Math.min(16, ceilPow2(K4));
  for (let T = Math.min(1024, floorPow2(lim.maxComputeInvocationsPerWorkgroup)); T >= 64; T /= 2) {
    if (T < S || T < D / 4) break;
    // red, xs, sc, qkvs, ys, and the greedy prologue's argmax tree.
    const bytes = 4 * Math.max(4 * T, 3 * D * S) + 4 * d + 4 * cap + 16 * D + 8 * T;
    if (bytes <= lim.maxComputeWorkgroupStorageSize) return { T, S };
  }
  return null;
}

/** Whether {@link qkvAttentionProj} runs for width d, H heads and a cache of `cap` positions. */
export function fusesQkvAttention(d: number, H: number, cap: number): boolean {
  return plan(d, H, cap) !== null;
}

/**
 * Per-head proj partials [H, N t, d] of a decode layer's first half on x [N, t, d] with the
 * layer's cache [2, N, H, cap, D] (f32 or f16; positions start.. are written): see the module
 * doc. With `greedy` (t = 1), x is not read: it is written (the embedding of the greedy tokens).
 */
export function qkvAttentionProj(
  x: Tensor,
  cache: Tensor,
  start: number,
  w: QkvAttentionWeights,
  greedy?: GreedyInput,
): Tensor {
  const op = "qkvAttentionProj";
  if (cache.rank !== 5 || cache.shape[0] !== 2 || !["f32", "f16"].includes(cache.dtype)) {
    throw new Error(`${op}: cache ${cache} must be f32 or f16 [2, N, H, capacity, D]`);
  }
  const [, N, H, cap, D] = cache.shape;
  const d = H * D;
  if (x.rank !== 3 || x.shape[0] !== N || x.shape[2] !== d || x.dtype !== "f32") {
    throw new Error(`${op}: x ${x} must be f32 [${N}, t, ${d}]`);
  }
  const t = x.shape[1];
  if (!Number.isInteger(start) || start < 0 || start + t > cap) {
    throw new Error(`${op}: positions [${start}, ${start + t}) exceed the capacity ${cap}`);
  }
  const check = (name: string, v: Tensor, shape: number[]) => {
    if (v.shape.join() !== shape.join() || v.dtype !== "f32") {
      throw new Error(`${op}: ${name} ${v} must be f32 [${shape}]`);
    }
  };
  check("ln weight", w.lnWeight, [d]);
  check("ln bias", w.lnBias, [d]);
  check("qkv weight", w.qkvWeight, [3 * d, d]);
  check("qkv bias", w.qkvBias, [3 * d]);
  check("proj weight", w.projWeight, [d, d]);
  const p = plan(d, H, cap);
  if (!p) throw new Error(`${op}: d ${d}, ${H} heads, capacity ${cap} do not fit a workgroup`);
  let V = 0, O = 0;
  if (greedy) {
    const g = greedy;
    if (t !== 1) throw new Error(`${op}: greedy tokens need one new token per sequence, got ${t}`);
    if (g.logits.rank !== 2 || g.logits.shape[0] !== N || g.logits.dtype !== "f32") {
      throw new Error(`${op}: logits ${g.logits} must be f32 [${N}, V]`);
    }
    V = g.logits.shape[1];
    if (g.obs.rank !== 2 || g.obs.shape[0] !== N || g.obs.dtype !== "i32") {
      throw new Error(`${op}: obs ${g.obs} must be i32 [${N}, O]`);
    }
    O = g.obs.shape[1];
    if (!Number.isInteger(g.column) || g.column < 0 || g.column >= O) {
      throw new Error(`${op}: column ${g.column} not in [0, ${O})`);
    }
    if (g.tokens.size !== N || g.tokens.dtype !== "i32" || g.tasks.shape.join() !== `${N}`) {
      throw new Error(`${op}: tokens ${g.tokens} and tasks ${g.tasks} must be i32 [${N}]`);
    }
    for (const [name, tab] of [["obs", g.obsTable], ["task", g.taskTable]] as const) {
      if (tab.rank !== 2 || tab.shape[1] !== d || tab.dtype !== "f32" || tab.shape[0] === 0) {
        throw new Error(`${op}: ${name} table ${tab} must be f32 [rows, ${d}]`);
      }
    }
    if (g.positionTable.shape[1] !== d || start >= g.positionTable.shape[0]) {
      throw new Error(`${op}: position ${start} outside ${g.positionTable}`);
    }
  }
  const rows = N * t;
  const out = Tensor.empty([H, rows, d]);
  if (rows === 0) return out;
  const half = cache.dtype === "f16";
  // f16 weight copies (`--precision f16`: the ones the f16 products read), both or neither.
  const qkvCopy = f16ShadowOf(w.qkvWeight), projCopy = f16ShadowOf(w.projWeight);
  const wh = !!qkvCopy && !!projCopy;
  const s = 1 / Math.sqrt(D);
  const key = `qap|${d}|${H}|${cap}|${w.lnEps}|${half}|${greedy ? `${V},${O}` : ""}` +
    (wh ? "|w16" : "");
  const kernel = genericKernel(key, N * H, () => ({
    code: generate(d, H, cap, w.lnEps, s, half, p, greedy ? { V, O } : null, wh),
    label: wh ? `${op} w16` : op,
  }));
  // {start, start + t, N, column} (a shared constant: steps upload nothing).
  const prm = constTensor(
    new Uint32Array([start, start + t, N, greedy?.column ?? 0]),
    [4],
    "u32",
  );
  const bufs = [
    x.buffer,
    w.lnWeight.buffer,
    w.lnBias.buffer,
    (wh ? qkvCopy! : w.qkvWeight).buffer,
    w.qkvBias.buffer,
    cache.buffer,
    (wh ? projCopy! : w.projWeight).buffer,
    out.buffer,
    prm.buffer,
  ];
  if (greedy) {
    const g = greedy;
    bufs.push(g.logits.buffer, g.obs.buffer, g.tokens.buffer, g.obsTable.buffer);
    bufs.push(g.taskTable.buffer, g.positionTable.buffer, g.tasks.buffer);
  }
  runtime().dispatch(kernel, bufs);
  prm.dispose();
  return out;
}

function generate(
  d: number,
  H: number,
  cap: number,
  eps: number,
  scale: number,
  half: boolean,
  { T, S }: Plan,
  greedy: { V: number; O: number } | null,
  wh = false,
): string {
  const D = d / H, D4 = D / 4, K4 = d / 4, C3 = 3 * D;
  const CT = T / S; // column threads of the qkv product
  const NJ = Math.ceil(C3 / CT); // qkv columns per thread
  const iters = Math.ceil(K4 / S);
  const G = Math.floor(T / D4); // key groups of the value pass
  const RED = Math.max(4 * T, C3 * S);
  const KT = half ? "f16" : "f32";
  const load = (i: string) => half ? `vec4<f32>(kv[${i}])` : `kv[${i}]`;
  const store = (v: string) => half ? toHalf4(v) : v;
  // Tree over T threads of red[0..T): `op` combines two values; everyone reads red[0] after.
  const tree = (v: string, op: (a: string, b: string) => string, name: string) => `
    red[lid] = ${v};
    workgroupBarrier();
    for (var w = ${T / 2}u; w > 0u; w >>= 1u) {
      if (lid < w) { red[lid] = ${op("red[lid]", "red[lid + w]")}; }
      workgroupBarrier();
    }
    let ${name} = red[0];
    workgroupBarrier();`;
  const add = (a: string, b: string) => `${a} + ${b}`;
  // Column j of the head (0 <= j < 3D) is global column (j / D) d + h D + j % D.
  const accs: string[] = [];
  const body: string[] = [];
  const spill: string[] = [];
  for (let jj = 0; jj < NJ; jj++) {
    const full = (jj + 1) * CT <= C3;
    accs.push(`    var a${jj} = 0.0;`);
    accs.push(`    let j${jj} = min(ct + ${jj * CT}u, ${C3 - 1}u);`);
    accs.push(
      `    let wr${jj} = ((j${jj} / ${D}u) * ${d}u + h * ${D}u + j${jj} % ${D}u) * ${K4}u;`,
    );
    const wv = wh ? `vec4<f32>(wq[wr${jj} + q])` : `wq[wr${jj} + q]`;
    body.push(`        a${jj} += dot(xv, ${wv});`);
    const st = `red[j${jj} * ${S}u + kg] = a${jj};`;
    spill.push(full ? `    ${st}` : `    if (ct + ${jj * CT}u < ${C3}u) { ${st} }`);
  }
  const qDot = Array.from({ length: D4 }, (_, c) => `dot(q${c}, ${load(`kb + ${c}u`)})`);
  const qLoads = Array.from(
    { length: D4 },
    (_, c) =>
      `    let q${c} = vec4<f32>(qkvs[${4 * c}u], qkvs[${4 * c + 1}u], ` +
      `qkvs[${4 * c + 2}u], qkvs[${4 * c + 3}u]);`,
  );
  const projDot = Array.from(
    { length: D4 },
    (_, c) => wh ? `dot(ys[${c}u], vec4<f32>(wp[wb + ${c}u]))` : `dot(ys[${c}u], wp[wb + ${c}u])`,
  );
  // f16 weights: the normalized rows and the attention output are rounded to f16 as the f16
  // product rounds its A (identity for f32 weights).
  const rnd = (v: string) => wh ? `rh4(${v})` : v;
  const WT = wh ? "f16" : "f32";
  const g = greedy;
  const greedyDecl = !g ? "" : `
@group(0) @binding(9) var<storage, read> logits: array<f32>;
@group(0) @binding(10) var<storage, read_write> obs: array<i32>;
@group(0) @binding(11) var<storage, read_write> tok_out: array<i32>;
@group(0) @binding(12) var<storage, read> obs_tab: array<vec4<f32>>;
@group(0) @binding(13) var<storage, read> task_tab: array<vec4<f32>>;
@group(0) @binding(14) var<storage, read> pos_tab: array<vec4<f32>>;
@group(0) @binding(15) var<storage, read> tasks: array<i32>;
var<workgroup> sv: array<f32, ${T}>;
var<workgroup> si: array<u32, ${T}>;`;
  // The row's input: x, or the embedding of argmax(logits[n]) (written by head 0's workgroup).
  const stage = !g
    ? `
    for (var q = lid; q < ${K4}u; q += ${T}u) {
      let v = x_g[r * ${K4}u + q];
      xs[q] = v;
      s0 += dot(v, vec4<f32>(1.0));
    }`
    : `
    // The argmax op's row reduction: start from element 0, strict >, ties to the lower index.
    var best = logits[n * ${g.V}u];
    var bi = 0u;
    for (var e = lid; e < ${g.V}u; e += ${T}u) {
      let v = logits[n * ${g.V}u + e];
      if (v > best) { best = v; bi = e; }
    }
    sv[lid] = best;
    si[lid] = bi;
    workgroupBarrier();
    for (var w = ${T / 2}u; w > 0u; w >>= 1u) {
      if (lid < w) {
        let v2 = sv[lid + w];
        let i2 = si[lid + w];
        if (v2 > sv[lid] || (v2 == sv[lid] && i2 < si[lid])) { sv[lid] = v2; si[lid] = i2; }
      }
      workgroupBarrier();
    }
    let tok = si[0];
    let row = u32(clamp(i32(tok), 0, i32(arrayLength(&obs_tab) / ${K4}u) - 1));
    let task = u32(clamp(tasks[n], 0, i32(arrayLength(&task_tab) / ${K4}u) - 1));
    if (h == 0u && lid == 0u) {
      tok_out[n] = i32(tok);
      obs[n * ${g.O}u + prm.p3] = i32(tok);
    }
    for (var q = lid; q < ${K4}u; q += ${T}u) {
      let v = (obs_tab[row * ${K4}u + q] + task_tab[task * ${K4}u + q]) +
        pos_tab[prm.start * ${K4}u + q];
      xs[q] = v;
      if (h == 0u) { x_g[r * ${K4}u + q] = v; }
      s0 += dot(v, vec4<f32>(1.0));
    }`;
  return `// qkvAttentionProj: d ${d}, ${H} heads, ${T} threads, ${S} k-groups
${half || wh ? "enable f16;\n" : ""}struct Params { start: u32, length: u32, p2: u32, p3: u32 }
@group(0) @binding(0) var<storage, ${g ? "read_write" : "read"}> x_g: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> gam: array<vec4<f32>, ${K4}>;
@group(0) @binding(2) var<storage, read> bet: array<vec4<f32>, ${K4}>;
@group(0) @binding(3) var<storage, read> wq: array<vec4<${WT}>, ${3 * d * K4}>;
@group(0) @binding(4) var<storage, read> bq: array<f32, ${3 * d}>;
@group(0) @binding(5) var<storage, read_write> kv: array<vec4<${KT}>>;
@group(0) @binding(6) var<storage, read> wp: array<vec4<${WT}>, ${d * K4}>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<uniform> prm: Params;${greedyDecl}${wh ? `\n${ROUND_HALF4_WGSL}` : ""}
var<workgroup> xs: array<vec4<f32>, ${K4}>;
var<workgroup> qkvs: array<f32, ${C3}>;
var<workgroup> sc: array<f32, ${cap}>;
var<workgroup> red: array<f32, ${RED}>;
var<workgroup> ys: array<vec4<f32>, ${D4}>;
@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = prm.length - prm.start;
  let nseq = prm.p2;
  let lin = wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y;
  if (lin >= nseq * ${H}u) { return; }
  // Sequences fastest: the workgroups that share a head's weights run side by side (L2).
  let n = lin % nseq;
  let h = lin / nseq;
  let rows = nseq * t;
  let head = (n * ${H}u + h) * ${cap * D4}u;
  let vhalf = nseq * ${H * cap * D4}u;
  let kg = lid % ${S}u;
  let ct = lid / ${S}u;
  for (var i = 0u; i < t; i++) {
    let r = n * t + i;
    // ln1 (the layerNorm op's two-pass formula) into workgroup memory.
    var s0 = 0.0;${stage}
${tree("s0", add, "s1")}
    let mean = s1 / ${d}.0;
    var ss = 0.0;
    for (var q = lid; q < ${K4}u; q += ${T}u) {
      let e = xs[q] - vec4<f32>(mean);
      ss += dot(e, e);
    }
${tree("ss", add, "ss1")}
    let rstd = inverseSqrt(ss1 / ${d}.0 + ${f32(eps)});
    for (var q = lid; q < ${K4}u; q += ${T}u) {
      xs[q] = ${rnd("(xs[q] - vec4<f32>(mean)) * rstd * gam[q] + bet[q]")};
    }
    workgroupBarrier();
    // q, k, v of head h: thread (kg, ct) sums chunks kg, kg + S, ... of its columns.
${accs.join("\n")}
    for (var it = 0u; it < ${iters}u; it++) {
      let q = kg + it * ${S}u;
      if (q < ${K4}u) {
        let xv = xs[q];
${body.join("\n")}
      }
    }
${spill.join("\n")}
    workgroupBarrier();
    for (var j = lid; j < ${C3}u; j += ${T}u) {
      var v = red[j * ${S}u];
      for (var k = 1u; k < ${S}u; k++) { v += red[j * ${S}u + k]; }
      qkvs[j] = v + bq[(j / ${D}u) * ${d}u + h * ${D}u + j % ${D}u];
    }
    workgroupBarrier();
    // Keys and values into the cache at position start + i, one vec4 per thread.
    for (var e = lid; e < ${2 * D4}u; e += ${T}u) {
      let b = ${D}u + 4u * e;
      let v = vec4<f32>(qkvs[b], qkvs[b + 1u], qkvs[b + 2u], qkvs[b + 3u]);
      kv[(e / ${D4}u) * vhalf + head + (prm.start + i) * ${D4}u + e % ${D4}u] = ${store("v")};
    }
    // This workgroup reads them back (as stored: f16 rounding included).
    storageBarrier();
    let keys = prm.start + i + 1u;
${qLoads.join("\n")}
    var m = -3.0e38;
    for (var j = lid; j < keys; j += ${T}u) {
      let kb = head + j * ${D4}u;
      let v = (${qDot.join(" + ")}) * ${f32(scale)};
      sc[j] = v;
      m = max(m, v);
    }
${tree("m", (a, b) => `max(${a}, ${b})`, "mx")}
    var l = 0.0;
    for (var j = lid; j < keys; j += ${T}u) {
      let e = exp(sc[j] - mx);
      sc[j] = e;
      l += e;
    }
${tree("l", add, "total")}
    let c = lid % ${D4}u;
    let g = lid / ${D4}u;
    var acc = vec4<f32>(0.0);
    let vb = vhalf + head + c;
    if (g < ${G}u) {
      for (var j = g; j < keys; j += ${G}u) {
        acc += sc[j] * ${load(`vb + j * ${D4}u`)};
      }
    }
    red[4u * lid] = acc.x;
    red[4u * lid + 1u] = acc.y;
    red[4u * lid + 2u] = acc.z;
    red[4u * lid + 3u] = acc.w;
    workgroupBarrier();
    if (lid < ${D4}u) {
      var o = vec4<f32>(red[4u * lid], red[4u * lid + 1u], red[4u * lid + 2u], red[4u * lid + 3u]);
      for (var k = 1u; k < ${G}u; k++) {
        let b = 4u * (lid + k * ${D4}u);
        o += vec4<f32>(red[b], red[b + 1u], red[b + 2u], red[b + 3u]);
      }
      ys[lid] = ${rnd("o / total")};
    }
    workgroupBarrier();
    // The head's partial of the output projection: columns lid, lid + T, ...
    for (var col = lid; col < ${d}u; col += ${T}u) {
      let wb = col * ${K4}u + h * ${D4}u;
      out[(h * rows + r) * ${d}u + col] = ${projDot.join(" + ")};
    }
    workgroupBarrier();
  }
}
`;
}
