/**
 * Nearest-neighbour upsampling of NCHW images by integer factors (VQGAN's decoder
 * `F.interpolate(x, scale_factor=f, mode="nearest")`). The backward sums each fy x fx block
 * of the output gradient into its source pixel.
 */
import { record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, grid } from "../codegen/wgsl.ts";
import { PIXEL_WG as WG, pixelMain } from "./_pixel_wgsl.ts";

/** x [N, C, H, W] -> [N, C, H * fy, W * fx]; `factor` is one value or [fy, fx]. */
export function upsampleNearest(x: Tensor, factor: number | [number, number]): Tensor {
  const [fy, fx] = typeof factor === "number" ? [factor, factor] : factor;
  if (x.rank !== 4 || x.dtype !== "f32") {
    throw new Error(`upsampleNearest: input [${x.shape}] must be f32 NCHW`);
  }
  if (![fy, fx].every((f) => Number.isInteger(f) && f >= 1)) {
    throw new Error(`upsampleNearest: factors must be integers >= 1, got [${fy}, ${fx}]`);
  }
  const [N, C, H, W] = x.shape;
  const OH = H * fy, OW = W * fx;
  const y = Tensor.empty([N, C, OH, OW]);
  const groups = Math.ceil(y.size / WG);
  // One thread per output pixel: i -> (plane, oy, ox) -> source (plane, oy / fy, ox / fx).
  const code = `${binding(0, "x", "f32")}
${binding(1, "y", "f32", true)}
${pixelMain(groups, y.size, OH, OW, "oy", "ox")}
  y[i] = x[(plane * ${H}u + oy / ${fy}u) * ${W}u + ox / ${fx}u];
}
`;
  if (y.size > 0) {
    runtime().dispatch({ code, label: "upsampleNearest", workgroups: grid(groups) }, [
      x.buffer,
      y.buffer,
    ]);
  }
  return record(y, "upsampleNearest", [x], (g) => [upsampleGrad(g, x.shape, fy, fx)]);
}

/** Sum of each fy x fx block of `g` (straight-line over the block). */
function upsampleGrad(g: Tensor, shape: readonly number[], fy: number, fx: number): Tensor {
  const [N, C, H, W] = shape;
  const OW = W * fx;
  const dx = Tensor.empty([N, C, H, W]);
  const groups = Math.ceil(dx.size / WG);
  const terms: string[] = [];
  for (let dy = 0; dy < fy; dy++) {
    for (let dxx = 0; dxx < fx; dxx++) terms.push(`g[o + ${dy * OW + dxx}u]`);
  }
  const code = `${binding(0, "g", "f32")}
${binding(1, "dx", "f32", true)}
${pixelMain(groups, dx.size, H, W, "y", "x")}
  let o = (plane * ${H * fy}u + y * ${fy}u) * ${OW}u + x * ${fx}u;
  dx[i] = ${terms.join(" + ")};
}
`;
  if (dx.size > 0) {
    runtime().dispatch({ code, label: "upsampleNearest.grad", workgroups: grid(groups) }, [
      g.buffer,
      dx.buffer,
    ]);
  }
  return dx;
}
