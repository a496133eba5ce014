/**
 * The fine-tuning loop (library form of `deno task finetune`; paper Sec. 4.3 and E.2), on the
 * shared run management of train/trainer.ts.
 *
 * Stage 1 (steps 1..realSteps): the joint loss of pretraining (beta x world + C51 TD + CQL,
 * train/world_step.ts) on real segments of the held-out game. Stage 2 (to `steps`): each step
 * plans from the real contexts of its batch (train/synthesis.ts: beam search H x K, the
 * imagined last H steps of each segment), adds the synthetic segments to a bounded replay
 * buffer, and trains on `batch - syntheticBatch` real + `syntheticBatch` buffered synthetic
 * segments with the COMBO penalty instead of CQL (train/finetune_losses.ts). Every component
 * is unfrozen: with a frame store the tokenizer trains on the real frames of each batch (its
 * own Adam and `tokenizerBatch`). The target Q head is hard-copied every `targetEvery` steps
 * (and once at the start, as the authors do after loading).
 *
 * Differences from the authors' code, on purpose: the segments synthesis starts from are the
 * step's own real batch (they draw a second real batch for it), and imagined observations stay
 * tokens (they decode and re-encode frames; see train/synthesis.ts).
 *
 * The task id is the game's proxy's (train/finetune_inputs.ts), for training and evaluation
 * (their evaluation uses the game's own row, untrained for a held-out game); valid actions are
 * always the game's own (theirs take the proxy's for the TD target's argmax).
 * Every `evalEvery` steps and at the end the agent plays the real game (train/finetune_eval.ts);
 * the best snapshot is kept in `<run>/best/`.
 *
 * Capture and replay: a single-process run records each stage's training step once
 * (train/captured_world_step.ts, train/captured_combo_step.ts) and replays it, bit for bit the
 * eager step (`--no-replay` runs it eagerly).
 *
 * Data parallel (under `mpiexec -n N`, as pretraining: train/data_parallel.ts): rank r trains on
 * its shard of the real batch and of the synthetic batch (each of `batch - syntheticBatch` and
 * `syntheticBatch` must divide by N), gradients and logged losses are averaged before the clip
 * and AdamW step, and parameters (optimizer state on resume) are broadcast from rank 0. Each
 * rank synthesizes from its own real shard, so planning is spread over the ranks; rank 0
 * gathers the new segments, in rank order, into the one replay buffer, samples the step's
 * global synthetic batch and broadcasts it (train/synthetic_exchange.ts). The buffer, the
 * sample and the global batch are then those of a single process, and the buffer stays in
 * rank 0's checkpoints, so a run resumes on any number of ranks. Only rank 0 writes
 * (checkpoints, metrics, report) and runs the periodic evaluations, while the other ranks wait
 * at the next step's gradient exchange (within the collective watchdog's `JOWA_MPI_TIMEOUT_S`).
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { noGrad } from "../kernels/core/autograd.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { checkF16Support } from "../kernels/core/precision.ts";
import { keep, type Tensor, tensor, tidy } from "../kernels/core/tensor.ts";
import { indexSelect, slice } from "../kernels/ops/mod.ts";
import { describeAdapter } from "../kernels/core/device.ts";
import type { WorldActionModel } from "../models/world_action/model.ts";
import type { Tokenizer } from "../models/tokenizer/model.ts";
import { loadCheckpoint } from "../checkpoint/loader.ts";
import type { ModulePart, OptimizerPart } from "../checkpoint/train_checkpoint.ts";
import { readTrainState } from "../checkpoint/train_checkpoint.ts";
import { openSampler, type Sampler, type SamplerState, type SegmentBatch } from "../offline/mod.ts";
import { WamPlanningModel } from "../eval/wam_planning_model.ts";
import { noDecay } from "./pretrainer.ts";
import { trainTokenizerStep } from "./tokenizer_stage.ts";
import {
  RunError,
  settle,
  snapshot,
  type StepTensors,
  Trainer,
  type TrainResult,
} from "./trainer.ts";
import { defaultValidActions, worldBatchArrays } from "./world_batch.ts";
import type { JointWeights } from "./world_step.ts";
import {
  type CapturedWorldStep,
  captureWorldActionStep,
  copyParts,
} from "./captured_world_step.ts";
import { captureComboStep, type CapturedComboStep } from "./captured_combo_step.ts";
import { captureComboGrads, captureWorldActionGrads } from "./captured_grads.ts";
import {
  openRankRunDir,
  type RankedTrainerHooks,
  rankSetup,
  rankTrainerOptions,
} from "./_run_setup.ts";
import { DataParallel, rankStepSeed, shardRows } from "./data_parallel.ts";
import { averageAndUpdate, broadcastRunState } from "./_data_parallel_step.ts";
import {
  concatSegments,
  packSegments,
  sliceSegments,
  unpackSegments,
} from "./synthetic_exchange.ts";
import { type FinetuneConfig, validateFinetuneConfig } from "./finetune_options.ts";
import { checkFinetuneInputs, type FinetuneInputs } from "./finetune_inputs.ts";
import { synthesisRows, synthesize, type SyntheticSegments } from "./synthesis.ts";
import { SyntheticBuffer } from "./synthetic_buffer.ts";
import { mixedBatch } from "./finetune_batch.ts";
import { type EvalPoint, FinetuneEvaluator } from "./finetune_eval.ts";
import { writeFinetuneReport } from "./finetune_report.ts";
import { stepSeed } from "../util/rng.ts";

/** How a fine-tuning run ended, with its best evaluation. */
export interface FinetuneResult extends TrainResult {
  best: EvalPoint | null;
}

