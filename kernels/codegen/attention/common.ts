/**
 * Shared pieces of the fused attention generators: the spec and plan types, tensor layouts
 * (strides baked into the WGSL), tile choice, grid folding and the dropout hash (in WGSL and,
 * bit for bit, in TypeScript so CPU references can rebuild the exact mask).
 *
 * @module
 */

/**
 * Memory layout of the attention tensors. Rows of D floats are always contiguous.
 * - `"bhtd"`: every tensor is [BH, T, D] (BH = batch*heads).
 * - `"bthd"`: q, k, v, o, dO, dQ, dK, dV are [B, T, H, D] (needs `heads`).
 * - `"packed_qkv"`: q, k, v are read from one [B, T, 3, H, D] buffer (binding `qkv`), as the
 *   fused QKV projection writes it; o and dO are [B, T, H, D]; the gradients are written into
 *   one [B, T, 3, H, D] buffer (binding `dqkv`). Needs `heads` and Tq == S.
 *
 * lse and the backward scratch `delta` are always [BH, Tq].
 */
export type AttentionLayout = "bhtd" | "bthd" | "packed_qkv";

/** One fused self-attention call. */
export interface AttentionSpec {
  /** batch * heads. */
  batchHeads: number;
  /** Heads per batch entry; required by the "bthd" and "packed_qkv" layouts. Default 1. */
  heads?: number;
  /** Number of query rows. */
  Tq: number;
  /** Number of keys/values. Queries are the LAST Tq positions of the S-long sequence. */
  S: number;
  /** Head dimension, a multiple of 4. */
  D: number;
  /** Causal: query i attends keys j <= S - Tq + i. Otherwise every key. */
  causal: boolean;
  /** Score scale; default 1/sqrt(D). */
  scale?: number;
  /**
   * Compile in attention dropout. The rate itself is read at run time from the params
   * uniform, so one pipeline serves p = 0.1 in training and p = 0 in evaluation. Any value
   * > 0 enables it (the value is only recorded in the label).
   */
  dropout?: number;
  /** Default "bhtd". */
  layout?: AttentionLayout;
  /** Tile overrides for tuning; by default tiles are picked to fit the device limits. */
  tiles?: AttentionTiles;
  /**
   * Shape-generic forward (evaluation): the sequence length T (= Tq = S) and batch*heads are
   * read at run time from a uniform `vec4<u32>` {T, BH} (binding `dims`, after `params`), so
   * one pipeline serves every window and number of sequences; the grid follows the call
   * (`attentionForwardGrid`). Forward only, "packed_qkv" or "bthd" layout, no dropout.
   * `Tq`, `S` and `batchHeads` then only pick the tile's bucket (see `dynamicRowsBucket`).
   */
  dynamic?: boolean;
  /**
   * Storage type of q, k, v (the `q`, `k`, `v` or `qkv` bindings): "f16" (`--precision f16`,
   * needs `shader-f16`) reads them as f16 and converts each vec4 to f32 as it loads it, so all
   * arithmetic stays f32; o, lse, dO and the gradients are f32 either way. Default "f32".
   */
  qkvDtype?: "f32" | "f16";
}

/** Tile overrides (any positive sizes; checked against the device limits). */
export interface AttentionTiles {
  /** Forward: [query rows per workgroup, keys per K/V tile]. */
  forward?: [number, number];
  /** Backward dK/dV: [keys per workgroup, queries per Q/dO tile]. */
  dkdv?: [number, number];
  /** Backward dQ: [query rows per workgroup, keys per K/V tile]. */
  dq?: [number, number];
  /** Threads sharing one row; must divide D/4. Default ~D/32. */
  split?: number;
  /** Forward: query rows per thread (register blocking); must divide the row block. Default 1. */
  forwardRows?: number;
  /** Backward dK/dV: keys per thread (register blocking); must divide the key block. Default 1. */
  dkdvCols?: number;
  /** Backward dQ: query rows per thread (register blocking); must divide the row block. */
  dqRows?: number;
}

/** A generated kernel and how to dispatch it. */
export interface KernelPlan {
  /** Complete WGSL; sizes, strides and tile shapes are baked in. */
  code: string;
  /** Dispatch size; every entry <= limits.maxComputeWorkgroupsPerDimension. */
  workgroups: [number, number, number];
  /** Human-readable name for error messages and profiles. */
  label: string;
  /** Binding names in binding order (group 0, binding = index). */
  bindings: string[];
  /** Minimum size in bytes of each binding, by name. */
  bindingBytes: Record<string, number>;
}

/** Device limits the planners respect (a subset of GPUSupportedLimits). */
export interface AttentionLimits {
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupsPerDimension: number;
}

/** Size in bytes of the params uniform buffer {seed: u32, p: f32} (padded to 16). */
export const ATTENTION_PARAMS_BYTES = 16;

