/**
 * Inputs of the fine-tuning replay and data-parallel tests: a tiny checkpoint (tiny tokenizer
 * and world-action model, optional dropout override) and a Pong token store.
 * @module
 */
import * as path from "node:path";
import { worldActionConfig } from "../../models/world_action/configs.ts";
import { saveModule, saveWorldActionModel } from "../../checkpoint/model_checkpoint.ts";
import { TINY_TOKENIZER, Tokenizer } from "../../models/tokenizer/model.ts";
import { WorldActionModel } from "../../models/world_action/model.ts";
import { writeTokenStores } from "./pretrain_stores.ts";
import { BASE_CONFIG, type FinetuneConfig } from "../../train/finetune_options.ts";

/** `<root>/ckpt` (dropout as the tiny config's unless given) and `<root>/data/Pong`. */
export async function finetuneFixture(
  root: string,
  opts: { dropout?: number; seed?: number } = {},
): Promise<{ checkpoint: string; data: string }> {
  const seed = opts.seed ?? 2;
  const checkpoint = path.join(root, "ckpt");
  await Deno.mkdir(checkpoint, { recursive: true });
  const tok = new Tokenizer({ ...TINY_TOKENIZER, seed });
  const drop = opts.dropout !== undefined ? { dropout: opts.dropout, qDropout: opts.dropout } : {};
  const wam = new WorldActionModel(
    worldActionConfig("tiny", { obsVocab: TINY_TOKENIZER.vocab, seed, ...drop }),
  );
  await saveWorldActionModel(path.join(checkpoint, "world_action.safetensors"), wam);
  await saveModule(path.join(checkpoint, "tokenizer.safetensors"), tok, { config: tok.cfg });
  const data = await writeTokenStores(path.join(root, "data"), ["Pong"], {
    episodes: 2,
    steps: 60,
    vocab: 16,
    seed: 5,
  });
  return { checkpoint, data };
}

/**
 * A short, quiet fine-tuning run on a {@link finetuneFixture} (Pong, 3-step segments, horizon
 * 1, no evaluation, checkpoint or report, no workers), with `over` on top (batch, steps...).
 */
export function tinyFinetuneConfig(
  fixture: { checkpoint: string; data: string },
  runsDir: string,
  over: Partial<FinetuneConfig>,
): FinetuneConfig {
  return {
    ...BASE_CONFIG,
    checkpoint: fixture.checkpoint,
    game: "Pong",
    data: fixture.data,
    runsDir,
    segmentLength: 3,
    horizon: 1,
    bufferCapacity: 16,
    evalEvery: 0,
    evalEpisodes: 1,
    evalMaxFrames: 8,
    evalHorizon: 0,
    ckptEvery: 100,
    workers: 0,
    report: false,
    ...over,
  };
}