const BUFFER_FILE = "synthetic_buffer.bin";

/** Hooks of {@link finetune}. */
export type FinetuneHooks = RankedTrainerHooks;

/** Run (or resume) fine-tuning; `resume` is the run directory to continue. */
export async function finetune(
  cfg: FinetuneConfig,
  resume: string | null = null,
  hooks: FinetuneHooks = {},
): Promise<FinetuneResult> {
  const ranks = rankSetup(hooks);
  const { comm, dp, root, log } = ranks;
  // Every input is checked before the run directory is touched.
  validateFinetuneConfig(cfg);
  if (dp) checkShards(cfg, comm.size);
  const inputs = await checkFinetuneInputs(cfg);
  // Before the run directory is touched: f16 needs shader-f16.
  if (cfg.precision === "f16") checkF16Support((await initRuntime()).ctx.hasF16);
  const { run, ckpt } = openRankRunDir(cfg, resume, ranks);
  const rt = await initRuntime();
  const adapter = describeAdapter(rt.ctx);
  log(`adapter: ${adapter}`);
  const loaded = await loadCheckpoint(cfg.checkpoint);
  const model = loaded.worldAction, tok = loaded.tokenizer;
  log(
    `fine-tuning ${inputs.wcfg.name} (${model.parameterCount()} parameters) from ` +
      `${loaded.files.worldAction} on ${cfg.game} (${inputs.manifest.transitions} transitions, ` +
      `${inputs.manifest.form}; task embedding of ${inputs.taskGame})`,
  );
  if (dp) log(`data parallel: ${comm.size} ranks`);
  const realSteps = cfg.synthesis ? cfg.realSteps : cfg.steps;
  const p = new FinetuneParts(cfg, inputs, model, tok, run.root, dp, hooks.signal);
  const evaluator = new FinetuneEvaluator(cfg, run, model, tok, inputs.taskId, adapter, log);
  p.evaluator = evaluator;
  const trainer = new Trainer({
    run,
    rt,
    total: cfg.steps,
    stage: realSteps > 0 ? 1 : 2,
    label: `finetune ${cfg.game}`,
    shown: ["world", "td", "cql", "combo"],
    ...rankTrainerOptions(cfg, hooks, ranks),
  }, p);
  p.trainer = trainer;
  const st = trainer.state;
  let samplerState: SamplerState | undefined;
  if (dp) {
    const stage = await dp.broadcastJson(ckpt ? readTrainState(ckpt).stage as 1 | 2 : null);
    if (stage) st.stage = stage;
  }
  if (ckpt) {
    st.stage = readTrainState(ckpt).stage as 1 | 2;
    const saved = await trainer.resume(ckpt);
    samplerState = saved.sampler as SamplerState;
    evaluator.best = (saved.best as EvalPoint | null) ?? null;
    const bufFile = path.join(ckpt, BUFFER_FILE);
    if (fs.existsSync(bufFile)) p.buffer = SyntheticBuffer.deserialize(fs.readFileSync(bufFile));
    log(`resumed ${run.root} at step ${st.step} (stage ${st.stage}) from ${ckpt}`);
  } else {
    model.updateTarget(); // the authors hard-copy the target head after loading
  }
  if (dp) {
    // Rank 0's position, weights, optimizer state and best evaluation on every rank.
    const at = await dp.broadcastJson({
      step: st.step,
      lastCkpt: st.lastCkpt,
      samplerState,
      best: evaluator.best,
    });
    st.step = at.step;
    st.lastCkpt = at.lastCkpt;
    st.lastCkptStep = at.lastCkpt ? at.step : -1;
    samplerState = at.samplerState ?? undefined;
    evaluator.best = at.best;
    await p.broadcastState();
  }
  trainer.start();
  try {
    if (st.stage === 1 && st.step >= realSteps && st.step < cfg.steps) {
      st.stage = 2;
      samplerState = undefined; // the saved position was the stage-1 stream's
    }
    await p.openStageSampler(st.stage, samplerState);
    trainer.showProgress();
    const spec = (stage: 1 | 2) => ({
      stage,
      end: stage === 1 ? realSteps : cfg.steps,
      ckptAt: [realSteps, cfg.steps],
      step: (step: number) => p.step(step, stage),
      after: (step: number) => p.after(step),
    });
    let bad = st.stage === 1 ? await trainer.runStage(spec(1)) : null;
    if (!bad && !st.stop && st.stage === 1 && st.step === realSteps && realSteps < cfg.steps) {
      st.stage = 2;
      await p.openStageSampler(2);
    }
    if (!bad && st.stage === 2) bad = await trainer.runStage(spec(2));
    bad ??= await trainer.settleStop();
    if (bad) return { ...trainer.stopNonFinite(bad), best: evaluator.best };
    const stopped = trainer.finishRun();
    if (stopped) return { ...stopped, best: evaluator.best };
    if (evaluator.best) {
      log(
        `best snapshot: step ${evaluator.best.step}, mean return ` +
          `${evaluator.best.meanReturn.toFixed(2)} (DQN-normalized ` +
          `${evaluator.best.dqnNormalized?.toFixed(3) ?? "n/a"}) in ${evaluator.bestDir}`,
      );
    }
    if (cfg.report && root) {
      await writeFinetuneReport(run, {
        cfg,
        inputs,
        tok,
        buffer: p.buffer,
        adapter,
        seconds: trainer.seconds,
        lastLosses: st.lastLosses,
        best: evaluator.best,
      });
      log(`report: ${run.report}`);
    }
    return { ...trainer.done(), best: evaluator.best };
  } finally {
    trainer.close();
    p.dispose();
    await settle(rt);
  }
}