/** Contents of the params uniform: {seed: u32, p: f32}, padded to ATTENTION_PARAMS_BYTES. */
export function attentionParams(seed: number, p: number): ArrayBuffer {
  if (!(p >= 0 && p < 1)) throw new Error(`attention: dropout p=${p} outside [0, 1)`);
  const data = new ArrayBuffer(ATTENTION_PARAMS_BYTES);
  new Uint32Array(data, 0, 1)[0] = seed >>> 0;
  new Float32Array(data, 4, 1)[0] = p;
  return data;
}

/** Where one logical tensor lives: binding name and strides in vec4 units. */
export interface TensorAddr {
  binding: string;
  offset: number;
  /** A WGSL expression in a shape-generic plan (it follows T). */
  strideB: number | string;
  strideH: number;
  strideT: number;
}

/** The spec with defaults applied and checked. */
export interface ResolvedSpec {
  BH: number;
  H: number;
  B: number;
  Tq: number;
  S: number;
  D: number;
  causal: boolean;
  scale: number;
  dropout: boolean;
  layout: AttentionLayout;
  tiles: AttentionTiles;
  /** See {@link AttentionSpec.dynamic}. */
  dynamic: boolean;
  /** See {@link AttentionSpec.qkvDtype}. */
  qkvDtype: "f32" | "f16";
}

/** Apply defaults and validate. Throws on shapes the generators cannot handle. */
export function resolveSpec(spec: AttentionSpec): ResolvedSpec {
  const layout = spec.layout ?? "bhtd";
  const H = spec.heads ?? 1;
  const { batchHeads: BH, Tq, S, D } = spec;
  for (const [k, v] of Object.entries({ batchHeads: BH, heads: H, Tq, S, D })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`attention: ${k} must be a positive int`);
  }
  if (D % 4 !== 0) throw new Error(`attention: D=${D} must be a multiple of 4`);
  if (Tq > S) throw new Error(`attention: Tq=${Tq} > S=${S}`);
  if (BH % H !== 0) throw new Error(`attention: batchHeads=${BH} not a multiple of heads=${H}`);
  if (layout === "packed_qkv" && Tq !== S) {
    throw new Error("attention: packed_qkv layout needs Tq == S");
  }
  const tiles = spec.tiles ?? {};
  const sizes = [...(tiles.forward ?? []), ...(tiles.dkdv ?? []), ...(tiles.dq ?? [])];
  const blocking = [tiles.forwardRows ?? 1, tiles.dkdvCols ?? 1, tiles.dqRows ?? 1];
  for (const v of [...sizes, ...blocking]) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`attention: bad tile size ${v}`);
  }
  if (tiles.split !== undefined && (!Number.isInteger(tiles.split) || (D / 4) % tiles.split)) {
    throw new Error(`attention: split=${tiles.split} must divide D/4=${D / 4}`);
  }
  return {
    BH,
    H,
    B: BH / H,
    Tq,
    S,
    D,
    causal: spec.causal,
    scale: spec.scale ?? 1 / Math.sqrt(D),
    dropout: (spec.dropout ?? 0) > 0,
    layout,
    tiles,
    dynamic: checkDynamic(spec, layout),
    qkvDtype: checkQkvDtype(spec.qkvDtype),
  };
}

function checkQkvDtype(t: AttentionSpec["qkvDtype"]): "f32" | "f16" {
  if (t === undefined || t === "f32" || t === "f16") return t ?? "f32";
  throw new Error(`attention: q, k, v must be stored f32 or f16, not ${t}`);
}

/** The bindings that hold q, k or v. */
const QKV_BINDINGS = new Set(["q", "k", "v", "qkv"]);

/** WGSL `enable f16;` when q, k, v are stored f16 (prefix of every attention kernel). */
export function qkvEnable(r: ResolvedSpec): string {
  return r.qkvDtype === "f16" ? "enable f16;\n" : "";
}

/** WGSL element type of an input binding: `vec4<f16>` for q, k, v stored f16, else f32's. */
export function inputVec(r: ResolvedSpec, binding: string): string {
  return QKV_BINDINGS.has(binding) && r.qkvDtype === "f16" ? "vec4<f16>" : "vec4<f32>";
}

/** WGSL of one vec4 read from an input binding as f32 (f16 q, k, v converted on load). */
export function readVec(r: ResolvedSpec, binding: string, index: string): string {
  const v = `${binding}[${index}]`;
  return inputVec(r, binding) === "vec4<f16>" ? `vec4<f32>(${v})` : v;
}

function checkDynamic(spec: AttentionSpec, layout: AttentionLayout): boolean {
  if (!spec.dynamic) return false;
  if (layout === "bhtd" || spec.Tq !== spec.S || (spec.dropout ?? 0) > 0) {
    throw new Error("attention: a shape-generic plan needs Tq == S, no dropout, bthd or packed");
  }
  return true;
}

/** WGSL of the sequence length T (a run-time dim in a shape-generic plan). */
export function seqLen(r: ResolvedSpec, which: "Tq" | "S"): string {
  return r.dynamic ? "dims.x" : `${r[which]}u`;
}

/** Logical tensors of an attention call. */
export type AttentionTensor = "q" | "k" | "v" | "o" | "dO" | "dQ" | "dK" | "dV";

