/**
 * A randomly initialised tiny checkpoint (tiny tokenizer + tiny world-action model with the
 * tokenizer's vocabulary) saved through checkpoint/model_checkpoint.ts the way `deno task
 * pretrain` lays one out: <dir>/world_action.safetensors and <dir>/tokenizer.safetensors.
 */
import * as path from "node:path";
import { worldActionConfig } from "../../models/world_action/configs.ts";
import { saveModule, saveWorldActionModel } from "../../checkpoint/model_checkpoint.ts";
import { TINY_TOKENIZER, Tokenizer } from "../../models/tokenizer/model.ts";
import { WorldActionModel } from "../../models/world_action/model.ts";

/** Write the tiny checkpoint into `dir` (created); returns `dir`. */
export async function writeTinyCheckpoint(dir: string, seed = 1): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const tok = new Tokenizer({ ...TINY_TOKENIZER, seed });
  const wam = new WorldActionModel(
    worldActionConfig("tiny", { obsVocab: TINY_TOKENIZER.vocab, seed }),
  );
  await saveWorldActionModel(path.join(dir, "world_action.safetensors"), wam);
  await saveModule(path.join(dir, "tokenizer.safetensors"), tok, { config: tok.cfg });
  return dir;
}
