/**
 * 2-D max pooling over NCHW images with a square window and stride equal to the window (as
 * VGG's `MaxPool2d(2, 2)`; trailing rows/columns that do not fill a window are dropped).
 * The backward routes each output gradient to the first maximum of its window.
 */
import { record } from "../core/autograd.ts";
import { runtime } from "../core/runtime.ts";
import { Tensor } from "../core/tensor.ts";
import { binding, grid } from "../codegen/wgsl.ts";
import { PIXEL_WG as WG, pixelMain } from "./_pixel_wgsl.ts";

/** x [N, C, H, W] -> [N, C, floor(H / k), floor(W / k)]. */
export function maxPool2d(x: Tensor, k = 2): Tensor {
  if (x.rank !== 4 || x.dtype !== "f32") {
    throw new Error(`maxPool2d: input [${x.shape}] must be f32 NCHW`);
  }
  const [N, C, H, W] = x.shape;
  const OH = Math.floor(H / k), OW = Math.floor(W / k);
  if (!Number.isInteger(k) || k < 1 || OH < 1 || OW < 1) {
    throw new Error(`maxPool2d: window ${k} does not fit [${x.shape}]`);
  }
  const y = Tensor.empty([N, C, OH, OW]);
  const arg = Tensor.empty([N, C, OH, OW], "u32"); // window offset of the maximum
  const groups = Math.ceil(y.size / WG);
  const taps: string[] = [];
  for (let dy = 0; dy < k; dy++) {
    for (let dx = 0; dx < k; dx++) {
      if (dy + dx === 0) continue;
      // Strictly greater: the first maximum wins, like PyTorch.
      taps.push(
        `{ let v = x[o + ${dy * W + dx}u]; if (v > m) { m = v; a = ${dy * k + dx}u; } }`,
      );
    }
  }
  const code = `${binding(0, "x", "f32")}
${binding(1, "y", "f32", true)}
${binding(2, "arg", "u32", true)}
${pixelMain(groups, y.size, OH, OW, "oy", "ox")}
  let o = (plane * ${H}u + oy * ${k}u) * ${W}u + ox * ${k}u;
  var m = x[o];
  var a = 0u;
  ${taps.join("\n  ")}
  y[i] = m;
  arg[i] = a;
}
`;
  runtime().dispatch({ code, label: "maxPool2d", workgroups: grid(groups) }, [
    x.buffer,
    y.buffer,
    arg.buffer,
  ]);
  const out = record(y, "maxPool2d", [x], (g) => [maxPoolGrad(g, arg, x.shape, k)]);
  if (!out.node) arg.dispose();
  return out;
}

/** Each input pixel takes its window's gradient when it was the window's maximum. */
function maxPoolGrad(g: Tensor, arg: Tensor, shape: readonly number[], k: number): Tensor {
  const [N, C, H, W] = shape;
  const OH = Math.floor(H / k), OW = Math.floor(W / k);
  const dx = Tensor.empty([N, C, H, W]);
  const groups = Math.ceil(dx.size / WG);
  const code = `${binding(0, "g", "f32")}
${binding(1, "arg", "u32")}
${binding(2, "dx", "f32", true)}
${pixelMain(groups, dx.size, H, W, "y", "x")}
  let oy = y / ${k}u;
  let ox = x / ${k}u;
  var v = 0.0;
  if (oy < ${OH}u && ox < ${OW}u) {
    let o = (plane * ${OH}u + oy) * ${OW}u + ox;
    if (arg[o] == (y % ${k}u) * ${k}u + x % ${k}u) { v = g[o]; }
  }
  dx[i] = v;
}
`;
  runtime().dispatch({ code, label: "maxPool2d.grad", workgroups: grid(groups) }, [
    g.buffer,
    arg.buffer,
    dx.buffer,
  ]);
  return dx;
}