function emptyBuffer(step: number, C: number): Error {
  return new Error(
    `step ${step}: no segment of the batch has ${C} real steps to synthesize from ` +
      `(episodes shorter than --segment-length?)`,
  );
}

/** Data parallel: every batch part must split evenly over the ranks. */
function checkShards(cfg: FinetuneConfig, ranks: number): void {
  try {
    shardRows(cfg.batch, 0, ranks);
    if (cfg.synthesis) {
      shardRows(cfg.syntheticBatch, 0, ranks);
    }
  } catch {
    throw new RunError(
      `--batch ${cfg.batch}` +
        (cfg.synthesis ? ` and --synthetic-batch ${cfg.syntheticBatch}` : "") +
        ` must be multiples of the ${ranks} ranks`,
    );
  }
}

/** The models, optimizers, sampler and synthetic buffer of a run, and one step of each stage. */
class FinetuneParts {
  trainer!: Trainer;
  evaluator!: FinetuneEvaluator;
  sampler: Sampler | null = null;
  buffer: SyntheticBuffer | null = null;
  readonly wmOpt: AdamW;
  readonly tokOpt: AdamW | null;
  readonly #wmNames: string[];
  readonly #tokNames: string[];
  readonly #frames: boolean;
  readonly #weights: JointWeights;
  #lastEval = -1;
  /** The captured steps (single process): stage 1's world-action step, stage 2's mixed one. */
  #world: CapturedWorldStep | null = null;
  #combo: CapturedComboStep | null = null;
  #fallbacks = 0;

