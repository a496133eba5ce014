/**
 * The pretraining loop (library form of `deno task pretrain`), on the shared run management of
 * train/trainer.ts.
 *
 * Stage 1 (steps 1..S1): the tokenizer trains on the batch's frames (Adam, lr1) and the world
 * part of the world-action model on the tokens of those frames (world loss, AdamW lr1).
 * Stage 2 (S1+1..S1+S2): the tokenizer is frozen, every frame store is tokenized once into
 * `<run>/tokens/`, and the world-action model trains on the joint loss with a fresh AdamW
 * (lr2); the target Q head is hard-copied every `targetEvery` stage-2 steps. With a token
 * dataset there is no tokenizer: stage 1 trains the world part alone.
 *
 * Reproducibility: parameters are initialized from the seed, batch k of each stage's sampler
 * is a pure function of (seed, k, data), and dropout seeds are derived from the global step,
 * so a run resumed from a checkpoint (weights, target head, optimizer moments and step,
 * sampler position) computes the same losses as an uninterrupted one.
 *
 * Data parallel (under `mpiexec -n N`, train/data_parallel.ts): rank r trains on rows
 * [r B/N, (r+1) B/N) of each global batch of `--batch` B, gradients (and the logged losses)
 * are averaged before the clip and AdamW step, parameters are broadcast from rank 0 at start
 * and on resume, and only rank 0 writes (checkpoints, metrics, report, collected data and
 * stage-2 token stores, which the other ranks then read: the data and run directories must be
 * on a filesystem every rank sees). The sampler position is the global batch's, so a run
 * resumes on any number of ranks that divides B.
 *
 * Capture and replay (train/captured_world_step.ts): a single-process run records the
 * world-action step once per stage and replays it (bit for bit the eager step; `--no-replay`
 * runs it eagerly). The data-parallel step stays eager: its update waits for the all-reduce.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { AdamW } from "../kernels/nn/optim.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import { checkF16Support } from "../kernels/core/precision.ts";
import { keep, type Tensor, tidy } from "../kernels/core/tensor.ts";
import { describeAdapter } from "../kernels/core/device.ts";
import { type WorldActionConfig, worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import type { Tokenizer } from "../models/tokenizer/model.ts";
import {
  datasetStoreDirs,
  openSampler,
  readManifest,
  type Sampler,
  type SamplerState,
  type StoreManifest,
  tokenizeStore,
} from "../offline/mod.ts";
import { ensureCollected } from "./default_data.ts";
import type { PretrainConfig } from "./pretrain_options.ts";
import { writePretrainReport } from "./pretrain_report.ts";
import {
  ENCODE_CHUNK,
  frameEncoder,
  loadPerceptual,
  makeTokenizer,
  trainTokenizerStep,
} from "./tokenizer_stage.ts";
import {
  type ModulePart,
  type OptimizerPart,
  readTrainState,
} from "../checkpoint/train_checkpoint.ts";
import type { RunDir } from "../checkpoint/run_dir.ts";
import { settle, snapshot, type StepTensors, Trainer, type TrainResult } from "./trainer.ts";
import { worldBatchArrays } from "./world_batch.ts";
import type { WorldLossParts } from "./world_step.ts";
import { captureWorldActionGrads } from "./captured_grads.ts";
import {
  type CapturedWorldStep,
  captureWorldActionStep,
  copyParts,
} from "./captured_world_step.ts";
import { noDecay } from "./weight_decay.ts";
import { stepSeed } from "../util/rng.ts";
import {
  openRankRunDir,
  type RankedTrainerHooks,
  rankSetup,
  rankTrainerOptions,
} from "./_run_setup.ts";
import { DataParallel, rankStepSeed, shardRows } from "./data_parallel.ts";
import { averageAndUpdate, broadcastRunState } from "./_data_parallel_step.ts";
import { RunError } from "./trainer.ts";

export { RunError } from "./trainer.ts";

/** How a run ended. */
export type PretrainResult = TrainResult;

