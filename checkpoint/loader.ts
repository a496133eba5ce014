/**
 * Finds and loads what evaluation needs from a checkpoint: the world-action model and the
 * tokenizer, each built from the config stored in its safetensors metadata.
 *
 * `--checkpoint` may name a checkpoint directory (`world_action.safetensors` +
 * `tokenizer.safetensors`, as `deno task pretrain` writes under runs/<name>/checkpoints/),
 * a run directory (its newest complete checkpoint), or a world-action `.safetensors` file
 * (the tokenizer beside it, or `--tokenizer`).
 *
 * @module
 */
import * as path from "node:path";
import { validateConfig, type WorldActionConfig } from "../models/world_action/configs.ts";
import { loadModule, loadWorldActionModel } from "./model_checkpoint.ts";
import { Tokenizer, type TokenizerConfig } from "../models/tokenizer/model.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { RunDir } from "./run_dir.ts";

/** A user-facing problem with the checkpoint (printed without a stack trace). */
export class CheckpointError extends Error {
  override name = "CheckpointError";
}

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

/** The `config` entry of a safetensors file's metadata, reading only the header. */
export async function storedConfig(file: string): Promise<unknown> {
  const f = await Deno.open(file);
  try {
    const head = new Uint8Array(8);
    if ((await f.read(head)) !== 8) throw new CheckpointError(`${file}: not a safetensors file`);
    const n = Number(new DataView(head.buffer).getBigUint64(0, true));
    if (n > 100_000_000) throw new CheckpointError(`${file}: not a safetensors file`);
    const buf = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const r = await f.read(buf.subarray(got));
      if (r === null) throw new CheckpointError(`${file}: truncated header`);
      got += r;
    }
    const meta = JSON.parse(new TextDecoder().decode(buf)).__metadata__ ?? {};
    if (typeof meta.config !== "string") {
      throw new CheckpointError(`${file}: no config in its metadata (not a jowa checkpoint?)`);
    }
    return JSON.parse(meta.config);
  } finally {
    f.close();
  }
}

/** The loaded networks. */
export interface LoadedCheckpoint {
  files: CheckpointFiles;
  worldAction: WorldActionModel;
  tokenizer: Tokenizer;
}

/** Build both networks from their stored configs and load their weights. */
export async function loadCheckpoint(
  target: string,
  tokenizerPath?: string,
): Promise<LoadedCheckpoint> {
  const files = resolveCheckpoint(target, tokenizerPath);
  const wcfg = validateConfig(await storedConfig(files.worldAction) as WorldActionConfig);
  const tcfg = await storedConfig(files.tokenizer) as TokenizerConfig;
  const tokenizer = new Tokenizer(tcfg);
  if (tokenizer.cfg.vocab > wcfg.obsVocab || tokenizer.tokensPerFrame !== wcfg.obsTokens) {
    throw new CheckpointError(
      `tokenizer (${tokenizer.cfg.vocab} codes, ${tokenizer.tokensPerFrame} tokens per frame) ` +
        `does not fit the world-action model (${wcfg.obsVocab}, ${wcfg.obsTokens})`,
    );
  }
  const worldAction = new WorldActionModel(wcfg);
  await loadWorldActionModel(files.worldAction, worldAction);
  await loadModule(files.tokenizer, tokenizer);
  worldAction.eval();
  tokenizer.eval();
  return { files, worldAction, tokenizer };
}