/** Address of a logical tensor under the spec's layout. */
export function tensorAddr(r: ResolvedSpec, t: AttentionTensor): TensorAddr {
  const D4 = r.D / 4;
  const T = t === "k" || t === "v" || t === "dK" || t === "dV" ? r.S : r.Tq;
  if (r.layout === "bhtd") {
    // b = bh / 1 with H = 1 folded in: strideB jumps a whole [T, D] slab.
    return { binding: t, offset: 0, strideB: r.H * T * D4, strideH: T * D4, strideT: D4 };
  }
  const packed = r.layout === "packed_qkv" && t !== "o" && t !== "dO";
  // A shape-generic plan's batch stride follows T at run time.
  const strideB = (per: number) => r.dynamic ? `(dims.x * ${per}u)` : T * per;
  if (!packed) {
    return { binding: t, offset: 0, strideB: strideB(r.H * D4), strideH: D4, strideT: r.H * D4 };
  }
  const slot = { q: 0, k: 1, v: 2, dQ: 0, dK: 1, dV: 2 }[t as "q"];
  const grad = t.startsWith("d");
  return {
    binding: grad ? "dqkv" : "qkv",
    offset: slot * r.H * D4,
    strideB: strideB(3 * r.H * D4),
    strideH: D4,
    strideT: 3 * r.H * D4,
  };
}

/** Bytes a binding must hold for the given logical tensor. */
export function tensorBytes(r: ResolvedSpec, t: AttentionTensor): number {
  const a = tensorAddr(r, t);
  const T = t === "k" || t === "v" || t === "dK" || t === "dV" ? r.S : r.Tq;
  const bytes = QKV_BINDINGS.has(a.binding) && r.qkvDtype === "f16" ? 2 : 4;
  if (a.binding === "qkv" || a.binding === "dqkv") return r.B * T * 3 * r.H * r.D * bytes;
  return r.BH * T * r.D * bytes;
}

/** WGSL function `<name>_row(bh, t) -> u32`: vec4 index of row t of head bh. */
export function rowFn(name: string, a: TensorAddr, H: number): string {
  const sb = typeof a.strideB === "number" ? `${a.strideB}u` : a.strideB;
  return `fn ${name}_row(bh: u32, t: u32) -> u32 {
  return ${a.offset}u + (bh / ${H}u) * ${sb} + (bh % ${H}u) * ${a.strideH}u + t * ${a.strideT}u;
}`;
}

/**
 * Split of the head dimension across threads: NS threads share a row, each owning D/NS dims
 * (so per-thread accumulators stay well inside the register file for D = 64, 128).
 */
export function headSplit(D: number): number {
  let ns = Math.max(1, Math.floor(D / 32));
  while (D % (4 * ns) !== 0) ns--;
  return ns;
}

/** Cap for a block of n rows: the next power of two below 16, else n rounded up to 16. */
export function blockCap(n: number): number {
  return n < 16 ? pow2ceil(n) : Math.ceil(n / 16) * 16;
}

/** Smallest power of two >= n. */
export function pow2ceil(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

// ---- dropout -------------------------------------------------------------------------

/** PCG-style 32-bit integer hash (Jarzynski & Olano 2020), as in the WGSL `pcg`. */
export function pcgHash(v: number): number {
  const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/** Per-row hash of the dropout RNG: (seed, bh, query row i). */
export function dropoutRowHash(seed: number, bh: number, i: number): number {
  return pcgHash((pcgHash((seed ^ pcgHash(bh)) >>> 0) + i) >>> 0);
}

/** u32 threshold below which a hash drops: floor(f32(p) * 2^32), saturated as in WGSL. */
export function dropoutThreshold(p: number): number {
  return Math.floor(Math.min(Math.fround(p) * 4294967296, 4294967040));
}

/**
 * Whether attention probability (bh, i, j) is KEPT under dropout rate p and `seed`; i is the
 * query row in [0, Tq), j the key position in [0, S). Identical to the generated WGSL.
 */
export function dropoutKeep(seed: number, p: number, bh: number, i: number, j: number): boolean {
  const h = pcgHash((dropoutRowHash(seed, bh, i) ^ Math.imul(j, 0x9e3779b9)) >>> 0);
  return h >= dropoutThreshold(p);
}

/** WGSL for the params uniform and the dropout hash (mirrors the TypeScript above). */
export function dropoutWgsl(binding: number): string {
  return `struct Params { seed: u32, p: f32 }
@group(0) @binding(${binding}) var<uniform> params: Params;

fn pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}
fn row_hash(bh: u32, i: u32) -> u32 {
  return pcg(pcg(params.seed ^ pcg(bh)) + i);
}
fn drop_threshold() -> u32 {
  return u32(min(params.p * 4294967296.0, 4294967040.0));
}
// Multiplier of a probability: 1/(1-p) if kept, 0 if dropped.
fn keep_mult(rh: u32, j: u32, thr: u32, inv: f32) -> f32 {
  return select(0.0, inv, pcg(rh ^ (j * 0x9e3779b9u)) >= thr);
}`;
}
