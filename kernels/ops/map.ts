/**
 * The generic elementwise kernel: any number of inputs broadcast (numpy rules) to one output,
 * combined by a WGSL expression over `a`, `b`, `c`, ... (each loaded as f32). Shapes and
 * strides are baked into the source, so the index math is all constants.
 */
import type { DType } from "../core/dtype.ts";
import { runtime } from "../core/runtime.ts";
import type { PooledBuffer } from "../core/buffer_pool.ts";
import { internId, planCache } from "../core/plan_cache.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, enables, grid, linearWorkgroup, stridesOf } from "../codegen/wgsl.ts";

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

/** WGSL that computes the flat index into an input of `inShape` broadcast to `outShape`. */
function inputIndex(inShape: readonly number[], outShape: readonly number[]): string {
  const same = inShape.length === outShape.length && inShape.every((d, i) => d === outShape[i]);
  if (same) return "i";
  const outStrides = stridesOf(outShape);
  const inStrides = stridesOf(inShape);
  const offset = outShape.length - inShape.length;
  const terms: string[] = [];
  for (let k = 0; k < outShape.length; k++) {
    const ki = k - offset;
    if (ki < 0 || inShape[ki] === 1 || outShape[k] === 1) continue;
    const coord = k === 0
      ? `(i / ${outStrides[k]}u)`
      : `((i / ${outStrides[k]}u) % ${outShape[k]}u)`;
    terms.push(inStrides[ki] === 1 ? coord : `${coord} * ${inStrides[ki]}u`);
  }
  return terms.length ? terms.join(" + ") : "0u";
}

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
  let key = `map|${label}|${expr}|${outDtype}|${internId(prelude)}|${exactInts}|${shape}`;
  for (const t of inputs) key += `|${t.dtype}${t.shape}`;
  const kernel = planCache(key, () => {
    const decls = inputs.map((t, k) => binding(k, `in${k}`, t.dtype));
    decls.push(binding(inputs.length, "out", outDtype, true));
    const loads = inputs.map((t, k) => {
      const raw = `in${k}[${inputIndex(t.shape, shape)}]`;
      // Integer data copied to the same dtype stays exact (no round trip through f32).
      const isInt = t.dtype === "i32" || t.dtype === "u32";
      const exact = isInt && (t.dtype === outDtype || exactInts);
      return `  let ${NAMES[k]} = ${exact ? raw : `f32(${raw})`};`;
    });
    const code = `${enables(outDtype, ...inputs.map((t) => t.dtype))}${decls.join("\n")}
${prelude}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = ${linearWorkgroup(groups)} * ${WG}u + lid;
  if (i >= ${out.size}u) { return; }
${loads.join("\n")}
  out[i] = ${outDtype}(${expr});
}
`;
    return { code, label, workgroups: grid(groups) };
  });
  const bufs: PooledBuffer[] = [];
  for (const t of inputs) bufs.push(t.buffer);
  bufs.push(out.buffer);
  runtime().dispatch(kernel, bufs);
  return out;
}
