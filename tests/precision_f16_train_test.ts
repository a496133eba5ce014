/**
 * `--precision f16` end to end on the world-action model (f16 weight copies and f16-rounded
 * activations in every product, f32 accumulation, f32 masters, dynamic loss scaling):
 *
 * - forward: the tiny model's observation logits and Q values with f16 weights against f32
 *   (tolerances in README "Precision");
 * - stage-2 (joint) training for 30 steps, f16 against f32 from the same initialization and
 *   data: the f16 loss falls and stays within the documented tolerance of the f32 loss at every
 *   step, and every attention kernel of the f16 run reads q, k, v stored as f16 (none of the
 *   f32 run's);
 * - `pretrain` with precision f16 (replayed steps equal eager ones bit for bit, stored in
 *   config.json, f32 checkpoints with the loss scale, losses beside the f32 run's, and a
 *   resume that refills the f16 weight copies);
 * - a checkpoint taken after loss-scale overflows and growth resumes bit for bit (scale and
 *   counters restored); one without a saved scale loads as a fresh scaler;
 * - `finetune` with precision f16 (both stages replayed, losses beside the f32 run's);
 * - the CLIs refuse `--precision f16` on an adapter without shader-f16 (simulated with
 *   `JOWA_NO_F16=1`) in one line, before touching the run directory, and reject bf16.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initRuntime, runtime } from "../kernels/core/runtime.ts";
import { readAll, tensor, tidy } from "../kernels/core/tensor.ts";
import { noGrad } from "../kernels/core/autograd.ts";
import { AdamW } from "../kernels/nn/optim.ts";
import { f16Candidates, F16Shadows } from "../kernels/nn/f16_shadow.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { worldBatchArrays } from "../train/world_batch.ts";
import { segmentForward, worldActionStep } from "../train/world_step.ts";
import { stepSeed } from "../util/rng.ts";
import { sampleSegments, spriteEnv } from "./helpers/pretrain_envs.ts";
import { writeTokenStores } from "./helpers/pretrain_stores.ts";
import { DEFAULT_CONFIG, parsePretrainArgs, resolveConfig } from "../train/pretrain_options.ts";
import { parseFinetuneArgs } from "../train/finetune_options.ts";
import { finetune } from "../train/finetuner.ts";
import { finetuneFixture, tinyFinetuneConfig } from "./helpers/finetune_fixture.ts";
import { parseEvalArgs } from "../eval/eval_options.ts";
import { pretrain } from "../train/pretrainer.ts";
import type { StepValues } from "../train/loss_readback.ts";
import { readSafetensors, writeSafetensors } from "../models/safetensors/mod.ts";
import { RunDir } from "../checkpoint/run_dir.ts";
import {
  loadTrainCheckpoint,
  LOSS_SCALE,
  LOSS_SCALE_COUNTERS,
  saveTrainCheckpoint,
} from "../checkpoint/train_checkpoint.ts";

await initRuntime();
const GPU_TEST = { sanitizeOps: false, sanitizeResources: false };
const HAS_F16 = runtime().ctx.hasF16;

const env = spriteEnv(2);
const L = 4;
const cfg = () =>
  worldActionConfig("tiny", {
    obsTokens: env.P,
    timesteps: L,
    obsVocab: env.P + 1,
    dropout: 0,
    qDropout: 0,
    seed: 3,
  });

/** Relative L-infinity error: max |x - y| / max |y|. */
function relErr(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < y.length; i++) {
    num = Math.max(num, Math.abs(x[i] - y[i]));
    den = Math.max(den, Math.abs(y[i]));
  }
  return num / den;
}

