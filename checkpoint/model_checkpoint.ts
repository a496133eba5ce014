/**
 * Model checkpoints: any Module's parameters (plus optional extra named tensors, such as the
 * world-action model's target Q head) in one safetensors file, written atomically, with
 * metadata `format` (CHECKPOINT_FORMAT), `config` (JSON) and caller entries.
 *
 * Names are the modules' dotted parameter names (`Module.namedParameters()`); for the
 * world-action model see models/world_action_model_spec.ts (`target_q.*` for the target head).
 * Loading checks names and shapes against the model first (checkNames: one
 * CheckpointMismatchError listing missing, unexpected and misshapen tensors) and changes
 * nothing on a mismatch. Values are stored as F32, so a round trip is bit-exact. A stored
 * config must be valid JSON (and, for the world-action model, a valid world-action config),
 * and every loaded tensor finite (CheckpointError naming the file and the first bad tensor).
 *
 * @module
 */
import { assignValues, type Module } from "../kernels/nn/module.ts";
import { readAll, type Tensor } from "../kernels/core/tensor.ts";
import {
  checkNames,
  readSafetensors,
  SafetensorsError,
  type SafetensorsFile,
  writeSafetensors,
} from "../models/safetensors/mod.ts";
import { INTEGER_SIZE_FIELDS, type WorldActionConfig } from "../models/world_action/configs.ts";
import type { WorldActionModel } from "../models/world_action/model.ts";
import { checkConfig, CheckpointError, parseConfigJson } from "./stored_config.ts";

/** Value of the `format` metadata entry written by this module. */
export const CHECKPOINT_FORMAT = "jowa-deno-checkpoint/1";

/** Options of {@link saveModule}. */
export interface SaveOptions {
  /** Extra tensors saved beside the parameters (names must not collide). */
  extra?: readonly [string, Tensor][];
  /** Saved as JSON under `config`. */
  config?: unknown;
  /** More string metadata (e.g. step). */
  metadata?: Record<string, string>;
}

/** What a load found besides the tensors. */
export interface LoadedInfo {
  metadata: Record<string, string>;
  /** Parsed `config` metadata (undefined when absent). */
  config: unknown;
}

function allTensors(module: Module, extra: readonly [string, Tensor][] = []): [string, Tensor][] {
  const named = [...module.namedParameters(), ...extra];
  const seen = new Set<string>();
  for (const [n] of named) {
    if (seen.has(n)) throw new Error(`checkpoint: tensor name '${n}' appears twice`);
    seen.add(n);
  }
  return named;
}

/** Save parameters (one readback for all) and extras to `path`, atomically. */
export async function saveModule(
  path: string,
  module: Module,
  opts: SaveOptions = {},
): Promise<void> {
  const named = allTensors(module, opts.extra);
  for (const [n, t] of named) {
    if (t.dtype !== "f32") throw new Error(`checkpoint: '${n}' is ${t.dtype}, only f32 is saved`);
  }
  const values = await readAll(named.map(([, t]) => t));
  const tensors = new Map(
    named.map(([n, t], i) => [n, { dtype: "F32" as const, shape: t.shape, data: values[i] }]),
  );
  const metadata: Record<string, string> = { ...opts.metadata, format: CHECKPOINT_FORMAT };
  if (opts.config !== undefined) metadata.config = JSON.stringify(opts.config);
  await writeSafetensors(path, tensors, metadata);
}

/**
 * Load `path` into the module's parameters and the extras. Names and shapes must match
 * exactly (CheckpointMismatchError otherwise, before anything is assigned).
 */
export async function loadModule(
  path: string,
  module: Module,
  extra: readonly [string, Tensor][] = [],
): Promise<LoadedInfo> {
  return loadInto(path, await readSafetensors(path), allTensors(module, extra));
}

function loadInto(path: string, file: SafetensorsFile, named: [string, Tensor][]): LoadedInfo {
  const format = file.metadata.format;
  if (format !== undefined && format !== CHECKPOINT_FORMAT) {
    throw new SafetensorsError(`${path}: format '${format}', expected '${CHECKPOINT_FORMAT}'`);
  }
  checkNames(new Map(named.map(([n, t]) => [n, t.shape])), file);
  for (const [n] of named) {
    const st = file.tensors.get(n)!;
    if (st.dtype !== "F32") {
      throw new SafetensorsError(`${path}: '${n}' is ${st.dtype}; checkpoints hold F32`);
    }
  }
  const config = file.metadata.config === undefined
    ? undefined
    : parseConfigJson(path, file.metadata.config);
  // Refuse non-finite weights before anything is assigned: a model holding a NaN would
  // evaluate (or train) silently to garbage. A CPU scan of the bytes already in memory is
  // cheaper and simpler than a GPU reduction plus a readback after the upload.
  for (const [n] of named) {
    const bad = firstNonFiniteF32(file.tensors.get(n)!.data);
    if (bad >= 0) {
      const v = file.tensors.get(n)!.toFloat32()[bad];
      throw new CheckpointError(
        `${path}: tensor '${n}' holds a non-finite value (${v} at element ${bad}); ` +
          "refusing to load it",
      );
    }
  }
  for (const [n, t] of named) assignValues(t, file.tensors.get(n)!.toFloat32());
  return { metadata: file.metadata, config };
}

/** Save a world-action model: parameters, the target Q head and its config. */
export function saveWorldActionModel(
  path: string,
  model: WorldActionModel,
  metadata: Record<string, string> = {},
): Promise<void> {
  return saveModule(path, model, { extra: model.targetTensors(), config: model.cfg, metadata });
}

/**
 * Load a world-action model checkpoint (parameters and target head). A stored config must
 * match the model in every size field (SIZE_FIELDS).
 */
export async function loadWorldActionModel(
  path: string,
  model: WorldActionModel,
): Promise<LoadedInfo> {
  const file = await readSafetensors(path);
  if (file.metadata.config !== undefined) {
    const stored = checkConfig(path, file.metadata.config, "world-action") as unknown as Record<
      string,
      unknown
    >;
    const cfg = model.cfg as unknown as Record<string, unknown>;
    const diffs = SIZE_FIELDS.filter((k) => stored[k] !== cfg[k]);
    if (diffs.length > 0) {
      const what = diffs.map((k) => `${k} (file ${stored[k]}, model ${cfg[k]})`).join(", ");
      throw new SafetensorsError(`${path}: config differs from the model in ${what}`);
    }
  }
  return loadInto(path, file, allTensors(model, model.targetTensors()));
}

/**
 * Index of the first NaN or infinity in little-endian F32 bytes, or -1. Reads the exponent
 * bits straight from the bytes (all ones = not finite), so the data need not be aligned.
 */
export function firstNonFiniteF32(bytes: Uint8Array): number {
  for (let i = 3; i < bytes.length; i += 4) {
    if ((bytes[i] & 0x7f) === 0x7f && (bytes[i - 1] & 0x80) !== 0) return (i - 3) / 4;
  }
  return -1;
}

/** Config fields that shape the parameters or their meaning (dropout and seed may differ). */
const SIZE_FIELDS: readonly (keyof WorldActionConfig)[] = [
  ...INTEGER_SIZE_FIELDS,
  "vMin",
  "vMax",
  "gelu",
];
