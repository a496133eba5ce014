/**
 * The run management shared by pretraining (train/pretrainer.ts) and fine-tuning
 * (train/finetuner.ts): a {@link Trainer} holds the run's explicit state (global step, stage,
 * last checkpoint, stop request, last losses) and runs stages step by step, with batched loss
 * readback, JSONL metrics, the progress bar, atomic checkpoints, resume, Ctrl-C and the
 * non-finite guard. What a step computes, which modules and optimizers a checkpoint holds and
 * what else it records come from the task through {@link TrainerParts} and {@link StageSpec}.
 *
 * Checkpoint rule: a checkpoint is written only right after a readback that found every loss
 * finite, at every `ckptEvery` steps, at each stage's listed steps, and when stopped.
 *
 * @module
 */
import * as fs from "node:fs";
import { copyTensor } from "../kernels/nn/module.ts";
import type { Runtime } from "../kernels/core/runtime.ts";
import type { Tensor } from "../kernels/core/tensor.ts";
import { zeros } from "../kernels/ops/mod.ts";
import { StepProgress } from "../util/progress.ts";
import { LossReadback, type NonFinite, type StepValues } from "./loss_readback.ts";
import { MetricsLog } from "./metrics_log.ts";
import { RunDir, writeFileAtomic } from "../checkpoint/run_dir.ts";
import {
  loadTrainCheckpoint,
  type ModulePart,
  type OptimizerPart,
  saveTrainCheckpoint,
  type TrainStateJson,
} from "../checkpoint/train_checkpoint.ts";

/** Error for a run directory that cannot be started or resumed (one line, no stack). */
export class RunError extends Error {
  override name = "RunError";
}

/** How a run ended. */
export interface TrainResult {
  status: "done" | "interrupted" | "nonfinite";
  /** Last step whose update was applied (and, unless non-finite, checkpointed). */
  step: number;
  run: RunDir;
  nonFinite?: NonFinite;
  /** Checkpoint directory holding the last good state. */
  checkpoint: string | null;
}

/** Hooks of a training run. */
export interface TrainerHooks {
  /** Status lines (default: stderr). */
  log?: (line: string) => void;
  /** Stop gracefully (checkpoint, then return "interrupted") once aborted. */
  signal?: AbortSignal;
  /** Every readback's per-step values (tests). */
  onSteps?: (steps: StepValues[]) => void;
}

/**
 * Open a run directory: a new one (`config` is written; it must not exist yet) or, with
 * `resume`, an existing one with a complete checkpoint (returned). A run that never completed
 * a checkpoint (its first attempt failed or was killed early) starts over from step 0, with
 * or without `resume`, keeping its collected data (one `log` line says so). Clears a stale
 * nonfinite.json.
 */
export function openRunDir(
  root: string,
  resume: boolean,
  config: unknown,
  log: (line: string) => void = (s) => console.error(s),
): { run: RunDir; ckpt: string | null } {
  const run = new RunDir(root);
  const restart = run.neverCheckpointed();
  if (restart) {
    log(
      `${run.root}: no complete checkpoint (an earlier attempt stopped before its first); ` +
        "starting it over from step 0, keeping its collected data",
    );
    run.clearProgress();
  }
  const ckpt = resume && !restart ? run.latestCheckpoint() : null;
  if (resume && !restart) {
    if (!fs.existsSync(run.config)) throw new RunError(`${run.root}: not a run directory`);
    if (!ckpt) throw new RunError(`${run.root}: no complete checkpoint to resume from`);
  } else if (!restart && fs.existsSync(run.config)) {
    throw new RunError(`${run.root} exists: resume it with --resume ${run.root} or pick --name`);
  }
  run.create();
  if (!resume || restart) writeFileAtomic(run.config, JSON.stringify(config, null, 2) + "\n");
  fs.rmSync(run.nonfinite, { force: true });
  return { run, ckpt };
}

/** What the trainer needs from the task (called whenever a checkpoint is saved or loaded). */
export interface TrainerParts {
  /** Modules a checkpoint holds. */
  modules(): ModulePart[];
  /** Optimizers a checkpoint holds (those of the current stage). */
  optimizers(): OptimizerPart[];
  /** Checkpoint state besides step, stage and seed (sampler position, ...). */
  state(): Record<string, unknown>;
  /** Learning rates written with a stage's metrics line. */
  lrs(stage: 1 | 2): Record<string, number>;
  /** More files a checkpoint holds (name -> bytes), e.g. a replay buffer. */
  files?(): Record<string, Uint8Array>;
}

/** Settings of a {@link Trainer}. */
export interface TrainerOptions {
  run: RunDir;
  rt: Runtime;
  seed: number;
  /** Last step of the whole run. */
  total: number;
  /** First stage (before a resume restores the saved one). */
  stage: 1 | 2;
  logEvery: number;
  ckptEvery: number;
  /** Complete checkpoints kept. */
  keep: number;
  /** Testing: checkpoint and stop after this step, as Ctrl-C would (0: never). */
  stopAt: number;
  /** Progress bar label. */
  label: string;
  /** Draw the progress bar even when stderr is not a terminal. */
  progress: boolean;
  /**
   * False on the data-parallel ranks other than 0: they train in step but write nothing (no
   * checkpoint, metrics, progress bar or nonfinite.json; default true).
   */
  writes?: boolean;
  /** Loss parts shown on the progress bar besides the total. */
  shown: readonly string[];
  hooks: TrainerHooks;
}

