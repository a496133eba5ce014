/**
 * The capture wrapper shared by train/captured_world_step.ts and train/captured_combo_step.ts:
 * a training step `(batch, stepSeed, tokens?)` under capture and replay
 * (kernels/core/capture.ts), the step seed a per-call value read at each replay.
 *
 * @module
 */
import type { Tensor } from "../kernels/core/tensor.ts";
import { capture, type CaptureStats } from "../kernels/core/capture.ts";

/** Replay options of a captured training step. */
export interface SeededStepOptions {
  /** false: run every step eagerly (`--no-replay`). Default true. */
  replay?: boolean;
  /** Throw when the step cannot be replayed instead of running it eagerly (tests). */
  strict?: boolean;
}

/** A captured training step: one optimizer step on `batch` with dropout seed `stepSeed`. */
export interface SeededStep<B, P> {
  (batch: B, stepSeed: number, tokens?: Tensor): P;
  stats(): CaptureStats;
  /** Free the captured buffers (the model and optimizer stay valid). */
  dispose(): void;
}

/**
 * Capture `run` as a {@link SeededStep}. `fields` names the batch and token inputs as the
 * capture sees them (they appear in the shape keys of its fallback messages).
 * @param name names the step in capture messages.
 * @param run the eager step; `stepSeed()` reads the current call's seed (also on a replay).
 */
export function captureSeededStep<B, P>(
  name: string,
  fields: readonly [batch: string, tokens: string],
  opts: SeededStepOptions,
  run: (batch: B, stepSeed: () => number, tokens: Tensor | undefined) => P,
): SeededStep<B, P> {
  const [batchKey, tokensKey] = fields;
  type Inputs = Record<string, unknown> & { stepSeed: number };
  const captured = capture<Inputs, P>(
    (inputs, current) =>
      run(
        inputs[batchKey] as B,
        // Read at each replay: the new call's seed.
        () => current().stepSeed,
        inputs[tokensKey] as Tensor | undefined,
      ),
    { name, replay: opts.replay, strict: opts.strict, dynamic: ["stepSeed"] },
  );
  const step =
    ((batch: B, stepSeed: number, tokens?: Tensor) =>
      captured({ [batchKey]: batch, stepSeed, [tokensKey]: tokens })) as SeededStep<B, P>;
  step.stats = captured.stats;
  step.dispose = captured.dispose;
  return step;
}
