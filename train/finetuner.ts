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
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { backward, noGrad } from "../kernels/core/autograd.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
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
import { tokenizerStep } from "./tokenizer_stage.ts";
import {
  openRunDir,
  settle,
  snapshot,
  type StepTensors,
  Trainer,
  type TrainerHooks,
  type TrainResult,
} from "./trainer.ts";
import { defaultValidActions, worldBatchArrays } from "./world_batch.ts";
import { type JointWeights, worldActionStep } from "./world_step.ts";
import { type FinetuneConfig, validateFinetuneConfig } from "./finetune_options.ts";
import { checkFinetuneInputs, type FinetuneInputs } from "./finetune_inputs.ts";
import { synthesisRows, synthesize } from "./synthesis.ts";
import { SyntheticBuffer } from "./synthetic_buffer.ts";
import { mixedBatch } from "./finetune_batch.ts";
import { comboStep } from "./finetune_losses.ts";
import { type EvalPoint, FinetuneEvaluator } from "./finetune_eval.ts";
import { writeFinetuneReport } from "./finetune_report.ts";
import { stepSeed } from "../util/rng.ts";

/** How a fine-tuning run ended, with its best evaluation. */
export interface FinetuneResult extends TrainResult {
  best: EvalPoint | null;
}

const BUFFER_FILE = "synthetic_buffer.bin";

/** Run (or resume) fine-tuning; `resume` is the run directory to continue. */
export async function finetune(
  cfg: FinetuneConfig,
  resume: string | null = null,
  hooks: TrainerHooks = {},
): Promise<FinetuneResult> {
  const log = hooks.log ?? ((s: string) => console.error(s));
  // Every input is checked before the run directory is touched.
  validateFinetuneConfig(cfg);
  const inputs = await checkFinetuneInputs(cfg);
  const { run, ckpt } = openRunDir(resume ?? path.join(cfg.runsDir, cfg.name), !!resume, cfg);
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
  const realSteps = cfg.synthesis ? cfg.realSteps : cfg.steps;
  const p = new FinetuneParts(cfg, inputs, model, tok, run.root);
  const evaluator = new FinetuneEvaluator(cfg, run, model, tok, inputs.taskId, adapter, log);
  p.evaluator = evaluator;
  const trainer = new Trainer({
    run,
    rt,
    seed: cfg.seed,
    total: cfg.steps,
    stage: realSteps > 0 ? 1 : 2,
    logEvery: cfg.logEvery,
    ckptEvery: cfg.ckptEvery,
    keep: cfg.keep,
    stopAt: cfg.stopAt,
    label: `finetune ${cfg.game}`,
    progress: cfg.progress,
    shown: ["world", "td", "cql", "combo"],
    hooks,
  }, p);
  p.trainer = trainer;
  const st = trainer.state;
  let samplerState: SamplerState | undefined;
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
    if (cfg.report) {
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

  constructor(
    readonly cfg: FinetuneConfig,
    readonly inputs: FinetuneInputs,
    readonly model: WorldActionModel,
    readonly tok: Tokenizer,
    readonly runRoot: string,
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
    });
  }

  /** Periodic evaluation (and one at the end). */
  async after(step: number): Promise<void> {
    const cfg = this.cfg;
    const due = (cfg.evalEvery > 0 && step % cfg.evalEvery === 0) || step === cfg.steps;
    if (!due || this.#lastEval === step) return;
    this.#lastEval = step;
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
    const seed = stepSeed(cfg.seed, step);
    const { tok, tokOpt, wmOpt } = this;
    const kept = tidy(() => {
      const out: Record<string, Tensor> = {};
      const norms: Record<string, Tensor> = {};
      let ids: Tensor | undefined;
      const B = batch.batchSize, L = batch.segmentLength;
      if (this.#frames && tokOpt) {
        const t = tokenizerStep(tok, batch.frames!, B, L, cfg.tokenizerBatch);
        tokOpt.zeroGrad();
        backward(t.losses.total);
        tokOpt.update();
        Object.assign(out, t.losses.parts);
        out.tok_total = t.losses.total;
        norms.tokenizer = snapshot(tokOpt.clipStats);
        ids = t.ids;
      } else if (this.#frames) {
        ids = noGrad(() => tok.encode(batch.frames!)).view([B, L, tok.tokensPerFrame]);
      }
      const parts = mixed
        ? comboStep(this.model, wmOpt, mixed, {
          stepSeed: seed,
          weights: this.#weights,
          realTokens: ids,
        })
        : worldActionStep(this.model, wmOpt, arrays!, {
          joint: true,
          stepSeed: seed,
          weights: this.#weights,
          obsTokens: ids,
        });
      norms.world_action = snapshot(wmOpt.clipStats);
      for (const [k, v] of Object.entries(parts)) if (v) out[k] = v;
      return { out, norms };
    });
    for (const t of [...Object.values(kept.out), ...Object.values(kept.norms)]) keep(t);
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
    this.buffer ??= new SyntheticBuffer(
      cfg.bufferCapacity || 10 * this.inputs.manifest.transitions,
      L,
      P,
    );
    const rows = synthesisRows(batch.mask, B, L, H);
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
        const seg = await synthesize(new WamPlanningModel(this.model), {
          obs, // [N, C, P]
          actions,
          rewards,
          taskIds: new Int32Array(N).fill(this.inputs.taskId),
          valid,
        }, { horizon: H, beamWidth: cfg.beamWidth, gamma: cfg.gamma });
        this.buffer.add(seg);
      } finally {
        obs.dispose();
        this.model.train();
        this.model.targetQ.eval();
        if (tokTraining) this.tok.train();
      }
    }
    if (this.buffer.size === 0) {
      throw new Error(
        `step ${step}: no segment of the batch has ${C} real steps to synthesize from ` +
          `(episodes shorter than --segment-length?)`,
      );
    }
    return this.buffer.sample(cfg.syntheticBatch, cfg.seed, step);
  }

  dispose(): void {
    this.sampler?.close();
    this.tokOpt?.dispose();
    this.wmOpt.dispose();
  }
}
