/**
 * Training checkpoints: model weights (checkpoint/model_checkpoint.ts), optimizer moments and the
 * training state (step, stage, seed, sampler position) in one directory that appears only
 * when complete (an f16 optimizer's dynamic loss scale and its counters, kernels/nn/loss_scale.ts,
 * travel in its optimizer file, so a resumed f16 run continues at the saved scale): everything is written under a temporary name, synced, then renamed to
 * `step-XXXXXX`, and `state.json` — written last — marks a checkpoint as complete.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Module } from "../kernels/nn/module.ts";
import { assignValues } from "../kernels/nn/module.ts";
import type { AdamW } from "../kernels/nn/optim.ts";
import { readAll, type Tensor } from "../kernels/core/tensor.ts";
import { readSafetensors, writeSafetensors } from "../models/safetensors/mod.ts";
import { loadModule, saveModule } from "./model_checkpoint.ts";
import { checkpointName, type RunDir, syncDir, writeFileAtomic } from "./run_dir.ts";

/** A module saved as `<file>.safetensors` (with extra tensors such as the target Q head). */
export interface ModulePart {
  file: string;
  module: Module;
  extra?: [string, Tensor][];
  config?: unknown;
}

/** An optimizer saved as `optim_<name>.safetensors` (moments named after the parameters). */
export interface OptimizerPart {
  name: string;
  opt: AdamW;
  /**
   * Parameter names in the optimizer's order (`Module.namedParameters()`): explicit because a
   * tensor's `.name` follows whichever module last listed it.
   */
  paramNames: readonly string[];
}

/** What a checkpoint holds besides tensors; must be JSON-serializable. */
export type TrainStateJson = { step: number } & Record<string, unknown>;

/**
 * Write the checkpoint of `state.step` atomically and point latest.json at it; keeps the
 * newest `keep` checkpoints. Returns its directory.
 */
export async function saveTrainCheckpoint(
  run: RunDir,
  modules: readonly ModulePart[],
  optimizers: readonly OptimizerPart[],
  state: TrainStateJson,
  keep = 3,
  /** More files of the checkpoint (name -> bytes), written before state.json. */
  files: Record<string, Uint8Array> = {},
): Promise<string> {
  const name = checkpointName(state.step);
  const final = path.join(run.checkpoints, name);
  const tmp = path.join(run.checkpoints, `.${name}.${Deno.pid}.tmp`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    for (const m of modules) {
      await saveModule(path.join(tmp, `${m.file}.safetensors`), m.module, {
        extra: m.extra,
        config: m.config,
        metadata: { step: String(state.step) },
      });
    }
    for (const o of optimizers) {
      await saveOptimizer(path.join(tmp, `optim_${o.name}.safetensors`), o);
    }
    for (const [name, bytes] of Object.entries(files)) writeFileAtomic(path.join(tmp, name), bytes);
    writeFileAtomic(path.join(tmp, "state.json"), JSON.stringify(state, null, 1));
    syncDir(tmp);
    // Re-saving a step (Ctrl-C right after a periodic checkpoint): swap, never leave a gap.
    const old = `${final}.old`;
    if (fs.existsSync(final)) fs.renameSync(final, old);
    fs.renameSync(tmp, final);
    fs.rmSync(old, { recursive: true, force: true });
    syncDir(run.checkpoints);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  writeFileAtomic(run.latest, JSON.stringify({ step: state.step, dir: name }) + "\n");
  const all = run.completeCheckpoints();
  for (const d of all.slice(0, Math.max(0, all.length - keep))) {
    fs.rmSync(d, { recursive: true, force: true });
  }
  return final;
}

/**
 * The f16 loss scale ([S]) and its counters ([good steps in a row, skipped steps, last step
 * skipped, 0]) in an optimizer file; absent in f32 runs and in checkpoints written before they
 * were saved (loaded as a fresh scaler).
 */
export const LOSS_SCALE = "loss_scale.scale";
/** See {@link LOSS_SCALE}. */
export const LOSS_SCALE_COUNTERS = "loss_scale.counters";

async function saveOptimizer(file: string, o: OptimizerPart): Promise<void> {
  const s = o.opt.stateTensors();
  const names = o.paramNames;
  const values = await readAll([...s.m, ...s.v]);
  const tensors = new Map<string, { dtype: "F32"; shape: readonly number[]; data: Float32Array }>();
  names.forEach((n, i) => {
    const shape = o.opt.params[i].shape;
    tensors.set(`m.${n}`, { dtype: "F32", shape, data: values[i] as Float32Array });
    tensors.set(`v.${n}`, { dtype: "F32", shape, data: values[names.length + i] as Float32Array });
  });
  const ls = o.opt.lossScaler;
  if (ls) {
    const [scale, counters] = await readAll([ls.scale, ls.counters]);
    tensors.set(LOSS_SCALE, { dtype: "F32", shape: [1], data: scale as Float32Array });
    tensors.set(LOSS_SCALE_COUNTERS, { dtype: "F32", shape: [4], data: counters as Float32Array });
  }
  await writeSafetensors(file, tensors, { step: String(s.step), lr: String(o.opt.lr) });
}

/** The training state of a checkpoint directory. */
export function readTrainState(dir: string): TrainStateJson {
  return JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8"));
}

/**
 * Load weights and optimizer moments from a checkpoint directory into the given parts (names
 * and shapes must match) and return its training state.
 */
export async function loadTrainCheckpoint(
  dir: string,
  modules: readonly ModulePart[],
  optimizers: readonly OptimizerPart[],
): Promise<TrainStateJson> {
  const state = readTrainState(dir);
  for (const m of modules) {
    await loadModule(path.join(dir, `${m.file}.safetensors`), m.module, m.extra ?? []);
  }
  for (const o of optimizers) {
    const file = path.join(dir, `optim_${o.name}.safetensors`);
    const f = await readSafetensors(file);
    const s = o.opt.stateTensors();
    if (o.paramNames.length !== o.opt.params.length) {
      throw new Error(
        `optimizer ${o.name}: ${o.paramNames.length} names for ${o.opt.params.length} parameters`,
      );
    }
    o.opt.params.forEach((_, i) => {
      const n = o.paramNames[i];
      const m = f.tensors.get(`m.${n}`), v = f.tensors.get(`v.${n}`);
      if (!m || !v) throw new Error(`${file}: no moments for parameter '${n}'`);
      assignValues(s.m[i], m.toFloat32());
      assignValues(s.v[i], v.toFloat32());
    });
    o.opt.step = Number(f.metadata.step);
    o.opt.lr = Number(f.metadata.lr);
    const ls = o.opt.lossScaler;
    const scale = f.tensors.get(LOSS_SCALE), counters = f.tensors.get(LOSS_SCALE_COUNTERS);
    // Without a saved scale (an older or an f32 checkpoint) the scaler stays fresh.
    if (ls && scale && counters) {
      assignValues(ls.scale, scale.toFloat32());
      assignValues(ls.counters, counters.toFloat32());
    } else ls?.reset();
    o.opt.refreshF16(); // f16 training: the weight copies follow the loaded masters
  }
  return state;
}
