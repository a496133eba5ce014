/**
 * The pretraining loop (library form of `deno task pretrain`).
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
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { backward } from "../kernels/core/autograd.ts";
import { copyTensor } from "../kernels/nn/module.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { initRuntime, type Runtime } from "../kernels/core/runtime.ts";
import { keep, type Tensor, tidy } from "../kernels/core/tensor.ts";
import { zeros } from "../kernels/ops/mod.ts";
import { describeAdapter } from "../kernels/core/device.ts";
import { type WorldActionConfig, worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import type { Tokenizer } from "../models/tokenizer/model.ts";
import { StepProgress } from "../util/progress.ts";
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
import { LossReadback, type NonFinite, type StepValues } from "./loss_readback.ts";
import { MetricsLog } from "./metrics_log.ts";
import type { PretrainConfig } from "./pretrain_options.ts";
import { writePretrainReport } from "./pretrain_report.ts";
import { RunDir, writeFileAtomic } from "../checkpoint/run_dir.ts";
import { ENCODE_CHUNK, frameEncoder, makeTokenizer, tokenizerStep } from "./tokenizer_stage.ts";
import {
  loadTrainCheckpoint,
  type ModulePart,
  type OptimizerPart,
  readTrainState,
  saveTrainCheckpoint,
} from "../checkpoint/train_checkpoint.ts";
import { worldBatchArrays } from "./world_batch.ts";
import { worldActionStep } from "./world_step.ts";

/** How a run ended. */
export interface PretrainResult {
  status: "done" | "interrupted" | "nonfinite";
  /** Last step whose update was applied (and, unless non-finite, checkpointed). */
  step: number;
  run: RunDir;
  nonFinite?: NonFinite;
  /** Checkpoint directory holding the last good state. */
  checkpoint: string | null;
}

/** Hooks of {@link pretrain}. */
export interface PretrainHooks {
  /** Status lines (default: stderr). */
  log?: (line: string) => void;
  /** Stop gracefully (checkpoint, then return "interrupted") once aborted. */
  signal?: AbortSignal;
  /** Every readback's per-step values (tests). */
  onSteps?: (steps: StepValues[]) => void;
}

/** Error for a run directory that cannot be started or resumed (one line, no stack). */
export class RunError extends Error {
  override name = "RunError";
}

