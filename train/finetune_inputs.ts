/**
 * Fine-tuning's inputs, checked before anything is written: the pretrained checkpoint (its
 * world-action and tokenizer configs must fit each other and the run's segments), the game's
 * store (it must hold `--game`, with at least one batch of transitions, in a form the
 * checkpoint can read), and the task id the game trains under (its proxy's). Each problem is
 * one {@link FinetuneInputError} naming the flag and the file.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type CheckpointFiles, resolveCheckpoint, storedConfig } from "../checkpoint/loader.ts";
import { validateConfig, type WorldActionConfig } from "../models/world_action/configs.ts";
import type { TokenizerConfig } from "../models/tokenizer/model.ts";
import { readManifest, type StoreManifest } from "../offline/mod.ts";
import { canonicalGameName } from "../atari/scores.ts";
import { taskIdOf } from "../atari/task_ids.ts";
import { TASK_PROXIES } from "../atari/task_proxy.ts";
import type { FinetuneConfig } from "./finetune_options.ts";

/** A bad fine-tuning input (one line; exit status 2). */
export class FinetuneInputError extends Error {
  override name = "FinetuneInputError";
}

/** The checked inputs. */
export interface FinetuneInputs {
  files: CheckpointFiles;
  wcfg: WorldActionConfig;
  tcfg: TokenizerConfig;
  /** The game's store directory. */
  store: string;
  manifest: StoreManifest;
  /** Task-embedding row the game trains and plays under. */
  taskId: number;
  /** Name of the game whose row that is. */
  taskGame: string;
}

/** The game whose task embedding `game` uses: the flag, the authors' proxy, or itself. */
export function taskGameOf(game: string, proxy: string | null): string {
  return proxy ?? TASK_PROXIES[game] ?? game;
}

/** Check every input of `cfg`; throws FinetuneInputError. */
export async function checkFinetuneInputs(cfg: FinetuneConfig): Promise<FinetuneInputs> {
  let game: string;
  try {
    game = canonicalGameName(cfg.game);
  } catch {
    throw new FinetuneInputError(`--game: unknown game '${cfg.game}'`);
  }
  let files: CheckpointFiles, wcfg: WorldActionConfig, tcfg: TokenizerConfig;
  try {
    files = resolveCheckpoint(cfg.checkpoint);
    wcfg = validateConfig(await storedConfig(files.worldAction) as WorldActionConfig);
    tcfg = await storedConfig(files.tokenizer) as TokenizerConfig;
  } catch (e) {
    throw new FinetuneInputError(`--checkpoint ${cfg.checkpoint}: ${(e as Error).message}`);
  }
  if (tcfg.vocab > wcfg.obsVocab) {
    throw new FinetuneInputError(
      `--checkpoint ${cfg.checkpoint}: its tokenizer has ${tcfg.vocab} codes, its world-action ` +
        `model (${wcfg.name}) reads ${wcfg.obsVocab}: not one checkpoint`,
    );
  }
  if (cfg.segmentLength > wcfg.timesteps) {
    throw new FinetuneInputError(
      `--checkpoint ${files.worldAction}: world-action config '${wcfg.name}' holds ` +
        `${wcfg.timesteps} timesteps, fewer than --segment-length ${cfg.segmentLength}`,
    );
  }
  const direct = path.join(cfg.data, "manifest.json");
  const store = fs.existsSync(direct) ? cfg.data : path.join(cfg.data, game);
  if (!fs.existsSync(path.join(store, "manifest.json"))) {
    throw new FinetuneInputError(
      `--data ${cfg.data}: no store of ${game} (no ${store}/manifest.json)`,
    );
  }
  let manifest: StoreManifest;
  try {
    manifest = readManifest(store);
  } catch (e) {
    throw new FinetuneInputError(`--data ${store}: ${(e as Error).message}`);
  }
  let stored: string;
  try {
    stored = canonicalGameName(manifest.game);
  } catch {
    stored = manifest.game;
  }
  if (stored !== game) {
    throw new FinetuneInputError(`--data ${store} holds ${manifest.game}, not --game ${game}`);
  }
  const perBatch = cfg.batch * cfg.segmentLength;
  if (manifest.transitions < perBatch) {
    throw new FinetuneInputError(
      `--data ${store}: ${manifest.transitions} transitions, fewer than one batch ` +
        `(--batch ${cfg.batch} x --segment-length ${cfg.segmentLength} = ${perBatch})`,
    );
  }
  if (manifest.form === "tokens") {
    const vocab = Number((manifest.source as { vocabSize?: number })?.vocabSize ?? 0);
    if (vocab > wcfg.obsVocab) {
      throw new FinetuneInputError(
        `--data ${store}: tokens of a ${vocab}-code tokenizer, the checkpoint reads ${wcfg.obsVocab}`,
      );
    }
  }
  const taskGame = taskGameOf(game, cfg.taskProxy);
  let taskId: number;
  try {
    taskId = taskIdOf(taskGame);
  } catch {
    throw new FinetuneInputError(`--task-proxy: '${taskGame}' has no task embedding`);
  }
  return { files, wcfg, tcfg, store, manifest, taskId, taskGame };
}
