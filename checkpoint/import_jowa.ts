/**
 * Import the authors' released JOWA checkpoints (`JOWA_150M.pt` etc. and `tokenizer.pt`,
 * `torch.save(state_dict)` files from github.com/CJReinforce/JOWA) without Python: read them
 * with models/torch, map the names (checkpoint/jowa_world_map.ts, jowa_tokenizer_map.ts),
 * infer the configurations from the shapes, and either build our networks directly
 * ({@link loadAuthorsWorldModel}, {@link loadAuthorsTokenizer}) or write a checkpoint
 * directory that `deno task eval` and checkpoint/loader.ts load like one this toolkit trained
 * ({@link importJowaCheckpoint}, the `deno task import` CLI in checkpoint/import_cli.ts).
 *
 * ```ts
 * const model = await loadAuthorsWorldModel("JOWA_150M.pt");
 * const tokenizer = await loadAuthorsTokenizer("tokenizer.pt");
 * ```
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { assignValues } from "../kernels/nn/module.ts";
import type { Tensor } from "../kernels/core/tensor.ts";
import {
  openTorchCheckpoint,
  type TorchCheckpoint,
  type TorchCheckpointProgress,
} from "../models/torch/mod.ts";
import { writeSafetensors } from "../models/safetensors/mod.ts";
import type { WorldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { Tokenizer, type TokenizerConfig } from "../models/tokenizer/model.ts";
import { CHECKPOINT_FORMAT } from "./model_checkpoint.ts";
import { checkpointSource, JowaImportError, type MappedTensor } from "./jowa_source.ts";
import { inferWorldConfig, type JowaWorldOptions, planWorldModel } from "./jowa_world_map.ts";
import {
  inferTokenizerConfig,
  type JowaTokenizerOptions,
  planLpips,
  planTokenizer,
} from "./jowa_tokenizer_map.ts";

export { JowaImportError } from "./jowa_source.ts";
export type { JowaWorldOptions } from "./jowa_world_map.ts";
export type { JowaTokenizerOptions } from "./jowa_tokenizer_map.ts";

/** File names inside an imported checkpoint directory. */
export const IMPORTED_FILES = {
  worldAction: "world_action.safetensors",
  tokenizer: "tokenizer.safetensors",
  /** The LPIPS network held in their tokenizer.pt (models/tokenizer/lpips.ts names). */
  lpips: "lpips_vgg16.safetensors",
  /** Where the weights came from. */
  provenance: "import.json",
} as const;

/** Progress of an import: the file being read and its torch reader's progress. */
export interface ImportProgress extends TorchCheckpointProgress {
  file: string;
}

/** Options of {@link importJowaCheckpoint} and the two loaders. */
export interface ImportOptions extends JowaWorldOptions, JowaTokenizerOptions {
  onProgress?: (p: ImportProgress) => void;
}

async function open(file: string, opts: ImportOptions): Promise<TorchCheckpoint> {
  const onProgress = opts.onProgress;
  return await openTorchCheckpoint(file, {
    onProgress: onProgress ? (p) => onProgress({ ...p, file }) : undefined,
  });
}

/**
 * The heads (not visible in the weights): `opts.heads`, else `num_heads` of the
 * `transformer_config` in a meta.json beside the file (what the parity-fixture generator
 * writes with its small models, tests/fixtures/jowa), else undefined (width / 64).
 */
export function headsFor(ptPath: string, opts: JowaWorldOptions): number | undefined {
  if (opts.heads !== undefined) return opts.heads;
  try {
    const meta = JSON.parse(fs.readFileSync(path.join(path.dirname(ptPath), "meta.json"), "utf8"));
    const h = meta?.transformer_config?.num_heads;
    return Number.isInteger(h) && h > 0 ? h : undefined;
  } catch {
    return undefined;
  }
}

/** Assign mapped tensors to `named` (our names), one read at a time. */
async function assignAll(mapped: MappedTensor[], named: Map<string, Tensor>): Promise<void> {
  for (const m of mapped) assignValues(named.get(m.name)!, await m.read());
}

/**
 * Our {@link WorldActionModel} holding the weights of their world-action checkpoint
 * (`JOWA_150M.pt`, or the parity fixture tests/fixtures/jowa/world_model.pt). The
 * configuration is inferred from the shapes (see checkpoint/jowa_world_map.ts); the heads,
 * which the weights do not show, from {@link headsFor}. The model is in eval mode. Throws JowaImportError listing
 * every unknown, missing or misshapen tensor, TorchCheckpointError for an unreadable file.
 */
export async function loadAuthorsWorldModel(
  ptPath: string,
  opts: ImportOptions = {},
): Promise<WorldActionModel> {
  using ckpt = await open(ptPath, opts);
  const src = checkpointSource(ckpt);
  const cfg = inferWorldConfig(ptPath, src, { ...opts, heads: headsFor(ptPath, opts) });
  const mapped = planWorldModel(ptPath, src, cfg);
  const model = new WorldActionModel(cfg);
  await assignAll(mapped, new Map([...model.namedParameters(), ...model.targetTensors()]));
  model.eval();
  return model;
}