/** Dropout seed of a global step: a hash of (seed, step), never a running RNG state. */
export function stepSeed(seed: number, step: number): number {
  let h = (Math.imul(seed + 0x632be5ab, 0x9e3779b1) ^ Math.imul(step, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  return (h ^ (h >>> 12)) >>> 0;
}

// Decay the matrices only (IRIS/minGPT convention): biases, norms and embeddings are exempt.
const noDecay = (n: string) =>
  n.endsWith(".bias") || /(^|\.)(ln|norm)/.test(n) || n.startsWith("embed");

/** Run (or resume) pretraining as configured; `resume` is the run directory to continue. */
export async function pretrain(
  cfg: PretrainConfig,
  resume: string | null = null,
  hooks: PretrainHooks = {},
): Promise<PretrainResult> {
  const log = hooks.log ?? ((s: string) => console.error(s));
  const run = new RunDir(resume ?? path.join(cfg.runsDir, cfg.name));
  const ckpt = resume ? run.latestCheckpoint() : null;
  if (resume) {
    if (!fs.existsSync(run.config)) throw new RunError(`${run.root}: not a run directory`);
    if (!ckpt) throw new RunError(`${run.root}: no complete checkpoint to resume from`);
  } else if (fs.existsSync(run.config)) {
    throw new RunError(`${run.root} exists: resume it with --resume ${run.root} or pick --name`);
  }
  run.create();
  if (!resume) writeFileAtomic(run.config, JSON.stringify(cfg, null, 2) + "\n");
  fs.rmSync(run.nonfinite, { force: true });

  const rt = await initRuntime();
  log(`adapter: ${describeAdapter(rt.ctx)}`);
  const dataRoot = cfg.data ??
    await ensureCollected(
      path.join(run.root, "data"),
      cfg.collectGames,
      cfg.collectSteps,
      cfg.seed,
      log,
    );
  const dirs = datasetStoreDirs(dataRoot, cfg.games ?? undefined);
  const manifests = dirs.map((d) => readManifest(d));
  const form = manifests[0].form;
  const tok = form === "frames" ? makeTokenizer(cfg.tokenizer, cfg.seed) : null;
  const obsVocab = tok ? tok.cfg.vocab : tokenVocab(manifests);
  const wcfg: WorldActionConfig = worldActionConfig(cfg.model, {
    obsVocab,
    timesteps: cfg.segmentLength,
    seed: cfg.seed,
  });
  const model = new WorldActionModel(wcfg);
  log(
    `world-action model ${cfg.model}: ${model.parameterCount()} parameters` +
      (tok ? `; tokenizer ${cfg.tokenizer}: ${tok.parameterCount()} parameters` : "") +
      `; games ${manifests.map((m) => m.game).join(", ")} (${form})`,
  );

  const S1 = cfg.stage1Steps, S2 = cfg.stage2Steps, total = S1 + S2;
  const adamw = (params: [string, Tensor][], lr: number, wd: number) =>
    new AdamW(params, { lr, weightDecay: wd, maxGradNorm: cfg.gradClip, noDecay });
  // The tokenizer trains with Adam (jowa.md), i.e. no weight decay.
  let tokOpt = tok && S1 > 0 ? adamw(tok.namedParameters(), cfg.lr1, 0) : null;
  let wmOpt = adamw(model.namedParameters(), S1 > 0 ? cfg.lr1 : cfg.lr2, cfg.weightDecay);
  let stage: 1 | 2 = S1 > 0 ? 1 : 2;
  let step = 0;
  let samplerState: SamplerState | undefined;

  const modules = (): ModulePart[] => [
    { file: "world_action", module: model, extra: model.targetTensors(), config: wcfg },
    ...(tok ? [{ file: "tokenizer", module: tok as Tokenizer, config: tok.cfg }] : []),
  ];
  const wmNames = model.namedParameters().map(([n]) => n);
  const tokNames = tok ? tok.namedParameters().map(([n]) => n) : [];
  const optimizers = (): OptimizerPart[] => [
    { name: "world_action", opt: wmOpt, paramNames: wmNames },
    ...(tokOpt && stage === 1 ? [{ name: "tokenizer", opt: tokOpt, paramNames: tokNames }] : []),
  ];

  if (ckpt) {
    const saved = readTrainState(ckpt);
    stage = saved.stage as 1 | 2;
    if (stage === 2) {
      tokOpt?.dispose();
      tokOpt = null;
      wmOpt.lr = cfg.lr2;
    }
    const st = await loadTrainCheckpoint(ckpt, modules(), optimizers());
    step = st.step;
    samplerState = st.sampler as SamplerState;
    log(`resumed ${run.root} at step ${step} (stage ${stage}) from ${ckpt}`);
  }

  const metrics = new MetricsLog(run.metrics);
  metrics.truncateAfter(step);
  const readback = new LossReadback();
  const bar = new StepProgress({
    label: "pretrain",
    total,
    force: cfg.progress,
    // Fractional rates (a CPU adapter runs well under one step per second).
    format: (n) => (Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 2 : 0)),
  });
  let sampler: Sampler | null = null;
  let lastCkpt = ckpt;
  let stop: "interrupted" | null = null;
  const onAbort = () => (stop = "interrupted");
  hooks.signal?.addEventListener("abort", onAbort);
  if (hooks.signal?.aborted) stop = "interrupted";
  let interval = { start: performance.now(), firstStep: step + 1 };
  const t0 = performance.now();
  const lastLosses: Record<string, number> = {};

  let lastCkptStep = ckpt ? step : -1;
  const saveCheckpoint = async () => {
    lastCkptStep = step;
    lastCkpt = await saveTrainCheckpoint(run, modules(), optimizers(), {
      step,
      stage,
      seed: cfg.seed,
      sampler: sampler!.state(),
      tokenizerFrozen: stage === 2,
      savedAt: new Date().toISOString(),
    }, cfg.keep);
  };

  /** Read the pending steps back; false when a value was not finite. */
  const drain = async (): Promise<NonFinite | null> => {
    if (readback.size === 0) return null;
    const { steps, nonFinite } = await readback.flush();
    hooks.onSteps?.(steps);
    if (nonFinite) return nonFinite;
    const secs = (performance.now() - interval.start) / 1000;
    const n = step - interval.firstStep + 1;
    for (const st of [1, 2] as const) {
      const mine = steps.filter((s) => s.stage === st);
      if (!mine.length) continue;
      const losses: Record<string, number> = {};
      for (const k of Object.keys(mine[0].losses)) {
        losses[k] = mine.reduce((a, s) => a + s.losses[k], 0) / mine.length;
        lastLosses[k] = losses[k];
      }
      metrics.append({
        step: mine.at(-1)!.step,
        stage: st,
        losses,
        gradNorm: mine.at(-1)!.gradNorm,
        lr: st === 1 && tokOpt
          ? { world_action: wmOpt.lr, tokenizer: tokOpt.lr }
          : { world_action: wmOpt.lr },
        stepsPerSec: secs > 0 ? n / secs : 0,
        elapsed: (performance.now() - t0) / 1000,
      });
    }
    const last = steps.at(-1)!;
    const shown: Record<string, number | string> = {
      stage: String(last.stage),
      "steps/s": (secs > 0 ? n / secs : 0).toFixed(2), // this interval's rate
      loss: last.losses.total,
    };
    for (const k of ["world", "action", "tok_recon"]) {
      if (last.losses[k] !== undefined) shown[k] = last.losses[k];
    }
    bar.update(step, shown, true);
    interval = { start: performance.now(), firstStep: step + 1 };
    return null;
  };

  const stopNonFinite = (bad: NonFinite): PretrainResult => {
    const diag = {
      ...bad,
      value: String(bad.value),
      message: `non-finite ${bad.part} loss at step ${bad.step} (stage ${bad.stage})`,
      lastGoodCheckpoint: lastCkpt,
    };
    writeFileAtomic(run.nonfinite, JSON.stringify(diag, null, 2) + "\n");
    bar.finish();
    log(
      `error: ${diag.message}; stopped without saving. Last good checkpoint: ` +
        `${lastCkpt ?? "none"} (continue with --resume ${run.root})`,
    );
    return { status: "nonfinite", step: bad.step, run, nonFinite: bad, checkpoint: lastCkpt };
  };

  const openStageSampler = async (s: 1 | 2, state?: SamplerState) => {
    sampler?.close();
    const src = s === 2 && tok ? dirs.map((d) => path.join(run.tokens, path.basename(d))) : dirs;
    sampler = await openSampler(src, {
      batchSize: state ? undefined : cfg.batch,
      segmentLength: state ? undefined : cfg.segmentLength,
      seed: state ? undefined : cfg.seed + s,
      workers: cfg.workers,
      state,
    });
  };

  const enterStage2 = async () => {
    stage = 2;
    if (tok) {
      tokOpt?.dispose();
      tokOpt = null;
      tok.eval();
      for (const p of tok.parameters()) p.requiresGrad = false;
      for (const d of dirs) {
        const dst = path.join(run.tokens, path.basename(d));
        if (fs.existsSync(path.join(dst, "manifest.json"))) continue;
        log(`tokenizing ${path.basename(d)} with the frozen tokenizer into ${dst}`);
        await tokenizeStore(
          d,
          dst,
          frameEncoder(tok, Math.min(cfg.batch * cfg.segmentLength, ENCODE_CHUNK)),
          {
            tokenizer: { config: cfg.tokenizer, step, run: run.root },
            vocabSize: tok.cfg.vocab,
            restart: true,
          },
        );
      }
    }
    wmOpt.dispose();
    wmOpt = adamw(model.namedParameters(), cfg.lr2, cfg.weightDecay);
    model.updateTarget();
  };

  try {
    if (stage === 2 && tok) {
      tok.eval();
      for (const p of tok.parameters()) p.requiresGrad = false;
    }
    if (!ckpt && stage === 2) await enterStage2(); // --stage1-steps 0: straight to stage 2
    if (step >= S1 && stage === 1 && step < total) {
      await enterStage2();
      samplerState = undefined; // the saved position was the stage-1 stream's
    }
    await openStageSampler(stage, samplerState);
    bar.update(step, {}, true);
    while (step < total && !stop) {
      if (step === S1 && stage === 1) {
        const bad = await drain();
        if (bad) return stopNonFinite(bad);
        await enterStage2();
        await openStageSampler(2);
      }
      const batch = await sampler!.next();
      step++;
      const arrays = worldBatchArrays(batch, {
        actions: wcfg.actions,
        poison: step === cfg.injectNanAt,
      });
      const seed = stepSeed(cfg.seed, step);
      const kept = tidy(() => {
        const out: Record<string, Tensor> = {};
        const norms: Record<string, Tensor> = {};
        let ids: Tensor | undefined;
        if (stage === 1 && tok && tokOpt) {
          const t = tokenizerStep(tok, batch.frames!, arrays.B, arrays.L, cfg.tokenizerBatch);
          tokOpt.zeroGrad();
          backward(t.losses.total);
          tokOpt.update();
          Object.assign(out, t.losses.parts);
          out.tok_total = t.losses.total;
          norms.tokenizer = snapshot(tokOpt.clipStats);
          ids = t.ids;
        }
        const parts = worldActionStep(model, wmOpt, arrays, {
          joint: stage === 2,
          stepSeed: seed,
          weights: { beta: cfg.beta, alpha: cfg.alpha, gamma: cfg.gamma },
          obsTokens: ids,
        });
        norms.world_action = snapshot(wmOpt.clipStats);
        for (const [k, v] of Object.entries(parts)) if (v) out[k] = v;
        return { out, norms };
      });
      for (const t of [...Object.values(kept.out), ...Object.values(kept.norms)]) keep(t);
      wmOpt.zeroGrad();
      tokOpt?.zeroGrad();
      if (stage === 2 && (step - S1) % cfg.targetEvery === 0) model.updateTarget();
      readback.push(step, stage, kept.out, kept.norms);
      if (step === cfg.stopAt) stop = "interrupted";
      const ckptDue = step % cfg.ckptEvery === 0 || step === total || step === S1 || !!stop;
      if (step % cfg.logEvery === 0 || ckptDue) {
        const bad = await drain();
        if (bad) return stopNonFinite(bad);
        if (ckptDue) await saveCheckpoint();
      } else {
        await rt.flush();
      }
    }
    if (stop && lastCkptStep !== step) {
      // Interrupted after this step's checkpoint decision: read back, then save.
      const bad = await drain();
      if (bad) return stopNonFinite(bad);
      await saveCheckpoint();
    }
    bar.finish();
    if (stop) {
      log(
        `interrupted at step ${step}: checkpoint ${lastCkpt}; continue with --resume ${run.root}`,
      );
      return { status: "interrupted", step, run, checkpoint: lastCkpt };
    }
    if (cfg.report) {
      await writePretrainReport(run, {
        cfg,
        wcfg,
        tok,
        dirs,
        adapter: describeAdapter(rt.ctx),
        seconds: (performance.now() - t0) / 1000,
        lastLosses,
      });
      log(`report: ${run.report}`);
    }
    log(`done: ${step} steps; checkpoint ${lastCkpt}`);
    return { status: "done", step, run, checkpoint: lastCkpt };
  } finally {
    readback.discard();
    hooks.signal?.removeEventListener("abort", onAbort);
    (sampler as Sampler | null)?.close();
    tokOpt?.dispose();
    wmOpt.dispose();
    await settle(rt);
  }
}

/** A kept copy of an optimizer's [norm, scale] (the next update overwrites the original). */
function snapshot(stats: Tensor): Tensor {
  const t = zeros([2]);
  copyTensor(stats, t);
  return t;
}

/** Vocabulary of token stores (from their manifests; 2048 when not recorded). */
function tokenVocab(manifests: StoreManifest[]): number {
  const v = manifests.map((m) => Number((m.source as { vocabSize?: number })?.vocabSize ?? 2048));
  return Math.max(...v);
}

async function settle(rt: Runtime): Promise<void> {
  try {
    await rt.sync();
  } catch { /* the device may be gone; nothing left to wait for */ }
}
