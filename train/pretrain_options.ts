/**
 * Options of `deno task pretrain`: the resolved configuration, the presets (the embedded
 * CPU default and the paper's settings), `--help`, and parsing with one-line errors.
 *
 * @module
 */
import { CONFIGS } from "../models/world_action/configs.ts";
import { PRETRAIN_GAMES } from "../atari/mod.ts";
import { UsageError } from "../util/cli.ts";
import {
  applyRunLocation,
  finishRunArgs,
  LOSS_DEFAULTS,
  LOSS_REAL,
  parseRunFlags,
  PRECISION_HELP,
  REPLAY_HELP,
  RUN_DEFAULTS,
  RUN_NUM,
  RUN_RESUMABLE,
  type RunConfig,
} from "./_common_options.ts";

/**
 * Everything a pretraining run depends on (saved as the run's config.json): the fields of
 * {@link RunConfig} (name, losses, run control) and these.
 */
export interface PretrainConfig extends RunConfig {
  /** Dataset root of per-game stores (frames or tokens); null: collect a small one. */
  data: string | null;
  /** Games to train on (default: every store under `data`, or the collected ones). */
  games: string[] | null;
  /** Emulator collection when `data` is null. */
  collectGames: string[];
  collectSteps: number;
  /** World-action model size (models/world_action/configs.ts). */
  model: "tiny" | "40M" | "70M" | "150M";
  /** Tokenizer size (models/tokenizer/config.ts). */
  tokenizer: "tiny" | "paper";
  /**
   * LPIPS weights (safetensors, models/tokenizer/lpips.ts) for the tokenizer's perceptual
   * term in stage 1; null: no perceptual term.
   */
  lpips?: string | null;
  /** Segments per batch. */
  batch: number;
  /** Frames per tokenizer step in stage 1 (taken from the batch's segments). */
  tokenizerBatch: number;
  /** Timesteps per segment. */
  segmentLength: number;
  stage1Steps: number;
  stage2Steps: number;
  lr1: number;
  lr2: number;
  /**
   * Testing: the world-action model's dropout and Q-head dropout instead of the size's (no
   * flag; data-parallel equivalence tests turn dropout off, whose masks depend on the rank).
   */
  modelDropout?: number;
}

/** The embedded default: small enough for ~10 minutes on a CPU adapter (lavapipe). */
export const DEFAULT_CONFIG: PretrainConfig = {
  name: "default",
  runsDir: "runs",
  data: null,
  games: null,
  collectGames: ["SpaceInvaders", "Phoenix", "Assault"],
  collectSteps: 500,
  model: "tiny",
  tokenizer: "tiny",
  lpips: null,
  batch: 4,
  tokenizerBatch: 4,
  segmentLength: 8,
  stage1Steps: 64,
  stage2Steps: 320,
  lr1: 1e-4,
  lr2: 5e-5,
  ...LOSS_DEFAULTS,
  logEvery: 8,
  ckptEvery: 50,
  ...RUN_DEFAULTS,
  precision: "f32",
};

/** The paper's 15 pretraining games (jowa.md, "Games"; from the reference scores). */
export const PAPER_GAMES: readonly string[] = PRETRAIN_GAMES;

const paper = (model: PretrainConfig["model"]): Partial<PretrainConfig> => ({
  name: `paper-${model}`,
  games: [...PAPER_GAMES],
  model,
  tokenizer: "paper",
  batch: 512,
  tokenizerBatch: 2048,
  stage1Steps: 250_000,
  stage2Steps: 1_500_000,
  logEvery: 100,
  ckptEvery: 5000,
  workers: 4,
});

/** Presets by name (`--preset`). */
export const PRESETS: Record<string, Partial<PretrainConfig>> = {
  "paper-40M": paper("40M"),
  "paper-70M": paper("70M"),
  "paper-150M": paper("150M"),
};

