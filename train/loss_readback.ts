/**
 * Batched readback of per-step losses: each step's scalar loss tensors (and a copy of the
 * optimizer's gradient-norm stats) are kept on the GPU and read back together every N steps —
 * never inside a step. The readback is also where a non-finite loss is detected: the first
 * bad (step, part) is reported so the run can stop before a checkpoint records bad weights.
 *
 * @module
 */
import { readAll, type Tensor } from "../kernels/core/tensor.ts";

/** One step's values after readback. */
export interface StepValues {
  step: number;
  stage: 1 | 2;
  losses: Record<string, number>;
  /** Global gradient norm before clipping, per optimizer. */
  gradNorm: Record<string, number>;
}

/** The first non-finite value of a readback. */
export interface NonFinite {
  step: number;
  stage: 1 | 2;
  /** Loss part (or `grad_norm.<optimizer>`) that was not finite. */
  part: string;
  value: number;
}

/** Loss names that are sums of other parts. */
const AGGREGATES = new Set(["total", "world", "action", "tok_total"]);

interface Pending {
  step: number;
  stage: 1 | 2;
  losses: [string, Tensor][];
  norms: [string, Tensor][];
}

/** Collects the steps' scalar tensors until {@link LossReadback.flush}. */
export class LossReadback {
  #pending: Pending[] = [];

  /** Steps waiting for readback. */
  get size(): number {
    return this.#pending.length;
  }

  /**
   * Keep one step's tensors (they must be `keep()`-ed or returned from its `tidy`; this
   * class disposes them at flush). `norms` are [2] clip stats copies: [norm, scale].
   */
  push(
    step: number,
    stage: 1 | 2,
    losses: Record<string, Tensor>,
    norms: Record<string, Tensor> = {},
  ): void {
    this.#pending.push({
      step,
      stage,
      losses: Object.entries(losses),
      norms: Object.entries(norms),
    });
  }

  /** Read every pending step back with one map; returns their values and the first bad one. */
  async flush(): Promise<{ steps: StepValues[]; nonFinite: NonFinite | null }> {
    const pending = this.#pending;
    this.#pending = [];
    const tensors = pending.flatMap((p) => [...p.losses, ...p.norms].map(([, t]) => t));
    const values = tensors.length ? await readAll(tensors) : [];
    for (const t of tensors) t.dispose();
    let k = 0;
    let nonFinite: NonFinite | null = null;
    const steps = pending.map((p) => {
      const losses: Record<string, number> = {};
      const gradNorm: Record<string, number> = {};
      for (const [name] of p.losses) losses[name] = values[k++][0];
      for (const [name] of p.norms) gradNorm[name] = values[k++][0];
      if (!nonFinite) {
        // Name the most specific part: sums (total, world, ...) are non-finite whenever one
        // of their terms is.
        const entries = Object.entries(losses);
        const bad = [
          ...entries.filter(([n]) => !AGGREGATES.has(n)),
          ...entries.filter(([n]) => AGGREGATES.has(n)),
        ].find(([, v]) => !Number.isFinite(v)) ??
          Object.entries(gradNorm).map(([n, v]) => [`grad_norm.${n}`, v] as [string, number])
            .find(([, v]) => !Number.isFinite(v));
        if (bad) nonFinite = { step: p.step, stage: p.stage, part: bad[0], value: bad[1] };
      }
      return { step: p.step, stage: p.stage, losses, gradNorm };
    });
    return { steps, nonFinite };
  }

  /** Drop pending tensors without reading them. */
  discard(): void {
    for (const p of this.#pending) for (const [, t] of [...p.losses, ...p.norms]) t.dispose();
    this.#pending = [];
  }
}
