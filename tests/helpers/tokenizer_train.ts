/**
 * Training the tokenizer: the optimizer step, the optional LPIPS term, and synthetic sprite
 * frames for tests and the CPU demo.
 *
 *   deno run -A models/tokenizer_train.ts --config tiny --steps 40   # synthetic sprites
 *   deno run -A models/tokenizer_train.ts --lpips lpips_vgg16.safetensors ...
 *
 * Without an LPIPS weights file the loss is L1 + codebook + commitment, and that is logged.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { backward } from "../../kernels/core/autograd.ts";
import { AdamW } from "../../kernels/nn/optim.ts";
import { initRuntime } from "../../kernels/core/runtime.ts";
import { readAll, type Tensor, tidy } from "../../kernels/core/tensor.ts";
import { Lpips } from "../../models/tokenizer/lpips.ts";
import { type Frames, Tokenizer, TOKENIZER_CONFIGS } from "../../models/tokenizer/model.ts";

/** Loads LPIPS weights, or logs that training goes on without the perceptual term. */
export async function loadPerceptual(
  path: string | undefined,
  log: (msg: string) => void = console.log,
): Promise<Lpips | null> {
  if (!path) {
    log("tokenizer: no LPIPS weights file given; training without the perceptual term");
    return null;
  }
  const lpips = await Lpips.load(path);
  log(`tokenizer: LPIPS-VGG16 weights from ${path}`);
  return lpips;
}

/** Scalar loss terms of one step (GPU scalars; read them when you need them). */
export interface StepLosses {
  loss: Tensor;
  reconLoss: Tensor;
  codebookLoss: Tensor;
  commitmentLoss: Tensor;
  perceptualLoss: Tensor | null;
}

/** Adam on every tokenizer parameter (jowa.md: Adam, lr 1e-4; no weight decay). */
export class TokenizerTrainer {
  readonly opt: AdamW;

  constructor(readonly model: Tokenizer, opts: { lr?: number; maxGradNorm?: number } = {}) {
    this.opt = new AdamW(model.parameters(), {
      lr: opts.lr ?? 1e-4,
      weightDecay: 0,
      maxGradNorm: opts.maxGradNorm,
    });
  }

  /** One optimizer step on a batch; records everything, reads nothing back. */
  step(frames: Frames): StepLosses {
    return tidy(() => {
      const o = this.model.forward(frames);
      this.opt.zeroGrad();
      backward(o.loss);
      this.opt.update();
      return {
        loss: o.loss,
        reconLoss: o.reconLoss,
        codebookLoss: o.codebookLoss,
        commitmentLoss: o.commitmentLoss,
        perceptualLoss: o.perceptualLoss,
      };
    });
  }
}

/**
 * `count` grayscale frames (R x R bytes each) of a bright `size` x `size` square on a dark
 * background, at positions on a 4 x ceil(count / 4) grid spread over the frame.
 */
export function spriteFrames(count: number, R = 84, size = 28): Uint8Array {
  const out = new Uint8Array(count * R * R).fill(20);
  const rows = Math.ceil(count / 4);
  for (let f = 0; f < count; f++) {
    const x0 = Math.round(((f % 4) * (R - size)) / 3);
    const y0 = Math.round((Math.floor(f / 4) * (R - size)) / Math.max(1, rows - 1));
    for (let y = y0; y < y0 + size; y++) {
      out.fill(230, f * R * R + y * R + x0, f * R * R + y * R + x0 + size);
    }
  }
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      config: { type: "string", default: "tiny" },
      steps: { type: "string", default: "40" },
      batch: { type: "string", default: "4" },
      lr: { type: "string", default: "1e-3" },
      lpips: { type: "string" },
    },
  });
  await initRuntime();
  const cfg = TOKENIZER_CONFIGS[values.config!];
  if (!cfg) throw new Error(`unknown config ${values.config}`);
  const model = new Tokenizer(cfg);
  const lpips = await loadPerceptual(values.lpips);
  if (lpips) model.perceptual = lpips;
  const frames = spriteFrames(16);
  const B = Number(values.batch);
  const per = cfg.resolution * cfg.resolution;
  await model.seedCodebook(frames.subarray(0, B * per));
  const trainer = new TokenizerTrainer(model, { lr: Number(values.lr) });
  const t0 = performance.now();
  for (let s = 0; s < Number(values.steps); s++) {
    const start = (s * B) % 16;
    const l = trainer.step(frames.subarray(start * per, (start + B) * per));
    const [loss, rec] = await readAll([l.loss, l.reconLoss]);
    console.log(
      `step ${s + 1}: loss ${loss[0].toFixed(4)}, L1 ${rec[0].toFixed(4)} (${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s)`,
    );
    for (const t of Object.values(l)) t?.dispose();
  }
}
