/**
 * Dynamic loss scaling for f16 training (`--precision f16`), entirely on the GPU so that it
 * works inside a captured step (kernels/core/capture.ts: no readback in a step) and is
 * deterministic.
 *
 * The loss is multiplied by the scale S before backward ({@link LossScaler.scaleLoss}), so
 * small gradients survive the f16 rounding where they enter the products. The optimizer's
 * clip kernel (optim.ts) then runs {@link lossScaleGuardWgsl}: the global norm of the scaled
 * gradients tells in one number whether any gradient is inf or NaN (an f16 overflow becomes
 * inf, see kernels/codegen/matmul/f16.ts); if so the step is skipped (the AdamW kernel reads
 * the flag and leaves weights and moments unchanged) and S halves; otherwise the gradients
 * are unscaled (the clip factor carries 1 / S) and after `growthInterval` good steps in a row S
 * doubles. As PyTorch's GradScaler, except that the optimizer's step counter (bias correction,
 * host side) still advances on a skipped step. The optimizer's `clipStats` norm reads -1 on a
 * skipped step (a non-finite loss still stops a training run; a handled overflow does not).
 *
 * @module
 */
import { keep, type Tensor, tensor } from "../core/tensor.ts";
import { mul } from "../ops/elementwise.ts";
import { f32 } from "../codegen/wgsl.ts";
import { assignValues } from "./module.ts";

/** Dynamic loss-scale settings (PyTorch's GradScaler defaults). */
export interface LossScaleOptions {
  /** Starting scale (default 2^16). */
  initScale?: number;
  /** Good steps in a row before the scale doubles (default 2000). */
  growthInterval?: number;
  /** Bounds of the scale (default 1 and 2^24). */
  minScale?: number;
  maxScale?: number;
}

/** The loss scale and its counters, on the GPU. */
export class LossScaler {
  /** [S]. */
  readonly scale: Tensor;
  /** [good steps in a row, skipped steps in total, 1 if the last step was skipped, 0]. */
  readonly counters: Tensor;
  /** The starting scale (a checkpoint without a saved scale resumes here). */
  readonly initScale: number;
  readonly growthInterval: number;
  readonly minScale: number;
  readonly maxScale: number;

  constructor(opts: LossScaleOptions = {}) {
    const init = this.initScale = opts.initScale ?? 2 ** 16;
    this.growthInterval = opts.growthInterval ?? 2000;
    this.minScale = opts.minScale ?? 1;
    this.maxScale = opts.maxScale ?? 2 ** 24;
    if (!(init > 0) || !(this.growthInterval >= 1) || !(this.minScale > 0)) {
      throw new Error("loss scale: initScale, growthInterval and minScale must be positive");
    }
    this.scale = keep(tensor([init], [1]));
    this.counters = keep(tensor([0, 0, 0, 0], [4]));
  }

  /** Back to the starting scale with zero counters (recorded: no upload races a step). */
  reset(): void {
    assignValues(this.scale, new Float32Array([this.initScale]));
    assignValues(this.counters, new Float32Array(4));
  }

  /** loss * S (the root to call `backward` on; log the unscaled loss). */
  scaleLoss(loss: Tensor): Tensor {
    if (loss.size !== 1) throw new Error(`scaleLoss: a scalar loss, got [${loss.shape}]`);
    // The view lives in the caller's tidy scope: mul's backward reads it.
    return mul(loss, this.scale.view(loss.shape));
  }

  /** Scale, good steps in a row, skipped steps and whether the last step was skipped. */
  async read(): Promise<{ scale: number; good: number; skipped: number; lastSkipped: boolean }> {
    const [s, c] = await Promise.all([this.scale.read(), this.counters.read()]);
    return { scale: s[0], good: c[0], skipped: c[1], lastSkipped: c[2] === 1 };
  }

  dispose(): void {
    this.scale.dispose();
    this.counters.dispose();
  }
}

/**
 * WGSL statements for the clip kernel's single thread: given `norm` (of the scaled
 * gradients), bindings `ls` (the scale) and `lc` (the counters), and the clip's `maxNorm`,
 * write `stats` [norm of the true gradients (-1 on a skipped step), factor every gradient is
 * multiplied by, skip flag] and update the scale.
 */
export function lossScaleGuardWgsl(s: LossScaler, maxNorm: number): string {
  return `let S = ls[0];
    let un = norm / S;
    // inf or NaN anywhere makes the sum of squares inf or NaN: exponent bits all ones.
    let bad = (bitcast<u32>(un) & 0x7f800000u) == 0x7f800000u;
    // A skipped step logs its gradient norm as -1: finite, so the trainers' non-finite guard
    // (train/loss_readback.ts) does not end the run for an overflow the scaler handled.
    stats[0] = select(un, -1.0, bad);
    stats[1] = min(1.0, ${f32(maxNorm)} / (un + 1e-6)) / S;
    stats[2] = select(0.0, 1.0, bad);
    if (bad) {
      ls[0] = max(S * 0.5, ${f32(s.minScale)});
      lc[0] = 0.0;
      lc[1] = lc[1] + 1.0;
      lc[2] = 1.0;
    } else {
      lc[2] = 0.0;
      lc[0] = lc[0] + 1.0;
      if (lc[0] >= ${f32(s.growthInterval)}) {
        ls[0] = min(S * 2.0, ${f32(s.maxScale)});
        lc[0] = 0.0;
      }
    }`;
}