Deno.test({
  name: "f16 forward: observation logits and Q values within 0.5% (L-inf, relative) of f32",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const model = new WorldActionModel(cfg());
    model.eval();
    const a = worldBatchArrays(sampleSegments(env, 8, L, 5), { validActions: () => env.actions });
    const forward = () =>
      noGrad(() =>
        tidy(() => {
          const obsT = tensor(a.obsTokens!, [a.B, a.L, a.P], "i32");
          const out = segmentForward(model, a, obsT, { stepSeed: 1, target: false });
          return [out.obsLogits!, out.q!.values];
        })
      );
    const [obs32, q32] = await readAll(forward());
    const shadows = new F16Shadows(f16Candidates(model.parameters()));
    const [obs16, q16] = await readAll(forward());
    shadows.dispose();
    const eObs = relErr(obs16, obs32), eQ = relErr(q16, q32);
    console.log(
      `f16 vs f32 forward: obs logits ${eObs.toExponential(2)}, Q ${eQ.toExponential(2)}`,
    );
    assert.ok(eObs > 0 && eQ > 0, "the f16 path ran (results differ from f32)");
    assert.ok(eObs < 5e-3, `obs logits: ${eObs}`);
    assert.ok(eQ < 5e-3, `Q values: ${eQ}`);
  },
});

/** 30 joint (stage-2) steps; the total loss of each step. */
async function train(mixed: boolean): Promise<number[]> {
  const model = new WorldActionModel(cfg());
  const opt = new AdamW(model.parameters(), {
    lr: 1e-2,
    weightDecay: 0.01,
    maxGradNorm: 1,
    mixedPrecision: mixed,
  });
  const losses: number[] = [];
  // The attention kernels of the first step, by label: f16 q, k, v exactly in the f16 run.
  const rt = runtime();
  const dispatch = rt.dispatch.bind(rt);
  const attention: string[] = [];
  rt.dispatch = (k, bufs) => {
    if (k.label.startsWith("attention")) attention.push(k.label);
    dispatch(k, bufs);
  };
  for (let step = 1; step <= 30; step++) {
    const arrays = worldBatchArrays(sampleSegments(env, 16, L, step), {
      validActions: () => env.actions,
    });
    if (step === 2) rt.dispatch = dispatch;
    const total = tidy(() =>
      worldActionStep(model, opt, arrays, {
        joint: true,
        stepSeed: stepSeed(0, step),
        weights: { beta: 0.1, alpha: 0.1, gamma: 0.99 },
      }).total
    );
    opt.zeroGrad();
    losses.push((await total.read())[0]);
    total.dispose();
  }
  // Forward, dQ and dK/dV per layer (and nothing else: no eval-path attention in a step).
  const layers = model.cfg.layers;
  assert.equal(attention.length, 3 * layers, `[${attention}]`);
  assert.ok(attention.every((l) => l.endsWith(" f16") === mixed), `[${attention}]`);
  if (mixed) {
    const s = await opt.lossScaler!.read();
    assert.equal(s.skipped, 0, "no overflow at the default scale on this model");
  }
  opt.dispose();
  return losses;
}

Deno.test({
  name: "f16 training: 30 stage-2 steps, the loss falls and stays within 0.5% of the f32 run",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const f32 = await train(false);
    const f16 = await train(true);
    const rel = f16.map((v, i) => Math.abs(v - f32[i]) / Math.abs(f32[i]));
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    console.log(
      `f32 ${f32[0].toFixed(4)} -> ${f32[29].toFixed(4)}, f16 ${f16[0].toFixed(4)} -> ${
        f16[29].toFixed(4)
      }, max relative difference ${Math.max(...rel).toExponential(2)}, mean ${
        mean(rel).toExponential(2)
      }`,
    );
    // Measured: 4.42 (first five) -> 4.22 (last five); the C51 cross-entropy (~ln 51) dominates.
    assert.ok(mean(f16.slice(-5)) < 0.97 * mean(f16.slice(0, 5)), `the f16 loss falls: ${f16}`);
    assert.ok(Math.max(...rel) < 5e-3, `per-step relative difference ${Math.max(...rel)}`);
    assert.ok(rel.some((r) => r > 0), "the runs differ (f16 ran)");
  },
});