/** Hooks of {@link pretrain}. */
export type PretrainHooks = RankedTrainerHooks;

/** The authors' weight-decay groups (train/weight_decay.ts). */
export { noDecay };

/** Run (or resume) pretraining as configured; `resume` is the run directory to continue. */
export async function pretrain(
  cfg: PretrainConfig,
  resume: string | null = null,
  hooks: PretrainHooks = {},
): Promise<PretrainResult> {
  const ranks = rankSetup(hooks);
  const { comm, dp, root, log } = ranks;
  if (dp) {
    try {
      shardRows(cfg.batch, comm.rank, comm.size);
    } catch (e) {
      throw new RunError((e as Error).message);
    }
  }
  // Before the run directory is touched: f16 needs shader-f16.
  if (cfg.precision === "f16") checkF16Support((await initRuntime()).ctx.hasF16);
  const { run, ckpt } = openRankRunDir(cfg, resume, ranks);

  const rt = await initRuntime();
  log(`adapter: ${describeAdapter(rt.ctx)}`);
  if (dp) log(`data parallel: ${comm.size} ranks, ${cfg.batch / comm.size} rows each`);
  let dataRoot = cfg.data;
  if (!dataRoot && root) {
    dataRoot = await ensureCollected(
      path.join(run.root, "data"),
      cfg.collectGames,
      cfg.collectSteps,
      cfg.seed,
      log,
    );
  }
  // Also the barrier after rank 0's collection.
  if (dp) dataRoot = await dp.broadcastJson(dataRoot);
  const dirs = datasetStoreDirs(dataRoot!, cfg.games ?? undefined);
  const manifests = dirs.map((d) => readManifest(d));
  const form = manifests[0].form;
  const tok = form === "frames"
    ? makeTokenizer(cfg.tokenizer, cfg.seed, await loadPerceptual(cfg.lpips))
    : null;
  const obsVocab = tok ? tok.cfg.vocab : tokenVocab(manifests);
  const wcfg: WorldActionConfig = worldActionConfig(cfg.model, {
    obsVocab,
    timesteps: cfg.segmentLength,
    seed: cfg.seed,
    ...(cfg.modelDropout !== undefined
      ? { dropout: cfg.modelDropout, qDropout: cfg.modelDropout }
      : {}),
  });
  const model = new WorldActionModel(wcfg);
  log(
    `world-action model ${cfg.model}: ${model.parameterCount()} parameters` +
      (tok ? `; tokenizer ${cfg.tokenizer}: ${tok.parameterCount()} parameters` : "") +
      `; games ${manifests.map((m) => m.game).join(", ")} (${form})`,
  );
  const S1 = cfg.stage1Steps, S2 = cfg.stage2Steps, total = S1 + S2;
  const p = new PretrainParts(cfg, model, wcfg, tok, dirs, run, dp, hooks.signal);
  const trainer = new Trainer({
    run,
    rt,
    total,
    stage: S1 > 0 ? 1 : 2,
    label: "pretrain",
    shown: ["world", "action", "tok_recon"],
    ...rankTrainerOptions(cfg, hooks, ranks),
  }, p);
  p.trainer = trainer;
  const st = trainer.state;
  let samplerState: SamplerState | undefined;
  const resumedStage = ckpt ? readTrainState(ckpt).stage as 1 | 2 : null;
  const stage = dp ? await dp.broadcastJson(resumedStage) : resumedStage;
  if (stage) {
    st.stage = stage;
    if (st.stage === 2) p.dropTokenizerOptimizer();
  }
  if (ckpt) {
    const saved = await trainer.resume(ckpt);
    samplerState = saved.sampler as SamplerState;
    log(`resumed ${run.root} at step ${st.step} (stage ${st.stage}) from ${ckpt}`);
  }
  if (dp) {
    // Rank 0's position, weights (and, resumed, optimizer state) on every rank.
    const at = await dp.broadcastJson({ step: st.step, lastCkpt: st.lastCkpt, samplerState });
    st.step = at.step;
    st.lastCkpt = at.lastCkpt;
    st.lastCkptStep = stage ? at.step : -1;
    samplerState = at.samplerState ?? undefined;
    await p.broadcastState(!!stage);
  }
  trainer.start();
  try {
    if (st.stage === 2) p.freezeTokenizer();
    if (!ckpt && st.stage === 2) await p.enterStage2(log); // --stage1-steps 0: straight to stage 2
    if (st.step >= S1 && st.stage === 1 && st.step < total) {
      await p.enterStage2(log);
      st.stage = 2;
      samplerState = undefined; // the saved position was the stage-1 stream's
    }
    await p.openStageSampler(st.stage, samplerState);
    trainer.showProgress();
    const stageSpec = (stage: 1 | 2) => ({
      stage,
      end: stage === 1 ? S1 : total,
      ckptAt: [S1, total],
      step: (step: number) => p.step(step, stage),
    });
    let bad = st.stage === 1 ? await trainer.runStage(stageSpec(1)) : null;
    if (!bad && !st.stop && st.stage === 1 && st.step === S1 && S1 < total) {
      await p.enterStage2(log);
      st.stage = 2;
      await p.openStageSampler(2);
    }
    if (!bad && st.stage === 2) bad = await trainer.runStage(stageSpec(2));
    bad ??= await trainer.settleStop();
    if (bad) return trainer.stopNonFinite(bad);
    const stopped = trainer.finishRun();
    if (stopped) return stopped;
    if (cfg.report && root) {
      await writePretrainReport(run, {
        cfg,
        wcfg,
        tok,
        dirs,
        adapter: describeAdapter(rt.ctx),
        seconds: trainer.seconds,
        lastLosses: st.lastLosses,
      });
      log(`report: ${run.report}`);
    }
    return trainer.done();
  } finally {
    trainer.close();
    p.dispose();
    await settle(rt);
  }
}

