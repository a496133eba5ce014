/**
 * Causal or full self-attention on the tape, two ways: the fused flash-style kernels of
 * `codegen/attention/plan.ts` (no T x T matrix in memory), and the plain composite of matmul, mask
 * and softmax (`attentionReference`) that tests and benchmarks compare it against.
 */
import { isGradEnabled, record } from "../core/autograd.ts";
import {
  attentionForwardGrid,
  dynamicRowsBucket,
  type KernelPlan,
  planAttentionBackward,
  planAttentionForward,
} from "../codegen/attention/plan.ts";
import { dimsBuffer } from "./dims.ts";
import { runtime } from "../core/runtime.ts";
import { planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import { resolveSeed, type Seed } from "../../util/rng.ts";
import { dropout as dropoutOp } from "./dropout.ts";
import { mulScalar, where } from "./elementwise.ts";
import { permute, reshape, slice } from "./layout.ts";
import { mapKernel } from "./map.ts";
import { matmul } from "./matmul.ts";
import { softmax } from "./softmax.ts";
import { grid, linearWorkgroup } from "../codegen/wgsl.ts";

/** Options of the attention ops. */
export interface AttentionOptions {
  heads: number;
  causal: boolean;
  /** Attention dropout probability (training); 0 disables. */
  dropout?: number;
  /** Dropout seed (derive per step and layer); a function for a captured step's seed. */
  seed?: Seed;
}

/**
 * Fused attention over a packed projection: `qkv` is [B, T, 3 * heads * D] (q, k, v blocks
 * of heads x D, as one Linear(d, 3d) writes it). Returns [B, T, heads * D] (f32).
 *
 * `qkv` may be stored f16 (`--precision f16`: the f16 product's f16 output, see
 * models/world_action/transformer.ts): the kernels convert it to f32 as they load it and do
 * all arithmetic in f32, and the gradient they return for it is f32 (the gradient of the
 * rounding store that made it passes straight through, as in kernels/ops/matmul_f16.ts).
 */
export function fusedAttention(qkv: Tensor, opts: AttentionOptions): Tensor {
  if (qkv.rank !== 3 || qkv.shape[2] % (3 * opts.heads) !== 0) {
    throw new Error(`attention: qkv [${qkv.shape}] must be [B, T, 3 * heads * D]`);
  }
  if (qkv.dtype !== "f32" && qkv.dtype !== "f16") {
    throw new Error(`attention: qkv must be f32 or f16, got ${qkv.dtype}`);
  }
  const qkvDtype = qkv.dtype;
  const [B, T, three] = qkv.shape;
  const H = opts.heads;
  const D = three / (3 * H);
  const p = opts.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new Error(`attention: dropout must be in [0, 1), got ${p}`);
  const spec = {
    batchHeads: B * H,
    heads: H,
    Tq: T,
    S: T,
    D,
    causal: opts.causal,
    dropout: p > 0 ? p : undefined,
    layout: "packed_qkv" as const,
    qkvDtype,
  };
  const rt = runtime();
  const params = paramsBlock(opts.seed ?? 0, p);
  const out = Tensor.empty([B, T, H * D]);
  const lse = Tensor.empty([B * H, T]);
  const specKey = `${spec.batchHeads}|${H}|${T}|${D}|${spec.causal}|${spec.dropout}|${qkvDtype}`;
  if (!isGradEnabled() && p === 0) {
    // Inference: one pipeline for every window length and number of sequences (T and
    // batch * heads are run-time dims; the grid follows them).
    const dyn = { ...spec, dynamic: true };
    const key = `attfd|${H}|${D}|${spec.causal}|${dynamicRowsBucket(T)}|${qkvDtype}`;
    // Only what does not depend on T and B is cached under the key without them.
    const plan = planCache(key, () => {
      const p = planAttentionForward(dyn, rt.ctx.limits);
      return { code: p.code, label: p.label, bindings: p.bindings };
    });
    const fwd = planCache(`${key}|${T}|${B}`, () => ({
      ...plan,
      workgroups: attentionForwardGrid(dyn, rt.ctx.limits),
    }));
    const dims = dimsBuffer(T, B * H);
    rt.dispatch(fwd, bind(fwd, { qkv: qkv.buffer, o: out.buffer, lse: lse.buffer, params, dims }));
    rt.pool.release(params);
    lse.dispose();
    return out;
  }
  const fwd = planCache(`attf|${specKey}`, () => planAttentionForward(spec, rt.ctx.limits));
  rt.dispatch(fwd, bind(fwd, { qkv: qkv.buffer, o: out.buffer, lse: lse.buffer, params }));
  const result = record(out, "attention", [qkv], (g) => {
    const dqkv = Tensor.empty(qkv.shape); // f32 for f32 and f16 q, k, v
    const delta = Tensor.empty([B * H, T]);
    const again = paramsBlock(opts.seed ?? 0, p);
    const buffers = {
      qkv: qkv.buffer,
      o: out.buffer,
      dO: g.buffer,
      lse: lse.buffer,
      delta: delta.buffer,
      params: again,
      dqkv: dqkv.buffer,
    };
    const plans = planCache(`attb|${specKey}`, () => planAttentionBackward(spec, rt.ctx.limits));
    for (const plan of plans) {
      rt.dispatch(plan, bind(plan, buffers));
    }
    rt.pool.release(again);
    delta.dispose();
    return [dqkv];
  });
  rt.pool.release(params);
  if (!result.node) lse.dispose();
  return result;
}

type Pooled = Tensor["buffer"];

function bind(
  plan: Pick<KernelPlan, "bindings" | "label">,
  buffers: Record<string, Pooled>,
): Pooled[] {
  return plan.bindings.map((name) => {
    const b = buffers[name];
    if (!b) throw new Error(`${plan.label}: nothing bound to '${name}'`);
    return b;
  });
}

/**
 * The {seed: u32, p: f32} block the attention kernels read, uploaded fresh: recomputed on each
 * replay of a capture when the seed is a function, constant when it is a number.
 */
function paramsBlock(seed: Seed, p: number): Pooled {
  const bytes = () => {
    const block = new ArrayBuffer(16);
    new Uint32Array(block, 0, 1)[0] = resolveSeed(seed) >>> 0;
    new Float32Array(block, 4, 1)[0] = p;
    return new Uint8Array(block);
  };
  return typeof seed === "number"
    ? runtime().uploadStatic(bytes())
    : runtime().uploadDynamic(bytes);
}

/**
 * The unfused path: softmax(Q K^T * scale + mask) V with the scores materialized, over the
 * same packed [B, T, 3 * heads * D] input. Dropout here uses the elementwise dropout op (a
 * different mask from the fused kernel's).
 */
export function attentionReference(qkv: Tensor, opts: AttentionOptions): Tensor {
  const [B, T, three] = qkv.shape;
  const H = opts.heads;
  const D = three / (3 * H);
  // [B, T, 3, H, D] -> [3, B, H, T, D]
  const parts = permute(reshape(qkv, [B, T, 3, H, D]), [2, 0, 3, 1, 4]);
  const q = sliceFirst(parts, 0, [B, H, T, D]);
  const k = sliceFirst(parts, 1, [B, H, T, D]);
  const v = sliceFirst(parts, 2, [B, H, T, D]);
  let scores = mulScalar(matmul(q, k, { transB: true }), 1 / Math.sqrt(D));
  if (opts.causal) {
    const mask = causalMask(T);
    scores = where(mask, scores, mapKernel("neg_inf", [], "-1e30", "f32", [T, T]));
  }
  let probs = softmax(scores);
  if (opts.dropout) probs = dropoutOp(probs, opts.dropout, opts.seed ?? 0);
  const o = matmul(probs, v); // [B, H, T, D]
  return reshape(permute(o, [0, 2, 1, 3]), [B, T, H * D]);
}

/** Part i (0 = q, 1 = k, 2 = v) of the [3, ...] stack, reshaped. */
function sliceFirst(parts: Tensor, i: number, shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return reshape(slice(reshape(parts, [3, n]), 0, i, i + 1), shape);
}

/** 1 where key j <= query i. */
function causalMask(T: number): Tensor {
  const out = Tensor.empty([T, T]);
  const groups = Math.ceil((T * T) / 256);
  runtime().dispatch({
    code: `@group(0) @binding(0) var<storage, read_write> m: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = ${linearWorkgroup(groups)} * 256u + lid;
  if (i >= ${T * T}u) { return; }
  m[i] = select(0.0, 1.0, i % ${T}u <= i / ${T}u);
}`,
    label: "causal_mask",
    workgroups: grid(groups),
  }, [out.buffer]);
  return out;
}
