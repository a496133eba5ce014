/**
 * The data-parallel wiring pretraining (train/pretrainer.ts) and fine-tuning
 * (train/finetuner.ts) share: rank 0's state broadcast at the start of a run, and a step's
 * gradient average followed by the optimizers' update.
 *
 * @module
 */
import { keep, type Tensor, tidy } from "../kernels/core/tensor.ts";
import type { AdamW } from "../kernels/nn/optim.ts";
import type { ModulePart } from "../checkpoint/train_checkpoint.ts";
import type { DataParallel } from "./data_parallel.ts";
import { snapshot, type StepTensors } from "./trainer.ts";

/**
 * Rank 0's weights (each module's parameters and extra tensors: the target head) and, for each
 * of `optimizers` (a resume; none: weights only), its moments, step and learning rate, on every
 * rank.
 */
export async function broadcastRunState(
  dp: DataParallel,
  modules: readonly ModulePart[],
  optimizers: readonly AdamW[],
): Promise<void> {
  const tensors: Tensor[] = [];
  for (const m of modules) {
    tensors.push(...m.module.parameters(), ...(m.extra ?? []).map(([, t]) => t));
  }
  for (const o of optimizers) {
    const s = o.stateTensors();
    tensors.push(...s.m, ...s.v);
  }
  await dp.broadcastTensors(tensors);
  const hyper = await dp.broadcastJson(optimizers.map((o) => ({ step: o.step, lr: o.lr })));
  optimizers.forEach((o, i) => Object.assign(o, hyper[i]));
}

/**
 * After a step's forward and backward (no update): average the gradients of `tokOpt` (the
 * tokenizer's optimizer when the tokenizer trains this step, else null) and `wmOpt`, and the
 * loss scalars of `kept.out`, over the ranks; then both optimizers update, and their clip-norm
 * snapshots join `kept.norms` (kept, tokenizer first).
 * @param stop this rank's stop request (Ctrl-C).
 * @returns whether any rank asked to stop.
 */
export async function averageAndUpdate(
  dp: DataParallel,
  tokOpt: AdamW | null,
  wmOpt: AdamW,
  kept: StepTensors,
  stop: boolean,
): Promise<boolean> {
  const anyStop = await dp.averageGradients(
    [...(tokOpt?.params ?? []), ...wmOpt.params],
    kept.out,
    stop,
  );
  const norms = tidy(() => {
    const n: Record<string, Tensor> = {};
    if (tokOpt) {
      tokOpt.update();
      n.tokenizer = snapshot(tokOpt.clipStats);
    }
    wmOpt.update();
    n.world_action = snapshot(wmOpt.clipStats);
    return n;
  });
  for (const t of Object.values(norms)) keep(t);
  Object.assign(kept.norms, norms);
  return anyStop;
}
