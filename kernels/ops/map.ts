/**
 * The generic elementwise kernel: any number of inputs broadcast (numpy rules) to one output,
 * combined by a WGSL expression over `a`, `b`, `c`, ... (each loaded as f32). Strides are
 * baked into the source, so the index math is all constants, except the leading (batch)
 * dimension of the output: the element count comes from a dims uniform (kernels/ops/dims.ts),
 * so one pipeline serves every number of rows (evaluation's environments and beams).
 */
import type { DType } from "../core/dtype.ts";
import { runtime } from "../core/runtime.ts";
import type { PooledBuffer } from "../core/buffer_pool.ts";
import { internId } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import { isGradEnabled } from "../core/autograd.ts";
import { binding, enables, stridesOf } from "../codegen/wgsl.ts";
import {
  dimsBuffer,
  dimsDecl,
  dimsTable,
  GENERIC_BUILTINS,
  GENERIC_LINEAR,
  genericKernel,
} from "./dims.ts";

const NAMES = "abcdefgh";
const WG = 256;

/** The broadcast of several shapes, or an error naming the op and the shapes. */
export function broadcastShapes(op: string, ...shapes: (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const v = s[s.length - rank + i] ?? 1;
      if (v === 1) continue;
      if (d !== 1 && d !== v) {
        throw new Error(
          `${op}: shapes ${shapes.map((s) => `[${s}]`).join(" and ")} do not broadcast`,
        );
      }
      d = v;
    }
    out.push(d);
  }
  return out;
}

/**
 * WGSL that computes the flat index into an input of `inShape` broadcast to `outShape`, whose
 * leading extent is generic. An input of the output's rank steps along the leading axis by
 * `lead` (a dims lane: its row stride when it follows the output's leading extent, 0 when it
 * broadcasts there), so both cases share one source; other inputs never see the leading axis.
 */
function inputIndex(inShape: readonly number[], outShape: readonly number[], lead: string): string {
  // Strides never read the leading extent.
  const outStrides = stridesOf(outShape);
  const inStrides = stridesOf(inShape);
  const offset = outShape.length - inShape.length;
  const terms: string[] = [];
  if (offset === 0 && outShape.length > 0) {
    const sameInner = inShape.every((d, k) => k === 0 || d === outShape[k]);
    terms.push(`(i / ${outStrides[0]}u) * ${lead}`);
    if (sameInner) return outShape.length === 1 ? terms[0] : `${terms[0]} + i % ${outStrides[0]}u`;
  }
  for (let k = 1; k < outShape.length; k++) {
    const ki = k - offset;
    if (ki < 0 || inShape[ki] === 1 || outShape[k] === 1) continue;
    const coord = `((i / ${outStrides[k]}u) % ${outShape[k]}u)`;
    terms.push(inStrides[ki] === 1 ? coord : `${coord} * ${inStrides[ki]}u`);
  }
  return terms.length ? terms.join(" + ") : "0u";
}

/** Limits of {@link broadcastKernel}'s uniform: output rank and inputs. */
const MAX_RANK = 6;
const MAX_INPUTS = 4;

/** The load of input k as `a`, `b`, ... (integers exact when asked, else as f32). */
function load(t: Tensor, k: number, index: string, outDtype: DType, exactInts: boolean): string {
  const raw = `in${k}[${index}]`;
  const isInt = t.dtype === "i32" || t.dtype === "u32";
  const exact = isInt && (t.dtype === outDtype || exactInts);
  return `  let ${NAMES[k]} = ${exact ? raw : `f32(${raw})`};`;
}

/**
 * Inference (no tape): a broadcasting elementwise kernel whose shape and strides are all
 * run-time values (a uniform of the output's extents and each input's strides, 0 where it
 * broadcasts), so the source depends only on the ranks, dtypes and expression: rows that sit
 * in an inner axis (a Q ensemble's [members, rows, ...]) or a leading extent of 1 make no new
 * pipeline. Training keeps the baked strides (constant divisions).
 */
function broadcastKernel(
  label: string,
  inputs: readonly Tensor[],
  expr: string,
  out: Tensor,
  prelude: string,
  exactInts: boolean,
  groups: number,
): void {
  const shape = out.shape;
  const r = shape.length;
  const values = [out.size, ...shape];
  for (const t of inputs) {
    const st = stridesOf(t.shape);
    for (let k = 0; k < r; k++) {
      const ki = k - (r - t.rank);
      values.push(ki < 0 || (t.shape[ki] === 1 && shape[k] !== 1) ? 0 : st[ki]);
    }
  }
  const lane = (v: number) => `p[${v >> 2}].${"xyzw"[v & 3]}`;
  let key = `mapb|${label}|${expr}|${out.dtype}|${internId(prelude)}|${exactInts}|${r}`;
  for (const t of inputs) key += `|${t.dtype}`;
  const kernel = genericKernel(key, groups, () => {
    const decls = inputs.map((t, k) => binding(k, `in${k}`, t.dtype));
    decls.push(binding(inputs.length, "out", out.dtype, true));
    const P = Math.ceil(values.length / 4);
    decls.push(`@group(0) @binding(${inputs.length + 1}) var<uniform> p: array<vec4<u32>, ${P}>;`);
    const coords: string[] = ["  var rem = i;"];
    for (let k = r - 1; k >= 1; k--) {
      coords.push(`  let c${k} = rem % ${lane(1 + k)}; rem = rem / ${lane(1 + k)};`);
    }
    if (r > 0) coords.push("  let c0 = rem;");
    const loads = inputs.map((t, k) => {
      const terms = Array.from({ length: r }, (_, d) => `c${d} * ${lane(1 + r * (k + 1) + d)}`);
      return load(t, k, terms.length ? terms.join(" + ") : "0u", out.dtype, exactInts);
    });
    const code = `${enables(out.dtype, ...inputs.map((t) => t.dtype))}${decls.join("\n")}
${prelude}
@compute @workgroup_size(${WG})
fn main(${GENERIC_BUILTINS}) {
  let i = ${GENERIC_LINEAR} * ${WG}u + lid;
  if (i >= p[0].x) { return; }
${coords.join("\n")}
${loads.join("\n")}
  out[i] = ${out.dtype}(${expr});
}
`;
    return { code, label };
  });
  const bufs: PooledBuffer[] = [];
  for (const t of inputs) bufs.push(t.buffer);
  bufs.push(out.buffer, dimsTable(values));
  runtime().dispatch(kernel, bufs);
}

