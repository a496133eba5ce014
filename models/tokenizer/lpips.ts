/**
 * LPIPS perceptual distance (Zhang et al. 2018, the `lpips` package, net="vgg", v0.1) on the
 * engine: VGG16 features up to relu5_3, unit-normalized over channels at relu1_2, relu2_2,
 * relu3_3, relu4_3 and relu5_3, squared differences weighted per channel by the linear heads
 * (1x1 convolutions without bias), averaged over pixels and summed over the five layers.
 *
 * Inputs are frames in [-1, 1]; grayscale frames are replicated to 3 channels, then the
 * package's ScalingLayer maps them to VGG's input statistics: (x - shift) / scale with
 * shift = [-0.030, -0.088, -0.188], scale = [0.458, 0.448, 0.450].
 *
 * Weights come from a user-supplied safetensors file (f32) with these names:
 *   vgg.features.{i}.weight [out, in, 3, 3] and vgg.features.{i}.bias [out] for the 13
 *     convolutions of torchvision's vgg16().features, i in 0 2 5 7 10 12 14 17 19 21 24 26 28
 *     (channels 3-64-64 | 64-128-128 | 128-256-256-256 | 256-512-512-512 | 512-512-512-512;
 *     3x3, padding 1; ReLU after each; 2x2 max pooling before 5, 10, 17 and 24)
 *   lin0.weight [1, 64, 1, 1], lin1 [1, 128, 1, 1], lin2 [1, 256, 1, 1], lin3 [1, 512, 1, 1],
 *     lin4 [1, 512, 1, 1]
 * Produced in Python (torch, torchvision, lpips, safetensors) by:
 *
 *   import torch, torchvision, lpips
 *   from safetensors.torch import save_file
 *   vgg = torchvision.models.vgg16(weights="IMAGENET1K_V1").features
 *   heads = lpips.LPIPS(net="vgg")  # downloads VGG and loads the v0.1 linear heads
 *   t = {f"vgg.features.{k}": v for k, v in vgg.state_dict().items()}
 *   t |= {f"lin{i}.weight": getattr(heads, f"lin{i}").model[1].weight for i in range(5)}
 *   save_file({k: v.detach().float().contiguous() for k, v in t.items()}, "lpips_vgg16.safetensors")
 *
 * The network is frozen: its parameters never require gradients, but gradients flow through
 * it to the inputs (the tokenizer's reconstruction).
 *
 * The authors' tokenizer.pt holds this network as `lpips.*`; `deno task import` writes it in
 * these names (checkpoint/jowa_tokenizer_map.ts). Departure from their code: their
 * `LPIPS(use_dropout=True)` has Dropout(0.5) before each linear head, active while the
 * tokenizer trains (a stochastic, unbiased perceptual term); ours has none.
 *
 * @module
 */
import {
  add,
  addScalar,
  concat,
  conv2d,
  div,
  maxPool2d,
  mean,
  mul,
  relu,
  reshape,
  sqrt,
  sub,
  sum,
} from "../../kernels/ops/mod.ts";
import { keep, type Tensor, tensor } from "../../kernels/core/tensor.ts";
import { checkNames, readSafetensors, type SafetensorsFile } from "../safetensors/mod.ts";

/** torchvision vgg16().features: conv indices with [in, out] channels; pools before some. */
export const VGG16_CONVS: readonly { index: number; cin: number; cout: number; pool: boolean }[] = [
  [0, 3, 64],
  [2, 64, 64],
  [5, 64, 128],
  [7, 128, 128],
  [10, 128, 256],
  [12, 256, 256],
  [14, 256, 256],
  [17, 256, 512],
  [19, 512, 512],
  [21, 512, 512],
  [24, 512, 512],
  [26, 512, 512],
  [28, 512, 512],
].map(([index, cin, cout]) => ({ index, cin, cout, pool: [5, 10, 17, 24].includes(index) }));