Deno.test({
  name: "precision flags: --precision f16 without shader-f16 fails in one line; bf16 rejected",
  ...GPU_TEST,
  fn: async () => {
    const runs = fs.mkdtempSync(path.join(os.tmpdir(), "jowa-f16-"));
    try {
      const cli = async (script: string, args: string[]) => {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", script, ...args],
          env: { JOWA_NO_F16: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        return { code: out.code, err: new TextDecoder().decode(out.stderr).trim() };
      };
      const pre = await cli("train/pretrain.ts", [
        "--precision",
        "f16",
        "--runs-dir",
        runs,
        "--name",
        "x",
      ]);
      assert.equal(pre.code, 1, pre.err);
      assert.match(pre.err, /--precision f16 needs a WebGPU adapter with the 'shader-f16'/);
      assert.equal(pre.err.split("\n").length, 1, pre.err);
      assert.ok(!fs.existsSync(path.join(runs, "x")), "no run directory");
      const bad = await cli("train/pretrain.ts", ["--precision", "bf16", "--runs-dir", runs]);
      assert.equal(bad.code, 2, bad.err);
      assert.match(bad.err, /--precision must be f32 or f16, got 'bf16'/);
      const ft = await cli("train/finetune.ts", ["--precision", "fp8"]);
      assert.equal(ft.code, 2, ft.err);
      assert.match(ft.err, /--precision must be f32 or f16/);
    } finally {
      fs.rmSync(runs, { recursive: true, force: true });
    }
  },
});

Deno.test("precision flags parse and default to f32", () => {
  assert.equal(parsePretrainArgs(["--precision", "f16"]).overrides.precision, "f16");
  assert.equal(resolveConfig({}).precision, "f32");
  assert.equal(parseFinetuneArgs(["--precision", "f16"]).overrides.precision, "f16");
  assert.equal(parseEvalArgs(["--checkpoint", "c", "--precision", "f16"])!.precision, "f16");
  assert.equal(parseEvalArgs(["--checkpoint", "c"])!.precision, "f32");
  assert.throws(() => parseEvalArgs(["--checkpoint", "c", "--precision", "bf16"]), /f32 or f16/);
});

Deno.test({
  name: "pretrain --precision f16: replayed, stored in the config, f32 checkpoints, resumable",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "jowa-f16-pretrain-"));
    try {
      const data = await writeTokenStores(path.join(tmp, "data"), ["Pong", "Phoenix"], {
        episodes: 3,
        steps: 12,
        vocab: 16,
        seed: 5,
      });
      const base = {
        ...DEFAULT_CONFIG,
        runsDir: path.join(tmp, "runs"),
        data,
        batch: 4,
        segmentLength: 2,
        stage1Steps: 0,
        stage2Steps: 8,
        logEvery: 1,
        ckptEvery: 4,
        workers: 0,
        report: false,
        seed: 4,
      };
      const run = async (
        name: string,
        precision: "f32" | "f16",
        stopAt = 0,
        resume = false,
        replay = true,
      ) => {
        const steps = new Map<number, StepValues>();
        const lines: string[] = [];
        const cfg = { ...base, name, precision, stopAt: resume ? 0 : stopAt, replay };
        const r = await pretrain(cfg, resume ? path.join(base.runsDir, name) : null, {
          log: (s) => lines.push(s),
          onSteps: (s) => s.forEach((v) => steps.set(v.step, v)),
        });
        return { r, steps, lines };
      };
      const f32 = await run("f32", "f32");
      const f16 = await run("f16", "f16");
      assert.equal(f16.r.status, "done");
      assert.ok(
        f16.lines.some((l) => /stage 2: \d+ of 8 steps replayed/.test(l)),
        f16.lines.join("\n"),
      );
      // The replayed f16 steps (f16 q, k, v in attention, loss scale) equal eager ones.
      const eager = await run("f16e", "f16", 0, false, false);
      assert.ok(!eager.lines.some((l) => /replayed/.test(l)), "--no-replay replayed");
      for (let s = 1; s <= 8; s++) {
        const a = eager.steps.get(s)!, b = f16.steps.get(s)!;
        assert.deepEqual(b.losses, a.losses, `step ${s}: replayed vs eager losses`);
        assert.deepEqual(b.gradNorm, a.gradNorm, `step ${s}: replayed vs eager gradient norms`);
      }
      const cfg = JSON.parse(
        fs.readFileSync(path.join(base.runsDir, "f16", "config.json"), "utf8"),
      );
      assert.equal(cfg.precision, "f16");
      const ck = await readSafetensors(path.join(f16.r.checkpoint!, "world_action.safetensors"));
      for (const [name, t] of ck.tensors) assert.equal(t.dtype, "F32", name);
      // The optimizer file carries the loss scale (2^16: no overflow or growth in 8 steps).
      const optim = await readSafetensors(
        path.join(f16.r.checkpoint!, "optim_world_action.safetensors"),
      );
      assert.deepEqual([...optim.tensors.get(LOSS_SCALE)!.toFloat32()], [2 ** 16]);
      assert.equal(optim.tensors.get(LOSS_SCALE_COUNTERS)!.toFloat32()[0], 8, "8 good steps");
      const rel: number[] = [];
      for (let s = 1; s <= 8; s++) {
        const a = f32.steps.get(s)!.losses.total, b = f16.steps.get(s)!.losses.total;
        assert.ok(Number.isFinite(b), `step ${s}`);
        rel.push(Math.abs(a - b) / Math.abs(a));
      }
      console.log(
        `pretrain f16 vs f32, total loss per step: max relative ${
          Math.max(...rel).toExponential(2)
        }`,
      );
      assert.ok(Math.max(...rel) < 5e-3, `${rel}`);
      assert.ok(rel.some((r) => r > 0), "the f16 run differs from f32 (the f16 path ran)");
      // Stop at step 4 (checkpoint), resume: the copies are refilled from the loaded masters,
      // so the resumed steps equal the uninterrupted run's.
      await run("f16r", "f16", 4);
      const resumed = await run("f16r", "f16", 0, true);
      assert.equal(resumed.r.status, "done");
      for (let s = 5; s <= 8; s++) {
        const a = f16.steps.get(s)!.losses.total, b = resumed.steps.get(s)!.losses.total;
        assert.ok(Math.abs(a - b) <= 1e-5 * Math.abs(a), `resumed step ${s}: ${b} vs ${a}`);
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  },
});