/** `--help`. */
export const HELP =
  `deno task pretrain — JOWA pretraining (stage 1: tokenizer + world part; stage 2: joint)

With no arguments: collects a small dataset from the emulator (${
    DEFAULT_CONFIG.collectGames.join(", ")
  },
${DEFAULT_CONFIG.collectSteps} uniform-random steps each), trains the tiny configs through both stages and
writes runs/default/ (about 5.5 minutes on lavapipe, 2 cores, cold shader cache).

Run directory: <runs-dir>/<name>/{config.json, metrics.jsonl, checkpoints/step-XXXXXX/, report.html}

Data and run:
  --data DIR            dataset root of per-game stores (frames: both stages; tokens: the
                        world-action model only). Default: collect a small dataset
  --games A,B           games to use (default: all stores under --data)
  --collect-games A,B   games to collect without --data (default ${
    DEFAULT_CONFIG.collectGames.join(",")
  })
  --collect-steps N     transitions per collected game (default ${DEFAULT_CONFIG.collectSteps})
  --name NAME           run name (default: the preset's or "${DEFAULT_CONFIG.name}")
  --runs-dir DIR        parent of run directories (default ${DEFAULT_CONFIG.runsDir})
  --resume DIR          continue the run in DIR from its newest complete checkpoint
                        (schedule options may be changed: steps, log/checkpoint intervals)
  --preset P            ${Object.keys(PRESETS).join(" | ")}: 15 games, batch 512,
                        250k + 1.5M steps, paper tokenizer (later options override)
Model and schedule:
  --model M             ${Object.keys(CONFIGS).join(" | ")} (default ${DEFAULT_CONFIG.model})
  --tokenizer T         tiny | paper (default ${DEFAULT_CONFIG.tokenizer})
  --lpips FILE          LPIPS-VGG16 weights (safetensors): adds the perceptual term to the
                        stage-1 tokenizer loss, as the authors train it (frame data only)
  --batch N             segments per batch (default ${DEFAULT_CONFIG.batch}; paper 512)
  --tokenizer-batch N   frames per stage-1 tokenizer step (default ${DEFAULT_CONFIG.tokenizerBatch}; paper 2048)
  --segment-length N    timesteps per segment (default ${DEFAULT_CONFIG.segmentLength})
  --stage1-steps N      tokenizer + world steps (default ${DEFAULT_CONFIG.stage1Steps}; paper 250000)
  --stage2-steps N      joint steps (default ${DEFAULT_CONFIG.stage2Steps}; paper 1500000)
  --lr1 X, --lr2 X      learning rates (default ${DEFAULT_CONFIG.lr1}, ${DEFAULT_CONFIG.lr2})
  --weight-decay X      AdamW weight decay (default ${DEFAULT_CONFIG.weightDecay})
  --grad-clip X         global gradient-norm clip (default ${DEFAULT_CONFIG.gradClip})
  --beta X              world-loss weight in the joint loss (default ${DEFAULT_CONFIG.beta})
  --alpha X             CQL weight (default ${DEFAULT_CONFIG.alpha})
  --gamma X             discount (default ${DEFAULT_CONFIG.gamma})
  --target-every N      target Q head hard copy interval (default ${DEFAULT_CONFIG.targetEvery})
  --seed N              seed of initialization, sampling and dropout (default ${DEFAULT_CONFIG.seed})
${PRECISION_HELP}
Logging and checkpoints:
  --log-every N         loss readback + metrics line interval (default ${DEFAULT_CONFIG.logEvery})
  --ckpt-every N        checkpoint interval in steps (default ${DEFAULT_CONFIG.ckptEvery})
  --keep N              complete checkpoints kept (default ${DEFAULT_CONFIG.keep})
  --workers N           sampler threads, 0 = inline (default ${DEFAULT_CONFIG.workers})
  --no-report           skip report.html
  --progress            draw the progress bar even when stderr is not a terminal
${REPLAY_HELP}
Testing:
  --inject-nan-at N     poison step N's batch with NaN rewards (exercises the non-finite guard)
  --stop-at N           checkpoint and stop after step N, as Ctrl-C would
  --help                this text

Ctrl-C writes a checkpoint and exits (status 130). A non-finite loss stops the run (status 3)
with the loss part and step, keeps the last good checkpoint and writes nonfinite.json.`;

/** Options that may change when resuming (the schedule, not the model or data). */
export const RESUMABLE_OVERRIDES: readonly (keyof PretrainConfig)[] = [
  "stage1Steps",
  "stage2Steps",
  ...RUN_RESUMABLE,
];

/** Result of parsing the command line. */
export interface ParsedArgs {
  help: boolean;
  /** Run directory to resume. */
  resume: string | null;
  /** Options given explicitly (after the preset). */
  overrides: Partial<PretrainConfig>;
}

const NUM = {
  "collect-steps": ["collectSteps", 1],
  batch: ["batch", 1],
  "tokenizer-batch": ["tokenizerBatch", 1],
  "segment-length": ["segmentLength", 2],
  "stage1-steps": ["stage1Steps", 0],
  "stage2-steps": ["stage2Steps", 0],
  "target-every": ["targetEvery", 1],
  ...RUN_NUM,
} as const;

const REAL = { lr1: "lr1", lr2: "lr2", ...LOSS_REAL } as const;

/** Parse argv (no side effects). @throws UsageError with a one-line message. */
export function parsePretrainArgs(args: string[]): ParsedArgs {
  const { values, o } = parseRunFlags<PretrainConfig>(args, {
    booleans: [],
    strings: ["games", "collect-games", "model", "tokenizer", "lpips"],
    presets: PRESETS,
    num: NUM,
    real: REAL,
  });
  const str = (k: string) => values[k] as string | undefined;
  const list = (flag: string) => {
    const v = str(flag);
    if (v === undefined) return undefined;
    const items = v.split(",").map((s) => s.trim()).filter(Boolean);
    if (!items.length) throw new UsageError(`--${flag} needs at least one game`);
    return items;
  };
  const games = list("games");
  if (games) o.games = games;
  const cg = list("collect-games");
  if (cg) o.collectGames = cg;
  applyRunLocation(values, o);
  if (str("model") !== undefined) {
    const m = str("model")!;
    if (!(m in CONFIGS)) {
      throw new UsageError(`--model must be one of ${Object.keys(CONFIGS).join(", ")}, got '${m}'`);
    }
    o.model = m as PretrainConfig["model"];
  }
  if (str("tokenizer") !== undefined) {
    const t = str("tokenizer")!;
    if (t !== "tiny" && t !== "paper") {
      throw new UsageError(`--tokenizer must be tiny or paper, got '${t}'`);
    }
    o.tokenizer = t;
  }
  if (str("lpips") !== undefined) {
    if (!str("lpips")) throw new UsageError("--lpips needs a file");
    o.lpips = str("lpips")!;
  }
  return finishRunArgs(values, o, RESUMABLE_OVERRIDES);
}

/** The default config with the overrides applied. */
export function resolveConfig(overrides: Partial<PretrainConfig>): PretrainConfig {
  return { ...DEFAULT_CONFIG, ...overrides };
}