/** The loss scalars and gradient-norm snapshots of one step (kept; read back later). */
export interface StepTensors {
  out: Record<string, Tensor>;
  norms: Record<string, Tensor>;
}

/** One stage of a run. */
export interface StageSpec {
  stage: 1 | 2;
  /** Global step at which the stage ends. */
  end: number;
  /** Steps that are checkpointed besides every `ckptEvery` (stage boundaries). */
  ckptAt: readonly number[];
  /** Record global step `step`'s work (its update included). */
  step(step: number): Promise<StepTensors>;
  /**
   * After the step, before its readback and checkpoint decision (periodic evaluation, whose
   * outcome the step's checkpoint then records).
   */
  after?(step: number): Promise<void>;
}

/** The mutable state of a run, in one place. */
export interface TrainerState {
  /** Last step whose update was recorded. */
  step: number;
  stage: 1 | 2;
  /** Newest checkpoint directory and its step (-1: none this run). */
  lastCkpt: string | null;
  lastCkptStep: number;
  /** Set by Ctrl-C (the signal) or `stopAt`. */
  stop: "interrupted" | null;
  /** Mean of each loss part at the last readback. */
  lastLosses: Record<string, number>;
}

/** Runs stages with shared run management; see the module doc. */
export class Trainer {
  readonly state: TrainerState;
  readonly log: (line: string) => void;
  readonly #readback = new LossReadback();
  #metrics: MetricsLog | null = null;
  #bar: StepProgress | null = null;
  #interval = { start: 0, firstStep: 1 };
  readonly #t0 = performance.now();
  readonly #onAbort = () => (this.state.stop = "interrupted");

  constructor(readonly opts: TrainerOptions, readonly parts: TrainerParts) {
    this.log = opts.hooks.log ?? ((s: string) => console.error(s));
    this.state = {
      step: 0,
      stage: opts.stage,
      lastCkpt: null,
      lastCkptStep: -1,
      stop: null,
      lastLosses: {},
    };
  }

  /** The run directory. */
  get run(): RunDir {
    return this.opts.run;
  }