/**
 * The tiny model and an f16 optimizer whose loss scale starts too high (measured: five steps
 * overflow and halve it to 2^23) and doubles after every good step.
 */
function overflowingRun() {
  const model = new WorldActionModel(cfg());
  const opt = new AdamW(model.namedParameters(), {
    lr: 1e-2,
    weightDecay: 0.01,
    maxGradNorm: 1,
    mixedPrecision: { initScale: 2 ** 28, growthInterval: 1, maxScale: 2 ** 60 },
  });
  const parts = {
    modules: [{ file: "world_action", module: model, extra: model.targetTensors() }],
    optimizers: [{
      name: "world_action",
      opt,
      paramNames: model.namedParameters().map(([n]) => n),
    }],
  };
  /** Joint steps `from..to`: the total loss of each. */
  const steps = async (from: number, to: number) => {
    const losses: number[] = [];
    for (let step = from; step <= to; step++) {
      const arrays = worldBatchArrays(sampleSegments(env, 16, L, step), {
        validActions: () => env.actions,
      });
      const total = tidy(() =>
        worldActionStep(model, opt, arrays, {
          joint: true,
          stepSeed: stepSeed(0, step),
          weights: { beta: 0.1, alpha: 0.1, gamma: 0.99 },
        }).total
      );
      opt.zeroGrad();
      losses.push((await total.read())[0]);
      total.dispose();
    }
    return losses;
  };
  const weights = () => readAll(model.parameters());
  const dispose = () => opt.dispose();
  return { model, opt, parts, steps, weights, dispose };
}

