/**
 * Finds and loads what evaluation needs from a checkpoint: the world-action model and the
 * tokenizer, each built from the config stored in its safetensors metadata.
 *
 * `--checkpoint` may name a checkpoint directory (`world_action.safetensors` +
 * `tokenizer.safetensors`, as `deno task pretrain` writes under runs/<name>/checkpoints/),
 * a run directory (its newest complete checkpoint), or a world-action `.safetensors` file
 * (the tokenizer beside it, or `--tokenizer`). Stored configs are checked first
 * (checkpoint/stored_config.ts), and weights must be finite (checkpoint/model_checkpoint.ts).
 *
 * @module
 */
import * as path from "node:path";
import { loadModule, loadWorldActionModel } from "./model_checkpoint.ts";
import { Tokenizer } from "../models/tokenizer/model.ts";
import { tokenGrid, type TokenizerConfig } from "../models/tokenizer/config.ts";
import type { WorldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { RunDir } from "./run_dir.ts";
import { checkConfig, CheckpointError, storedConfigText } from "./stored_config.ts";

export { CheckpointError, storedConfig } from "./stored_config.ts";

/** Files of a resolved checkpoint. */
export interface CheckpointFiles {
  worldAction: string;
  tokenizer: string;
}

const WAM_FILE = "world_action.safetensors";
const TOK_FILE = "tokenizer.safetensors";

function stat(p: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(p);
  } catch {
    return null;
  }
}

/** Resolve `--checkpoint` (and an optional `--tokenizer`) to the two files. */
export function resolveCheckpoint(target: string, tokenizer?: string): CheckpointFiles {
  const info = stat(target);
  if (!info) throw new CheckpointError(`checkpoint not found: ${target}`);
  let dir: string;
  let worldAction: string;
  if (info.isFile) {
    worldAction = target;
    dir = path.dirname(target);
  } else if (stat(path.join(target, WAM_FILE))) {
    dir = target;
    worldAction = path.join(dir, WAM_FILE);
  } else {
    const latest = new RunDir(target).latestCheckpoint();
    if (!latest) {
      throw new CheckpointError(
        `${target}: no checkpoint here (expected ${WAM_FILE} and ${TOK_FILE}, or a run ` +
          "directory with complete checkpoints under checkpoints/)",
      );
    }
    dir = latest;
    worldAction = path.join(dir, WAM_FILE);
  }
  const tok = tokenizer ?? path.join(dir, TOK_FILE);
  for (const f of [worldAction, tok]) {
    if (!stat(f)) {
      throw new CheckpointError(
        `${f} not found${f === tok && !tokenizer ? " (pass --tokenizer <file>)" : ""}`,
      );
    }
  }
  return { worldAction, tokenizer: tok };
}

/** The loaded networks. */
export interface LoadedCheckpoint {
  files: CheckpointFiles;
  worldAction: WorldActionModel;
  tokenizer: Tokenizer;
}

/** The checked stored configs of a resolved checkpoint. */
export interface CheckpointConfigs {
  files: CheckpointFiles;
  worldAction: WorldActionConfig;
  tokenizer: TokenizerConfig;
}

/**
 * Resolve the checkpoint and check both stored configs (kind, fields, types, and that the
 * tokenizer fits the world-action model), reading only the file headers: no GPU needed, so
 * a command can fail fast before it starts one.
 */
export async function checkCheckpoint(
  target: string,
  tokenizerPath?: string,
): Promise<CheckpointConfigs> {
  const files = resolveCheckpoint(target, tokenizerPath);
  const wcfg = checkConfig(
    files.worldAction,
    await storedConfigText(files.worldAction),
    "world-action",
  );
  const tcfg = checkConfig(files.tokenizer, await storedConfigText(files.tokenizer), "tokenizer");
  const grid = tokenGrid(tcfg);
  if (tcfg.vocab > wcfg.obsVocab || grid * grid !== wcfg.obsTokens) {
    throw new CheckpointError(
      `${files.tokenizer}: tokenizer (${tcfg.vocab} codes, ${grid * grid} tokens per frame) ` +
        `does not fit the world-action model of ${files.worldAction} ` +
        `(${wcfg.obsVocab} codes, ${wcfg.obsTokens} tokens)`,
    );
  }
  return { files, worldAction: wcfg, tokenizer: tcfg };
}

/** Build both networks from their stored configs and load their weights. */
export async function loadCheckpoint(
  target: string,
  tokenizerPath?: string,
): Promise<LoadedCheckpoint> {
  const { files, worldAction: wcfg, tokenizer: tcfg } = await checkCheckpoint(
    target,
    tokenizerPath,
  );
  const tokenizer = new Tokenizer(tcfg);
  const worldAction = new WorldActionModel(wcfg);
  await loadWorldActionModel(files.worldAction, worldAction);
  await loadModule(files.tokenizer, tokenizer);
  worldAction.eval();
  tokenizer.eval();
  return { files, worldAction, tokenizer };
}
