/**
 * 2-D convolution on the tape (NCHW input, OIHW weights, PyTorch's conventions), over the
 * implicit-GEMM kernels of codegen/conv/plan.ts. Backward: the input gradient is a transposed
 * convolution and the weight gradient a GEMM over N*OH*OW, both implicit GEMMs too; the bias
 * gradient sums the output gradient over batch and pixels.
 */
import { isGradEnabled, record } from "../core/autograd.ts";
import { type ConvGeometry, convOutputSize, planConv } from "../codegen/conv/plan.ts";
import { runtime } from "../core/runtime.ts";
import { Tensor } from "../core/tensor.ts";
import { planCache } from "../core/plan_cache.ts";
import { grid } from "../codegen/wgsl.ts";
import { dimsBuffer } from "./dims.ts";
import { sum } from "./reduce.ts";

/** Options of `conv2d`. */
export interface Conv2dOptions {
  /** Same stride along both axes. Default 1. */
  stride?: number;
  /** Zero padding: one value for all sides, or [top, bottom, left, right]. Default 0. */
  padding?: number | [number, number, number, number];
}

/** Geometry of a convolution of `x` by `w`; validates shapes. */
export function convGeometry(
  x: Tensor,
  w: Tensor,
  opts: Conv2dOptions = {},
): ConvGeometry {
  if (x.rank !== 4 || w.rank !== 4 || x.shape[1] !== w.shape[1]) {
    throw new Error(`conv2d: input [${x.shape}] and weight [${w.shape}] must be NCHW and OIHW`);
  }
  if (x.dtype !== "f32" || w.dtype !== "f32") throw new Error("conv2d: f32 tensors only");
  const p = opts.padding ?? 0;
  const pad: [number, number, number, number] = typeof p === "number" ? [p, p, p, p] : [...p];
  const [N, C, H, W] = x.shape;
  const [O, , kh, kw] = w.shape;
  const g = { N, C, H, W, O, kh, kw, stride: opts.stride ?? 1, pad };
  convOutputSize(g);
  return g;
}

/** y = conv(x [N, C, H, W], w [O, C, kh, kw]) (+ bias [O]) -> [N, O, OH, OW]. */
export function conv2d(
  x: Tensor,
  w: Tensor,
  bias?: Tensor | null,
  opts: Conv2dOptions = {},
): Tensor {
  const g = convGeometry(x, w, opts);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== g.O)) {
    throw new Error(`conv2d: bias [${bias.shape}] must be [${g.O}]`);
  }
  const [OH, OW] = convOutputSize(g);
  const rt = runtime();
  const y = Tensor.empty([g.N, g.O, OH, OW]);
  const bufs = [w.buffer, x.buffer, y.buffer];
  if (bias) bufs.push(bias.buffer);
  if (!isGradEnabled()) {
    // Inference (tokenizer encode): one pipeline for every batch; the GEMM's N = batch x
    // pixels is a run-time dim and the grid follows it.
    const key = `convd|${g.C}|${g.H}|${g.W}|${g.O}|${g.kh}|${g.kw}|${g.stride}|${g.pad}|${!!bias}`;
    const lim = rt.ctx.limits;
    // Only what does not depend on the batch is cached under the batch-free key.
    const plan = planCache(key, () => {
      const p = planConv(g, "forward", lim, { bias: !!bias, dynamicN: true });
      return { code: p.code, label: p.label, tile: p.tile, M: p.M };
    });
    const kernel = planCache(`${key}|${g.N}`, () => {
      const n = Math.ceil(plan.M / plan.tile.TM) * Math.ceil((g.N * OH * OW) / plan.tile.TN);
      return {
        code: plan.code,
        label: plan.label,
        workgroups: grid(n, lim.maxComputeWorkgroupsPerDimension),
      };
    });
    bufs.push(dimsBuffer(g.N * OH * OW));
    rt.dispatch(kernel, bufs);
  } else rt.dispatch(planConv(g, "forward", rt.ctx.limits, { bias: !!bias }), bufs);
  const inputs = bias ? [x, w, bias] : [x, w];
  return record(y, "conv2d", inputs, (gy) => {
    const dx = x.requiresGrad ? convInputGrad(g, w, gy) : null;
    const dw = w.requiresGrad ? convWeightGrad(g, x, gy) : null;
    const db = bias?.requiresGrad ? sum(sum(gy.view([g.N, g.O, OH * OW]), 2), 0) : null;
    return bias ? [dx, dw, db] : [dx, dw];
  });
}

/** dx: the transposed convolution of the output gradient. */
export function convInputGrad(g: ConvGeometry, w: Tensor, gy: Tensor): Tensor {
  const rt = runtime();
  const dx = Tensor.empty([g.N, g.C, g.H, g.W]);
  const plan = planConv(g, "input", rt.ctx.limits);
  rt.dispatch(plan, [w.buffer, gy.buffer, dx.buffer]);
  return dx;
}

/** dw: output gradient times the im2col view of the input (split over K when it pays). */
export function convWeightGrad(g: ConvGeometry, x: Tensor, gy: Tensor): Tensor {
  const rt = runtime();
  const plan = planConv(g, "weight", rt.ctx.limits, { splitK: "auto" });
  const shape = [g.O, g.C, g.kh, g.kw];
  const out = Tensor.empty(plan.parts > 1 ? [plan.parts, g.O * g.C * g.kh * g.kw] : shape);
  rt.dispatch(plan, [gy.buffer, x.buffer, out.buffer]);
  if (plan.parts === 1) return out;
  const summed = sum(out, 0);
  const dw = summed.view(shape);
  summed.dispose();
  out.dispose();
  return dw;
}