Deno.test({
  name: "f16 resume: the loss scale is checkpointed; after an overflow and growth, resume is exact",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "jowa-f16-scale-"));
    const K = 6, N = 10;
    try {
      const run = new RunDir(path.join(tmp, "run"));
      fs.mkdirSync(run.checkpoints, { recursive: true });
      // Uninterrupted: K steps, checkpoint, N - K more.
      const a = overflowingRun();
      await a.steps(1, K);
      const atCkpt = await a.opt.lossScaler!.read();
      console.log(`loss scale at the checkpoint: ${JSON.stringify(atCkpt)}`);
      assert.ok(atCkpt.skipped >= 1, "an overflow (skipped step) before the checkpoint");
      // Measured: {scale 2^24, good 0, skipped 5}: five halvings, then a growth at step 6.
      assert.notEqual(atCkpt.scale, 2 ** 28, "the scale moved before the checkpoint");
      const dir = await saveTrainCheckpoint(run, a.parts.modules, a.parts.optimizers, { step: K });
      const lossesA = await a.steps(K + 1, N);
      const [endA, wA] = [await a.opt.lossScaler!.read(), await a.weights()];
      a.dispose();

      // Resumed: a fresh model and optimizer loaded from the checkpoint.
      const b = overflowingRun();
      await loadTrainCheckpoint(dir, b.parts.modules, b.parts.optimizers);
      assert.deepEqual(await b.opt.lossScaler!.read(), atCkpt, "the scale and counters restored");
      const lossesB = await b.steps(K + 1, N);
      assert.deepEqual(lossesB, lossesA, "resumed losses equal the uninterrupted run's");
      assert.deepEqual(await b.opt.lossScaler!.read(), endA, "the same scale at the end");
      const wB = await b.weights();
      wA.forEach((w, i) => assert.deepEqual(wB[i], w, `parameter ${i}`));
      b.dispose();

      // A checkpoint from before the scale was saved still loads, as a fresh scaler.
      const optFile = path.join(dir, "optim_world_action.safetensors");
      const f = await readSafetensors(optFile);
      const kept = new Map([...f.tensors].filter(([n]) => !n.startsWith("loss_scale.")));
      assert.equal(kept.size, f.tensors.size - 2, "the checkpoint held the loss scale");
      await writeSafetensors(
        optFile,
        new Map(
          [...kept].map(([n, t]) => [n, { dtype: "F32", shape: t.shape, data: t.toFloat32() }]),
        ),
        f.metadata,
      );
      const c = overflowingRun();
      await c.steps(1, 2); // move the scale, so that the load has to reset it
      await loadTrainCheckpoint(dir, c.parts.modules, c.parts.optimizers);
      const fresh = await c.opt.lossScaler!.read();
      assert.deepEqual(fresh, { scale: 2 ** 28, good: 0, skipped: 0, lastSkipped: false });
      const lossesC = await c.steps(K + 1, N);
      assert.ok(lossesC.every(Number.isFinite), `${lossesC}`);
      c.dispose();
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  },
});

Deno.test({
  name: "finetune --precision f16: both stages replayed, losses within 5e-3 of the f32 run",
  ignore: !HAS_F16,
  ...GPU_TEST,
  fn: async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "jowa-f16-finetune-"));
    try {
      const fixture = await finetuneFixture(tmp);
      const run = async (name: string, precision: "f32" | "f16") => {
        const steps = new Map<number, StepValues>();
        const lines: string[] = [];
        const r = await finetune(
          tinyFinetuneConfig(fixture, path.join(tmp, "runs"), {
            name,
            precision,
            batch: 3,
            syntheticBatch: 1,
            steps: 8,
            realSteps: 4,
            targetEvery: 4,
            logEvery: 1,
            seed: 1,
          }),
          null,
          {
            log: (s) => lines.push(s),
            onSteps: (s) => s.forEach((v) => steps.set(v.step, v)),
          },
        );
        assert.equal(r.status, "done");
        return { steps, lines };
      };
      const f32 = await run("f32", "f32");
      const f16 = await run("f16", "f16");
      assert.ok(
        f16.lines.some((l) => /stage 2: \d+ of 4 steps replayed/.test(l)),
        f16.lines.join("\n"),
      );
      const rel: number[] = [];
      for (let s = 1; s <= 8; s++) {
        const a = f32.steps.get(s)!.losses.total, b = f16.steps.get(s)!.losses.total;
        rel.push(Math.abs(a - b) / Math.abs(a));
      }
      console.log(
        `finetune f16 vs f32, total loss per step: max relative ${
          Math.max(...rel).toExponential(2)
        }`,
      );
      assert.ok(Math.max(...rel) < 5e-3, `${rel}`);
      assert.ok(rel.some((r) => r > 0), "the f16 path ran");
      const cfg = JSON.parse(fs.readFileSync(path.join(tmp, "runs", "f16", "config.json"), "utf8"));
      assert.equal(cfg.precision, "f16");
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  },
});