/**
 * Our {@link Tokenizer} holding the weights of their `tokenizer.pt` (its LPIPS part, if
 * any, is not loaded here: see {@link importJowaCheckpoint}).
 */
export async function loadAuthorsTokenizer(
  ptPath: string,
  opts: ImportOptions = {},
): Promise<Tokenizer> {
  using ckpt = await open(ptPath, opts);
  const src = checkpointSource(ckpt);
  const cfg = inferTokenizerConfig(ptPath, src, opts);
  const mapped = planTokenizer(ptPath, src, cfg);
  planLpips(ptPath, src); // an incomplete LPIPS part is an error here too
  const tok = new Tokenizer(cfg);
  await assignAll(mapped, new Map(tok.namedParameters()));
  tok.eval();
  return tok;
}

/** What {@link importJowaCheckpoint} wrote. */
export interface ImportResult {
  dir: string;
  worldAction: WorldActionConfig;
  tokenizer: TokenizerConfig;
  /** Path of the LPIPS weights, or null when tokenizer.pt held none. */
  lpips: string | null;
}

/**
 * Convert their two files into a checkpoint directory `out` (which must not exist):
 * world_action.safetensors, tokenizer.safetensors, lpips_vgg16.safetensors (when their
 * tokenizer holds the LPIPS network) and import.json. Both files are checked completely
 * before anything is written; the directory is written under a temporary name and renamed
 * at the end, so on any error nothing is left at `out`. Tensors are converted one at a time:
 * peak memory is about the largest tensor.
 */
export async function importJowaCheckpoint(
  worldPt: string,
  tokenizerPt: string,
  out: string,
  opts: ImportOptions = {},
): Promise<ImportResult> {
  if (fs.existsSync(out)) {
    throw new JowaImportError(out, ["already exists; choose a new --out directory"]);
  }
  using world = await open(worldPt, opts);
  using tok = await open(tokenizerPt, opts);
  const wsrc = checkpointSource(world);
  const tsrc = checkpointSource(tok);
  const wcfg = inferWorldConfig(worldPt, wsrc, { ...opts, heads: headsFor(worldPt, opts) });
  const tcfg = inferTokenizerConfig(tokenizerPt, tsrc, opts);
  const wmap = planWorldModel(worldPt, wsrc, wcfg);
  const tmap = planTokenizer(tokenizerPt, tsrc, tcfg);
  const lmap = planLpips(tokenizerPt, tsrc);
  const grid = Math.sqrt(wcfg.obsTokens);
  if (tcfg.vocab !== wcfg.obsVocab || tmap.length === 0 || !Number.isInteger(grid)) {
    throw new JowaImportError(tokenizerPt, [
      `tokenizer (${tcfg.vocab} codes) does not fit the world-action model of ${worldPt} ` +
      `(${wcfg.obsVocab} codes)`,
    ]);
  }
  const parent = path.dirname(path.resolve(out));
  if (!fs.existsSync(parent)) {
    throw new JowaImportError(out, [`its parent directory ${parent} does not exist`]);
  }
  const tmp = path.join(parent, `.${path.basename(out)}.import-${Deno.pid}-${Date.now()}`);
  fs.mkdirSync(tmp);
  try {
    const meta = (cfg: unknown, file: string) => ({
      format: CHECKPOINT_FORMAT,
      config: JSON.stringify(cfg),
      imported_from: path.basename(file),
    });
    await write(path.join(tmp, IMPORTED_FILES.worldAction), wmap, meta(wcfg, worldPt));
    await write(path.join(tmp, IMPORTED_FILES.tokenizer), tmap, meta(tcfg, tokenizerPt));
    if (lmap) {
      await write(path.join(tmp, IMPORTED_FILES.lpips), lmap, {
        imported_from: path.basename(tokenizerPt),
      });
    }
    const provenance = {
      importer: "checkpoint/import_jowa.ts",
      world: { file: path.resolve(worldPt), tensors: wsrc.size },
      tokenizer: { file: path.resolve(tokenizerPt), tensors: tsrc.size, lpips: lmap !== null },
      heads: wcfg.heads,
    };
    fs.writeFileSync(
      path.join(tmp, IMPORTED_FILES.provenance),
      JSON.stringify(provenance, null, 1) + "\n",
    );
    fs.renameSync(tmp, out);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return {
    dir: out,
    worldAction: wcfg,
    tokenizer: tcfg,
    lpips: lmap ? path.join(out, IMPORTED_FILES.lpips) : null,
  };
}

/** Write mapped tensors as F32 safetensors, each produced when its turn comes. */
function write(file: string, mapped: MappedTensor[], metadata: Record<string, string>) {
  const tensors = new Map(
    mapped.map((m) => [m.name, { dtype: "F32" as const, shape: m.shape, data: () => m.read() }]),
  );
  return writeSafetensors(file, tensors, metadata);
}