/** Conv indices whose ReLU output feeds an LPIPS head (relu1_2 ... relu5_3). */
export const LPIPS_TAPS: readonly number[] = [2, 7, 14, 21, 28];
/** Channels of the five heads. */
export const LPIPS_CHANNELS: readonly number[] = [64, 128, 256, 512, 512];

/** Every expected tensor name with its shape. */
export function lpipsParameterShapes(): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const c of VGG16_CONVS) {
    out.set(`vgg.features.${c.index}.weight`, [c.cout, c.cin, 3, 3]);
    out.set(`vgg.features.${c.index}.bias`, [c.cout]);
  }
  LPIPS_CHANNELS.forEach((ch, i) => out.set(`lin${i}.weight`, [1, ch, 1, 1]));
  return out;
}

const SHIFT = [-0.030, -0.088, -0.188];
const SCALE = [0.458, 0.448, 0.450];

/** LPIPS-VGG16 with weights on the GPU. */
export class Lpips {
  readonly #w: Map<string, Tensor>;
  readonly #shift: Tensor;
  readonly #scale: Tensor;

  /** From named f32 arrays (names and shapes as `lpipsParameterShapes()`). */
  constructor(values: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>) {
    checkNames(lpipsParameterShapes(), values);
    this.#w = new Map([...values].map(([n, v]) => [n, keep(tensor(v.data, v.shape))]));
    this.#shift = keep(tensor(SHIFT, [1, 3, 1, 1]));
    this.#scale = keep(tensor(SCALE, [1, 3, 1, 1]));
  }

  /** Load a safetensors file written as the module comment describes. */
  static async load(path: string): Promise<Lpips> {
    const file: SafetensorsFile = await readSafetensors(path);
    checkNames(lpipsParameterShapes(), file);
    const values = new Map(
      [...file.tensors].map(([n, t]) => [n, { shape: t.shape, data: t.toFloat32() }]),
    );
    return new Lpips(values);
  }

  /** Per-layer terms: five tensors [N] (spatial means of the weighted squared differences). */
  layerDistances(x: Tensor, y: Tensor): Tensor[] {
    const n = x.shape[0];
    const fx = this.features(x);
    const fy = this.features(y);
    return fx.map((a, i) => {
      const d = sub(unitNormalize(a), unitNormalize(fy[i]));
      const h = conv2d(mul(d, d), this.#w.get(`lin${i}.weight`)!); // [N, 1, H, W]
      const [, , H, W] = h.shape;
      return mean(reshape(h, [n, H * W]), 1);
    });
  }

  /** LPIPS distance per frame, [N], for frames [N, 1 or 3, H, W] in [-1, 1]. */
  distance(x: Tensor, y: Tensor): Tensor {
    return this.layerDistances(x, y).reduce((a, b) => add(a, b));
  }

  /** The five tapped feature maps of one batch. */
  features(x: Tensor): Tensor[] {
    const rgb = x.shape[1] === 1 ? concat([x, x, x], 1) : x;
    let h = div(sub(rgb, this.#shift), this.#scale);
    const taps: Tensor[] = [];
    for (const c of VGG16_CONVS) {
      if (c.pool) h = maxPool2d(h, 2);
      const w = this.#w.get(`vgg.features.${c.index}.weight`)!;
      const b = this.#w.get(`vgg.features.${c.index}.bias`)!;
      h = relu(conv2d(h, w, b, { padding: 1 }));
      if (LPIPS_TAPS.includes(c.index)) taps.push(h);
    }
    return taps;
  }

  /** Free the weights. */
  dispose(): void {
    for (const t of this.#w.values()) t.dispose();
    this.#shift.dispose();
    this.#scale.dispose();
  }
}

/**
 * x / (sqrt(sum over channels of x^2) + 1e-10), as lpips.normalize_tensor. The 1e-20 under
 * the root changes no f32 value but keeps the gradient finite where a feature vector is all
 * zeros (after a ReLU, e.g. on black Atari backgrounds).
 */
function unitNormalize(f: Tensor): Tensor {
  return div(f, addScalar(sqrt(addScalar(sum(mul(f, f), 1, true), 1e-20)), 1e-10));
}