/** The models, optimizers and sampler of a pretraining run, and one step of each stage. */
class PretrainParts {
  trainer!: Trainer;
  sampler: Sampler | null = null;
  tokOpt: AdamW | null;
  wmOpt: AdamW;
  readonly #wmNames: string[];
  readonly #tokNames: string[];
  /** The current stage's captured world-action step (single process). */
  #world: { stage: 1 | 2; step: CapturedWorldStep; fallbacks: number } | null = null;

  constructor(
    readonly cfg: PretrainConfig,
    readonly model: WorldActionModel,
    readonly wcfg: WorldActionConfig,
    readonly tok: Tokenizer | null,
    readonly dirs: string[],
    readonly run: RunDir,
    /** Null in a single-process run. */
    readonly dp: DataParallel | null = null,
    /** Data parallel: the stop request (Ctrl-C), sent with the gradients. */
    readonly signal?: AbortSignal,
  ) {
    const S1 = cfg.stage1Steps;
    // The tokenizer trains with Adam (jowa.md), i.e. no weight decay.
    this.tokOpt = tok && S1 > 0 ? this.#adamw(tok.namedParameters(), cfg.lr1, 0) : null;
    // --precision f16: f16 weight copies for the products and loss scaling (optim.ts).
    this.wmOpt = this.#adamw(
      model.namedParameters(),
      S1 > 0 ? cfg.lr1 : cfg.lr2,
      cfg.weightDecay,
      cfg.precision === "f16",
    );
    this.#wmNames = model.namedParameters().map(([n]) => n);
    this.#tokNames = tok ? tok.namedParameters().map(([n]) => n) : [];
  }

  #adamw(params: [string, Tensor][], lr: number, wd: number, mixedPrecision = false): AdamW {
    const maxGradNorm = this.cfg.gradClip;
    return new AdamW(params, { lr, weightDecay: wd, maxGradNorm, noDecay, mixedPrecision });
  }

  get #stage(): 1 | 2 {
    return this.trainer.state.stage;
  }

  modules(): ModulePart[] {
    return [
      {
        file: "world_action",
        module: this.model,
        extra: this.model.targetTensors(),
        config: this.wcfg,
      },
      ...(this.tok ? [{ file: "tokenizer", module: this.tok, config: this.tok.cfg }] : []),
    ];
  }

  optimizers(): OptimizerPart[] {
    return [
      { name: "world_action", opt: this.wmOpt, paramNames: this.#wmNames },
      ...(this.tokOpt && this.#stage === 1
        ? [{ name: "tokenizer", opt: this.tokOpt, paramNames: this.#tokNames }]
        : []),
    ];
  }

  state(): Record<string, unknown> {
    return { sampler: this.sampler!.state(), tokenizerFrozen: this.#stage === 2 };
  }

  lrs(stage: 1 | 2): Record<string, number> {
    return stage === 1 && this.tokOpt
      ? { world_action: this.wmOpt.lr, tokenizer: this.tokOpt.lr }
      : { world_action: this.wmOpt.lr };
  }

  /** A resumed stage-2 run: no tokenizer optimizer, the stage-2 learning rate. */
  dropTokenizerOptimizer(): void {
    this.tokOpt?.dispose();
    this.tokOpt = null;
    this.wmOpt.lr = this.cfg.lr2;
  }

  freezeTokenizer(): void {
    if (!this.tok) return;
    this.tok.eval();
    for (const p of this.tok.parameters()) p.requiresGrad = false;
  }

  async openStageSampler(s: 1 | 2, state?: SamplerState): Promise<void> {
    this.sampler?.close();
    const cfg = this.cfg;
    const src = s === 2 && this.tok
      ? this.dirs.map((d) => path.join(this.run.tokens, path.basename(d)))
      : this.dirs;
    this.sampler = await openSampler(src, {
      batchSize: state ? undefined : cfg.batch,
      segmentLength: state ? undefined : cfg.segmentLength,
      seed: state ? undefined : cfg.seed + s,
      workers: cfg.workers,
      state,
      shard: this.dp ? { index: this.dp.rank, count: this.dp.size } : undefined,
    });
  }

  /**
   * Data parallel: rank 0's weights (target head included) on every rank, and with
   * `optimizers` its optimizer moments, steps and learning rates (a resume).
   */
  async broadcastState(optimizers: boolean): Promise<void> {
    const opts = optimizers ? this.optimizers().map((o) => o.opt) : [];
    await broadcastRunState(this.dp!, this.modules(), opts);
  }

  /** Freeze and drop the tokenizer, tokenize the stores, a fresh AdamW, copy the target. */
  async enterStage2(log: (s: string) => void): Promise<void> {
    const cfg = this.cfg;
    this.#disposeWorldStep(); // it updates the stage-1 optimizer
    if (this.tok) {
      this.tokOpt?.dispose();
      this.tokOpt = null;
      this.freezeTokenizer();
      // Data parallel: rank 0 writes the token stores, the others wait for them below.
      for (const d of this.dp && this.dp.rank !== 0 ? [] : this.dirs) {
        const dst = path.join(this.run.tokens, path.basename(d));
        if (fs.existsSync(path.join(dst, "manifest.json"))) continue;
        log(`tokenizing ${path.basename(d)} with the frozen tokenizer into ${dst}`);
        await tokenizeStore(
          d,
          dst,
          frameEncoder(this.tok, Math.min(cfg.batch * cfg.segmentLength, ENCODE_CHUNK)),
          {
            tokenizer: { config: cfg.tokenizer, step: this.trainer.state.step, run: this.run.root },
            vocabSize: this.tok.cfg.vocab,
            restart: true,
          },
        );
      }
      await this.dp?.comm.barrier();
    }
    this.wmOpt.dispose();
    const f16 = cfg.precision === "f16";
    this.wmOpt = this.#adamw(this.model.namedParameters(), cfg.lr2, cfg.weightDecay, f16);
    this.model.updateTarget();
  }

  /** One step of `stage` at global step `step`. */
  async step(step: number, stage: 1 | 2): Promise<StepTensors> {
    const cfg = this.cfg;
    const batch = await this.sampler!.next();
    const arrays = worldBatchArrays(batch, {
      actions: this.wcfg.actions,
      poison: step === cfg.injectNanAt,
    });
    const dp = this.dp;
    const seed = dp ? rankStepSeed(cfg.seed, step, dp.rank) : stepSeed(cfg.seed, step);
    const { tok, tokOpt, wmOpt } = this;
    const kept = tidy(() => {
      const out: Record<string, Tensor> = {};
      const norms: Record<string, Tensor> = {};
      let ids: Tensor | undefined;
      if (stage === 1 && tok && tokOpt) {
        // Data parallel: updated below, after the all-reduce (`ids` are made already).
        const shape = { B: arrays.B, L: arrays.L, tokenizerBatch: cfg.tokenizerBatch };
        ids = trainTokenizerStep(tok, tokOpt, batch.frames!, shape, !!dp, out, norms);
      }
      let parts: WorldLossParts;
      if (dp) {
        // Forward and backward replayed; the gradients are averaged and applied below.
        parts = this.#worldStep(stage)(arrays, seed, ids);
      } else {
        // A replay's outputs are overwritten by the next replay; the readback comes later.
        parts = copyParts(this.#worldStep(stage)(arrays, seed, ids));
        norms.world_action = snapshot(wmOpt.clipStats);
      }
      for (const [k, v] of Object.entries(parts)) if (v) out[k] = v;
      return { out, norms };
    });
    for (const t of [...Object.values(kept.out), ...Object.values(kept.norms)]) keep(t);
    const tokTrains = stage === 1 ? tokOpt : null; // stage 2: the tokenizer is frozen
    if (dp && await averageAndUpdate(dp, tokTrains, wmOpt, kept, !!this.signal?.aborted)) {
      this.trainer.state.stop = "interrupted";
    }
    wmOpt.zeroGrad();
    tokOpt?.zeroGrad();
    if (stage === 2 && (step - cfg.stage1Steps) % cfg.targetEvery === 0) {
      this.model.updateTarget();
    }
    this.#reportFallbacks();
    return kept;
  }

  /** The captured step of `stage` on the current optimizer (made on first use). */
  #worldStep(stage: 1 | 2): CapturedWorldStep {
    if (this.#world?.stage !== stage) {
      this.#disposeWorldStep();
      const cfg = this.cfg;
      // Data parallel: without the update (train/captured_grads.ts).
      const step = (this.dp ? captureWorldActionGrads : captureWorldActionStep)(
        this.model,
        this.wmOpt,
        {
          joint: stage === 2,
          weights: { beta: cfg.beta, alpha: cfg.alpha, gamma: cfg.gamma },
          replay: cfg.replay !== false,
        },
      );
      this.#world = { stage, step, fallbacks: 0 };
    }
    return this.#world.step;
  }

  /** A step that cannot be replayed runs eagerly: say so once (the run stays correct). */
  #reportFallbacks(): void {
    const w = this.#world;
    if (!w) return;
    const { fallbacks } = w.step.stats();
    for (const f of fallbacks.slice(w.fallbacks)) this.trainer.log(`${f}; running it eagerly`);
    w.fallbacks = fallbacks.length;
  }

  #disposeWorldStep(): void {
    const w = this.#world;
    if (!w) return;
    const s = w.step.stats();
    if (this.cfg.replay !== false) {
      this.trainer.log(`stage ${w.stage}: ${s.replays} of ${s.calls} steps replayed`);
    }
    w.step.dispose();
    this.#world = null;
  }

  dispose(): void {
    this.#disposeWorldStep();
    this.sampler?.close();
    this.tokOpt?.dispose();
    this.wmOpt.dispose();
  }
}

/** Vocabulary of token stores (from their manifests; 2048 when not recorded). */
function tokenVocab(manifests: StoreManifest[]): number {
  const v = manifests.map((m) => Number((m.source as { vocabSize?: number })?.vocabSize ?? 2048));
  return Math.max(...v);
}