  /** Seconds since the trainer was made. */
  get seconds(): number {
    return (performance.now() - this.#t0) / 1000;
  }

  /** Load a checkpoint into the parts (stage set by the caller first); returns its state. */
  async resume(ckpt: string): Promise<TrainStateJson> {
    const st = await loadTrainCheckpoint(ckpt, this.parts.modules(), this.parts.optimizers());
    this.state.step = st.step;
    this.state.lastCkpt = ckpt;
    this.state.lastCkptStep = st.step;
    return st;
  }

  /** Start logging: truncate metrics past the current step, listen for the stop signal. */
  start(): void {
    const writes = this.opts.writes !== false;
    this.#metrics = writes ? new MetricsLog(this.run.metrics) : null;
    this.#metrics?.truncateAfter(this.state.step);
    this.#bar = !writes ? null : new StepProgress({
      label: this.opts.label,
      total: this.opts.total,
      force: this.opts.progress,
      // Fractional rates (a CPU adapter runs well under one step per second).
      format: (n) => (Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 2 : 0)),
    });
    const signal = this.opts.hooks.signal;
    signal?.addEventListener("abort", this.#onAbort);
    if (signal?.aborted) this.state.stop = "interrupted";
    this.#interval = { start: performance.now(), firstStep: this.state.step + 1 };
  }

  /** Redraw the progress bar at the current step. */
  showProgress(): void {
    this.#bar?.update(this.state.step, {}, true);
  }

  /** Write a checkpoint of the current state. */
  async checkpoint(): Promise<string> {
    const s = this.state;
    s.lastCkptStep = s.step;
    // A non-writing rank names the checkpoint rank 0 writes.
    s.lastCkpt = this.opts.writes === false
      ? this.run.checkpoint(s.step)
      : await saveTrainCheckpoint(
        this.run,
        this.parts.modules(),
        this.parts.optimizers(),
        {
          step: s.step,
          stage: s.stage,
          seed: this.opts.seed,
          ...this.parts.state(),
          savedAt: new Date().toISOString(),
        },
        this.opts.keep,
        this.parts.files?.() ?? {},
      );
    return s.lastCkpt;
  }

  /** Read the pending steps back and log them; the first non-finite value, if any. */
  async drain(): Promise<NonFinite | null> {
    const rb = this.#readback;
    if (rb.size === 0) return null;
    const { steps, nonFinite } = await rb.flush();
    this.opts.hooks.onSteps?.(steps);
    if (nonFinite) return nonFinite;
    const s = this.state;
    const secs = (performance.now() - this.#interval.start) / 1000;
    const n = s.step - this.#interval.firstStep + 1;
    for (const st of [1, 2] as const) {
      const mine = steps.filter((v) => v.stage === st);
      if (!mine.length) continue;
      const losses: Record<string, number> = {};
      for (const k of Object.keys(mine[0].losses)) {
        losses[k] = mine.reduce((a, v) => a + v.losses[k], 0) / mine.length;
        s.lastLosses[k] = losses[k];
      }
      this.#metrics?.append({
        step: mine.at(-1)!.step,
        stage: st,
        losses,
        gradNorm: mine.at(-1)!.gradNorm,
        lr: this.parts.lrs(st),
        stepsPerSec: secs > 0 ? n / secs : 0,
        elapsed: this.seconds,
      });
    }
    const last = steps.at(-1)!;
    const shown: Record<string, number | string> = {
      stage: String(last.stage),
      "steps/s": (secs > 0 ? n / secs : 0).toFixed(2), // this interval's rate
      loss: last.losses.total,
    };
    for (const k of this.opts.shown) {
      if (last.losses[k] !== undefined) shown[k] = last.losses[k];
    }
    this.#bar?.update(s.step, shown, true);
    this.#interval = { start: performance.now(), firstStep: s.step + 1 };
    return null;
  }

  /**
   * Run `spec`'s steps until its end or a stop. Returns the first non-finite value (the run
   * must then end with {@link Trainer.stopNonFinite}), else null.
   */
  async runStage(spec: StageSpec): Promise<NonFinite | null> {
    const s = this.state;
    const o = this.opts;
    s.stage = spec.stage;
    while (s.step < spec.end && !s.stop) {
      const step = s.step + 1;
      const kept = await spec.step(step);
      s.step = step;
      this.#readback.push(step, spec.stage, kept.out, kept.norms);
      await spec.after?.(step);
      if (step === o.stopAt) s.stop = "interrupted";
      const ckptDue = step % o.ckptEvery === 0 || spec.ckptAt.includes(step) || !!s.stop;
      if (step % o.logEvery === 0 || ckptDue) {
        const bad = await this.drain();
        if (bad) return bad;
        if (ckptDue) await this.checkpoint();
      } else {
        await o.rt.flush();
      }
    }
    return null;
  }

  /**
   * After the last stage: a stop that came after the step's checkpoint decision is read back
   * and saved now. Returns a non-finite value found on the way.
   */
  async settleStop(): Promise<NonFinite | null> {
    const s = this.state;
    if (!s.stop || s.lastCkptStep === s.step) return null;
    const bad = await this.drain();
    if (bad) return bad;
    await this.checkpoint();
    return null;
  }

  /** End a run on a non-finite loss: nonfinite.json, a log line, the result. */
  stopNonFinite(bad: NonFinite): TrainResult {
    const lastCkpt = this.state.lastCkpt;
    const diag = {
      ...bad,
      value: String(bad.value),
      message: `non-finite ${bad.part} loss at step ${bad.step} (stage ${bad.stage})`,
      lastGoodCheckpoint: lastCkpt,
    };
    if (this.opts.writes !== false) {
      writeFileAtomic(this.run.nonfinite, JSON.stringify(diag, null, 2) + "\n");
    }
    this.#bar?.finish();
    this.log(
      `error: ${diag.message}; stopped without saving. Last good checkpoint: ` +
        `${lastCkpt ?? "none"} (continue with --resume ${this.run.root})`,
    );
    return {
      status: "nonfinite",
      step: bad.step,
      run: this.run,
      nonFinite: bad,
      checkpoint: lastCkpt,
    };
  }

  /** Finish the progress bar; the interrupted result when stopped, else null. */
  finishRun(): TrainResult | null {
    this.#bar?.finish();
    const s = this.state;
    if (!s.stop) return null;
    this.log(
      `interrupted at step ${s.step}: checkpoint ${s.lastCkpt}; continue with --resume ` +
        this.run.root,
    );
    return { status: "interrupted", step: s.step, run: this.run, checkpoint: s.lastCkpt };
  }

  /** The done result (after a finished run). */
  done(): TrainResult {
    const s = this.state;
    this.log(`done: ${s.step} steps; checkpoint ${s.lastCkpt}`);
    return { status: "done", step: s.step, run: this.run, checkpoint: s.lastCkpt };
  }

  /** Drop unread steps and stop listening to the signal (in a finally). */
  close(): void {
    this.#readback.discard();
    this.opts.hooks.signal?.removeEventListener("abort", this.#onAbort);
  }
}

/** A kept copy of an optimizer's [norm, scale] (the next update overwrites the original). */
export function snapshot(stats: Tensor): Tensor {
  const t = zeros([2]);
  copyTensor(stats, t);
  return t;
}

/** Wait for the device to finish (best effort: it may be gone). */
export async function settle(rt: Runtime): Promise<void> {
  try {
    await rt.sync();
  } catch { /* the device may be gone; nothing left to wait for */ }
}