  constructor(
    readonly cfg: FinetuneConfig,
    readonly inputs: FinetuneInputs,
    readonly model: WorldActionModel,
    readonly tok: Tokenizer,
    readonly runRoot: string,
    /** Null in a single-process run. */
    readonly dp: DataParallel | null = null,
    /** Data parallel: the stop request (Ctrl-C), sent with the gradients. */
    readonly signal?: AbortSignal,
  ) {
    this.#frames = inputs.manifest.form === "frames";
    model.train();
    model.targetQ.eval();
    const trainTok = cfg.trainTokenizer && this.#frames;
    if (trainTok) tok.train();
    else {
      tok.eval();
      for (const p of tok.parameters()) p.requiresGrad = false;
    }
    this.wmOpt = new AdamW(model.namedParameters(), {
      lr: cfg.lr,
      weightDecay: cfg.weightDecay,
      maxGradNorm: cfg.gradClip,
      noDecay,
      mixedPrecision: cfg.precision === "f16", // f16 weight copies + loss scaling (optim.ts)
    });
    // The tokenizer trains with Adam (jowa.md), i.e. no weight decay.
    this.tokOpt = trainTok
      ? new AdamW(tok.namedParameters(), {
        lr: cfg.tokenizerLr,
        weightDecay: 0,
        maxGradNorm: cfg.gradClip,
        noDecay,
      })
      : null;
    this.#wmNames = model.namedParameters().map(([n]) => n);
    this.#tokNames = tok.namedParameters().map(([n]) => n);
    this.#weights = { beta: cfg.beta, alpha: cfg.alpha, gamma: cfg.gamma };
  }

  modules(): ModulePart[] {
    return [
      {
        file: "world_action",
        module: this.model,
        extra: this.model.targetTensors(),
        config: this.model.cfg,
      },
      { file: "tokenizer", module: this.tok, config: this.tok.cfg },
    ];
  }