/** Inputs of the output's rank (they read a leading stride from a dims lane): at most 3. */
const MAX_LEADING = 3;

/**
 * Elementwise `expr` over broadcast `inputs` into a new tensor of `outDtype`; `prelude` holds
 * WGSL helper functions the expression calls. Inputs load as f32, except integer inputs of the
 * output's dtype, and every integer input when `exactInts` is set (then `expr` must type-check
 * with them: f32 holds integers exactly only up to 2^24).
 * No gradient is recorded here: callers attach their own rule.
 */
export function mapKernel(
  label: string,
  inputs: readonly Tensor[],
  expr: string,
  outDtype: DType = "f32",
  outShape?: readonly number[],
  prelude = "",
  exactInts = false,
): Tensor {
  const shape = outShape ?? broadcastShapes(label, ...inputs.map((t) => t.shape));
  // A disposed input throws here, before the output is allocated (nothing leaks).
  for (const t of inputs) void t.buffer;
  const out = Tensor.empty(shape, outDtype);
  if (out.size === 0) return out;
  const groups = Math.ceil(out.size / WG);
  // Inference: one source for every shape of the same ranks (even "same shape" vs "broadcast"
  // is a run-time matter: with one row the two look alike).
  if (!isGradEnabled() && shape.length <= MAX_RANK && inputs.length <= MAX_INPUTS) {
    broadcastKernel(label, inputs, expr, out, prelude, exactInts, groups);
    return out;
  }
  // The output's leading extent is generic: element count and each same-rank input's leading
  // stride (0 where it broadcasts) are dims lanes, so every number of rows shares the source.
  const lanes: number[] = [];
  // Inputs of the output's shape (no broadcasting at all) read element i: the shape need not
  // be in the key (the Q ensemble's [members, rows, ...] follows the rows in an inner axis).
  const flat = inputs.every((t) => t.shape.join() === shape.join());
  const leads = inputs.map((t) => {
    if (flat) return "";
    if (t.rank !== shape.length || shape.length === 0 || lanes.length === MAX_LEADING) return "";
    const follows = t.shape[0] === shape[0];
    if (!follows && t.shape[0] !== 1) throw new Error(`${label}: bad broadcast of ${t}`);
    lanes.push(follows ? t.size / Math.max(t.shape[0], 1) : 0);
    return `dims.${"yzw"[lanes.length - 1]}`;
  });
  let key = `map|${label}|${expr}|${outDtype}|${internId(prelude)}|${exactInts}|` +
    (flat ? "flat" : `${shape.slice(1)}`);
  for (let k = 0; k < inputs.length; k++) {
    // An input of the output's rank beyond the lanes bakes its leading broadcast.
    const t = inputs[k];
    const baked = leads[k] === "" && t.rank === shape.length && shape.length > 0;
    if (flat) {
      key += `|${t.dtype}`;
      continue;
    }
    key += `|${t.dtype}${t.rank}:${t.shape.slice(1)}${
      leads[k] ? "L" : baked ? `B${t.shape[0] === shape[0]}` : ""
    }`;
  }
  const kernel = genericKernel(key, groups, () => {
    const decls = inputs.map((t, k) => binding(k, `in${k}`, t.dtype));
    decls.push(binding(inputs.length, "out", outDtype, true));
    decls.push(dimsDecl(inputs.length + 1));
    const loads = inputs.map((t, k) => {
      const lead = leads[k] ||
        (t.shape[0] === shape[0] ? `${t.size / Math.max(t.shape[0], 1)}u` : "0u");
      const raw = `in${k}[${flat ? "i" : inputIndex(t.shape, shape, lead)}]`;
      // Integer data copied to the same dtype stays exact (no round trip through f32).
      const isInt = t.dtype === "i32" || t.dtype === "u32";
      const exact = isInt && (t.dtype === outDtype || exactInts);
      return `  let ${NAMES[k]} = ${exact ? raw : `f32(${raw})`};`;
    });
    const code = `${enables(outDtype, ...inputs.map((t) => t.dtype))}${decls.join("\n")}
${prelude}
@compute @workgroup_size(${WG})
fn main(${GENERIC_BUILTINS}) {
  let i = ${GENERIC_LINEAR} * ${WG}u + lid;
  if (i >= dims.x) { return; }
${loads.join("\n")}
  out[i] = ${outDtype}(${expr});
}
`;
    return { code, label };
  });
  const bufs: PooledBuffer[] = [];
  for (const t of inputs) bufs.push(t.buffer);
  bufs.push(out.buffer, dimsBuffer(out.size, lanes[0] ?? 0, lanes[1] ?? 0, lanes[2] ?? 0));
  runtime().dispatch(kernel, bufs);
  return out;
}