  optimizers(): OptimizerPart[] {
    return [
      { name: "world_action", opt: this.wmOpt, paramNames: this.#wmNames },
      ...(this.tokOpt ? [{ name: "tokenizer", opt: this.tokOpt, paramNames: this.#tokNames }] : []),
    ];
  }

  state(): Record<string, unknown> {
    return {
      sampler: this.sampler!.state(),
      best: this.evaluator.best,
      bufferSize: this.buffer?.size ?? 0,
    };
  }

  files(): Record<string, Uint8Array> {
    return this.buffer ? { [BUFFER_FILE]: this.buffer.serialize() } : {};
  }

  lrs(): Record<string, number> {
    return this.tokOpt
      ? { world_action: this.wmOpt.lr, tokenizer: this.tokOpt.lr }
      : { world_action: this.wmOpt.lr };
  }

  async openStageSampler(stage: 1 | 2, state?: SamplerState): Promise<void> {
    this.sampler?.close();
    const cfg = this.cfg;
    const real = stage === 2 && cfg.synthesis ? cfg.batch - cfg.syntheticBatch : cfg.batch;
    this.sampler = await openSampler([this.inputs.store], {
      batchSize: state ? undefined : real,
      segmentLength: state ? undefined : cfg.segmentLength,
      seed: state ? undefined : cfg.seed + stage,
      workers: cfg.workers,
      state,
      shard: this.dp ? { index: this.dp.rank, count: this.dp.size } : undefined,
    });
  }

  /** Data parallel: rank 0's weights (target head included), optimizer moments and steps. */
  async broadcastState(): Promise<void> {
    await broadcastRunState(this.dp!, this.modules(), this.optimizers().map((o) => o.opt));
  }

  /** Periodic evaluation (and one at the end). */
  async after(step: number): Promise<void> {
    const cfg = this.cfg;
    const due = (cfg.evalEvery > 0 && step % cfg.evalEvery === 0) || step === cfg.steps;
    if (!due || this.#lastEval === step) return;
    this.#lastEval = step;
    if (this.dp && this.dp.rank !== 0) return; // rank 0 evaluates (its weights are everyone's)
    await this.evaluator.evaluate(step);
  }

  /** One step of `stage` at global step `step`. */
  async step(step: number, stage: 1 | 2): Promise<StepTensors> {
    const cfg = this.cfg;
    const batch = await this.sampler!.next();
    batch.taskIds.fill(this.inputs.taskId); // the proxy's task embedding
    const poison = step === cfg.injectNanAt;
    // Valid actions are the game's own (the task id may be a proxy's).
    const gameValid = defaultValidActions(this.inputs.manifest.taskId, this.model.cfg.actions);
    const opts = { actions: this.model.cfg.actions, poison, validActions: () => gameValid };
    const mixed = stage === 2 && cfg.synthesis
      ? mixedBatch(batch, await this.#synthetic(batch, step), opts)
      : null;
    const arrays = mixed ? null : worldBatchArrays(batch, opts);
    const dp = this.dp;
    const seed = dp ? rankStepSeed(cfg.seed, step, dp.rank) : stepSeed(cfg.seed, step);
    const { tok, tokOpt, wmOpt } = this;
    const kept = tidy(() => {
      const out: Record<string, Tensor> = {};
      const norms: Record<string, Tensor> = {};
      let ids: Tensor | undefined;
      const B = batch.batchSize, L = batch.segmentLength;
      if (this.#frames && tokOpt) {
        // Data parallel: updated below, after the all-reduce (`ids` are made already).
        const shape = { B, L, tokenizerBatch: cfg.tokenizerBatch };
        ids = trainTokenizerStep(tok, tokOpt, batch.frames!, shape, !!dp, out, norms);
      } else if (this.#frames) {
        ids = noGrad(() => tok.encode(batch.frames!)).view([B, L, tok.tokensPerFrame]);
      }
      let parts;
      if (dp) {
        // Forward and backward replayed (train/captured_grads.ts); the update waits for the
        // averaged gradients.
        parts = mixed ? this.#comboStep()(mixed, seed, ids) : this.#worldStep()(arrays!, seed, ids);
      } else {
        // A replay's outputs are overwritten by the next replay; the readback comes later.
        parts = copyParts(
          mixed ? this.#comboStep()(mixed, seed, ids) : this.#worldStep()(arrays!, seed, ids),
        );
        norms.world_action = snapshot(wmOpt.clipStats);
      }
      for (const [k, v] of Object.entries(parts)) if (v) out[k] = v;
      return { out, norms };
    });
    for (const t of [...Object.values(kept.out), ...Object.values(kept.norms)]) keep(t);
    // tokOpt exists only when the tokenizer trains (on frames).
    if (dp && await averageAndUpdate(dp, tokOpt, wmOpt, kept, !!this.signal?.aborted)) {
      this.trainer.state.stop = "interrupted";
    }
    this.#reportFallbacks();
    wmOpt.zeroGrad();
    tokOpt?.zeroGrad();
    if (step % cfg.targetEvery === 0) this.model.updateTarget();
    return kept;
  }

  /**
   * Synthesize from the batch's eligible segments into the buffer, then sample the step's
   * synthetic segments from it.
   */
  async #synthetic(batch: SegmentBatch, step: number) {
    const cfg = this.cfg;
    const B = batch.batchSize, L = batch.segmentLength, H = cfg.horizon, C = L - H;
    const P = this.model.cfg.obsTokens, A = this.model.cfg.actions;
    // Data parallel: rank 0 alone holds the buffer (#exchange).
    if (!this.dp || this.dp.rank === 0) {
      this.buffer ??= new SyntheticBuffer(
        cfg.bufferCapacity || 10 * this.inputs.manifest.transitions,
        L,
        P,
      );
    }
    const rows = synthesisRows(batch.mask, B, L, H);
    let made: SyntheticSegments | null = null;
    if (rows.length) {
      const N = rows.length;
      const obs = tidy(() => {
        const all = this.#frames
          ? noGrad(() => this.tok.encode(batch.frames!)).view([B, L, P])
          : tensor(Int32Array.from(batch.tokens!), [B, L, P], "i32");
        return slice(indexSelect(all, tensor(rows, [N], "i32")), 1, H, L);
      });
      const actions = new Int32Array(N * (C - 1));
      const rewards = new Float32Array(N * (C - 1));
      rows.forEach((i, n) => {
        for (let s = 0; s < C - 1; s++) {
          actions[n * (C - 1) + s] = batch.actions[i * L + H + s];
          rewards[n * (C - 1) + s] = batch.rewards[i * L + H + s];
        }
      });
      const valid = new Float32Array(N * A);
      const ids = defaultValidActions(this.inputs.manifest.taskId, A);
      for (let n = 0; n < N; n++) for (const a of ids) valid[n * A + a] = 1;
      const tokTraining = this.tok.training;
      this.tok.eval();
      try {
        // Under --precision f16 the planner's KV caches hold f16 too (as in `deno task eval`).
        const planner = new WamPlanningModel(this.model, { cacheDtype: cfg.precision });
        const seg = await synthesize(planner, {
          obs, // [N, C, P]
          actions,
          rewards,
          taskIds: new Int32Array(N).fill(this.inputs.taskId),
          valid,
        }, { horizon: H, beamWidth: cfg.beamWidth, gamma: cfg.gamma });
        if (this.dp) made = seg;
        else this.buffer!.add(seg);
      } finally {
        obs.dispose();
        this.model.train();
        this.model.targetQ.eval();
        if (tokTraining) this.tok.train();
      }
    }
    if (this.dp) return await this.#exchange(made ?? concatSegments([], L, P), step);
    if (this.buffer!.size === 0) throw emptyBuffer(step, C);
    return this.buffer!.sample(cfg.syntheticBatch, cfg.seed, step);
  }

  /**
   * Data parallel: rank 0 adds every rank's new segments (rank order) to the buffer, samples
   * the global synthetic batch and broadcasts it; returns this rank's slice.
   */
  async #exchange(made: SyntheticSegments, step: number): Promise<SyntheticSegments> {
    const dp = this.dp!;
    const all = await dp.comm.gatherBytes(packSegments(made));
    let sample: Uint8Array | null = null;
    if (all) {
      const buffer = this.buffer!;
      const parts = all.map(unpackSegments).filter((s) => s.count > 0);
      if (parts.length) buffer.add(concatSegments(parts, made.L, made.P));
      // An empty sample tells every rank to stop with the error below.
      sample = packSegments(
        buffer.size ? buffer.sample(this.cfg.syntheticBatch, this.cfg.seed, step) : made,
      );
    }
    const got = unpackSegments(await dp.comm.broadcastBytes(sample, 0));
    if (got.count === 0) throw emptyBuffer(step, made.L - this.cfg.horizon);
    const [lo, hi] = shardRows(got.count, dp.rank, dp.size);
    return sliceSegments(got, lo, hi);
  }

  /** Stage 1's captured step (made on first use). */
  #worldStep(): CapturedWorldStep {
    this.#world ??= (this.dp ? captureWorldActionGrads : captureWorldActionStep)(
      this.model,
      this.wmOpt,
      {
        joint: true,
        weights: this.#weights,
        replay: this.cfg.replay !== false,
      },
    );
    return this.#world;
  }

  /** Stage 2's captured step (made on first use; stage 1's is freed: that stage ended). */
  #comboStep(): CapturedComboStep {
    if (!this.#combo) {
      this.#reportFallbacks();
      this.#logReplays(this.#world, 1);
      this.#world?.dispose();
      this.#world = null;
      this.#fallbacks = 0;
      this.#combo = (this.dp ? captureComboGrads : captureComboStep)(this.model, this.wmOpt, {
        weights: this.#weights,
        replay: this.cfg.replay !== false,
      });
    }
    return this.#combo;
  }

  /** A step that cannot be replayed runs eagerly: say so once (the run stays correct). */
  #reportFallbacks(): void {
    const s = this.#combo ?? this.#world;
    if (!s) return;
    const { fallbacks } = s.stats();
    for (const f of fallbacks.slice(this.#fallbacks)) this.trainer.log(`${f}; running it eagerly`);
    this.#fallbacks = fallbacks.length;
  }

  #logReplays(s: CapturedWorldStep | CapturedComboStep | null, stage: 1 | 2): void {
    if (!s || this.cfg.replay === false) return;
    const { replays, calls } = s.stats();
    this.trainer.log(`stage ${stage}: ${replays} of ${calls} steps replayed`);
  }

  dispose(): void {
    this.#logReplays(this.#world, 1);
    this.#logReplays(this.#combo, 2);
    this.#world?.dispose();
    this.#combo?.dispose();
    this.sampler?.close();
    this.tokOpt?.dispose();
    this.wmOpt.dispose();
  }
}
