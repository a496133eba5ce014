/**
 * Options of `deno task finetune`: the resolved configuration, the presets `paper` (appendix
 * E.2) and `public` (the authors' config/finetune_150M.yaml), `--help`, and parsing with
 * one-line errors. Every preset value can be overridden by its flag.
 *
 * @module
 */
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
import { ALL_GAMES } from "../atari/mod.ts";
import { canonicalGameName } from "../atari/scores.ts";
import { taskIdOf } from "../atari/task_ids.ts";

/**
 * Everything a fine-tuning run depends on (saved as the run's config.json): the fields of
 * {@link RunConfig} (name, losses, run control) and these.
 */
export interface FinetuneConfig extends RunConfig {
  /** Pretrained checkpoint (directory, run directory or world_action.safetensors). */
  checkpoint: string;
  /** The held-out game (canonical name). */
  game: string;
  /** Dataset root holding `<game>/` (frames or tokens), or that store itself. */
  data: string;
  /** Game whose task embedding the game borrows (null: atari/task_proxy.ts, else its own). */
  taskProxy: string | null;
  preset: string;
  /** Segments per batch (real + synthetic in stage 2). */
  batch: number;
  /** Synthetic segments per stage-2 batch (paper 8, public 16). */
  syntheticBatch: number;
  /** Timesteps per segment (the model's context; synthesis imagines the last `horizon`). */
  segmentLength: number;
  /** Total steps. */
  steps: number;
  /** Steps on real data only (stage 1, joint loss with CQL) before synthesis + COMBO. */
  realSteps: number;
  /** Stage 2 synthesizes segments by planning (false: real data and CQL throughout). */
  synthesis: boolean;
  /** Planning horizon H and beam width K of synthesis. */
  horizon: number;
  beamWidth: number;
  /** Synthetic replay buffer capacity in segments (0: 10 x the dataset's transitions). */
  bufferCapacity: number;
  lr: number;
  /** The tokenizer trains on the real frames (its own Adam and batch). */
  trainTokenizer: boolean;
  tokenizerLr: number;
  tokenizerBatch: number;
  /** World-loss weight (paper beta 0.1; public supervised_weight 0.5). */
  beta: number;
  /** Evaluate on the real game every this many steps (0: never) and at the end. */
  evalEvery: number;
  evalEpisodes: number;
  evalMaxFrames: number;
  /** Planning during evaluation (0: greedy). */
  evalHorizon: number;
  /** Evaluation beam width (0: the paper's rule for the game). */
  evalBeamWidth: number;
}

/** The defaults every preset starts from (the paper's values). */
export const BASE_CONFIG: Omit<FinetuneConfig, "checkpoint" | "game" | "data"> = {
  taskProxy: null,
  name: "",
  runsDir: "runs",
  preset: "paper",
  batch: 32,
  syntheticBatch: 8,
  segmentLength: 8,
  steps: 10_000,
  realSteps: 3_000,
  synthesis: true,
  horizon: 2,
  beamWidth: 2,
  bufferCapacity: 0,
  lr: 5e-5,
  trainTokenizer: true,
  tokenizerLr: 1e-4,
  tokenizerBatch: 128,
  ...LOSS_DEFAULTS,
  evalEvery: 1000,
  evalEpisodes: 8,
  evalMaxFrames: 108_000,
  evalHorizon: 2,
  evalBeamWidth: 0,
  logEvery: 50,
  ckptEvery: 1000,
  ...RUN_DEFAULTS,
};

/**
 * Presets: `paper` (E.2: all components unfrozen, batch 32, lr 5e-5, 10k steps, 3k on real
 * data, then H = K = 2 synthesis of the last 2 steps with 24 real + 8 synthetic, COMBO) and
 * `public` (finetune_150M.yaml: 50k steps, imagination after 20k, 16 + 16, supervised weight
 * 0.5, tokenizer batch 128, the COMBO penalty as `q_penalty: combo`).
 */
export const FINETUNE_PRESETS: Record<string, Partial<FinetuneConfig>> = {
  paper: { preset: "paper" },
  public: {
    preset: "public",
    steps: 50_000,
    realSteps: 20_000,
    syntheticBatch: 16,
    beta: 0.5,
    evalEvery: 5000,
    logEvery: 200,
    ckptEvery: 5000,
    keep: 5,
  },
};

/** Options that may change when resuming (the schedule, not the model, data or losses). */
export const RESUMABLE: readonly (keyof FinetuneConfig)[] = [
  "steps",
  "evalEvery",
  "evalEpisodes",
  "evalMaxFrames",
  ...RUN_RESUMABLE,
];

const NUM = {
  batch: ["batch", 2],
  "synthetic-batch": ["syntheticBatch", 1],
  "segment-length": ["segmentLength", 2],
  steps: ["steps", 1],
  "real-steps": ["realSteps", 0],
  horizon: ["horizon", 1],
  "beam-width": ["beamWidth", 1],
  "buffer-capacity": ["bufferCapacity", 0],
  "tokenizer-batch": ["tokenizerBatch", 1],
  "target-every": ["targetEvery", 1],
  "eval-every": ["evalEvery", 0],
  "eval-episodes": ["evalEpisodes", 1],
  "eval-max-frames": ["evalMaxFrames", 1],
  "eval-horizon": ["evalHorizon", 0],
  "eval-beam-width": ["evalBeamWidth", 0],
  ...RUN_NUM,
} as const;

const REAL = { lr: "lr", "tokenizer-lr": "tokenizerLr", ...LOSS_REAL } as const;

/** `--help`. */
export const FINETUNE_HELP =
  `deno task finetune — adapt a pretrained JOWA to a held-out game (paper Sec. 4.3, E.2)

  deno task finetune --checkpoint DIR --game Pong --data STORE [--preset paper|public] [options]
  deno task finetune --resume runs/<name>

Stage 1 (--real-steps): the joint loss (world + C51 TD + CQL) on real segments. Stage 2: each step
plans from real contexts (beam search H x K) to synthesize the last H steps of segments, keeps
them in a bounded replay buffer, and trains on real + synthetic segments with the COMBO penalty
instead of CQL (world loss on the real part only). The tokenizer trains on the real frames.
Every --eval-every steps the agent plays the real game (with planning); the best snapshot is
kept in <run>/best/ and reported (results.json/results.md as deno task eval writes them).

Required:
  --checkpoint DIR      pretrained checkpoint (world_action + tokenizer safetensors, or a run)
  --game G              the game to fine-tune on (e.g. Pong, MsPacman)
  --data DIR            dataset root with a <G>/ store (or the store itself), frames or tokens
Presets (later options override):
  --preset P            paper (default: 10k steps, 3k real, 24 real + 8 synthetic, beta 0.1)
                        | public (finetune_150M.yaml: 50k steps, 20k real, 16 + 16, beta 0.5)
Options (defaults: paper):
  --task-proxy G        game whose task embedding to borrow (default: Robotank->Phoenix,
                        YarsRevenge->ChopperCommand, Gravitar->TimePilot, MsPacman->Berzerk;
                        others, Pong included, their own row, as the authors' code does)
  --batch N             segments per batch (32)       --synthetic-batch N  of them synthetic (8)
  --segment-length N    timesteps per segment (8)     --steps N            total steps (10000)
  --real-steps N        real-data steps first (3000)  --no-synthesis       real data + CQL only
  --horizon N           synthesis horizon H (2)       --beam-width N       synthesis beam K (2)
  --buffer-capacity N   synthetic buffer segments (0 = 10 x dataset transitions)
  --lr X (5e-5)  --tokenizer-lr X (1e-4)  --tokenizer-batch N (128)  --freeze-tokenizer
  --weight-decay X (0.01)  --grad-clip X (1)  --beta X  --alpha X (0.1)  --gamma X (0.99)
  --target-every N      target Q head copy interval (1000)
Evaluation on the real game:
  --eval-every N        steps between evaluations (1000; 0 = only at the end)
  --eval-episodes N (8)  --eval-max-frames N (108000)  --eval-horizon N (2; 0 = greedy)
  --eval-beam-width N   (0 = the paper's rule for the game)
Run:
  --name NAME           run name (default finetune-<game>-<preset>)   --runs-dir DIR (runs)
  --resume DIR          continue a run from its newest complete checkpoint
  --log-every N (50)  --ckpt-every N (1000)  --keep N (3)  --seed N (0)  --workers N (1)
  --no-report  --progress  --inject-nan-at N  --stop-at N  --help
${REPLAY_HELP}
${PRECISION_HELP}

Ctrl-C writes a checkpoint and exits (status 130); a non-finite loss stops the run (status 3).`;

/** Parsed command line. */
export interface FinetuneArgs {
  help: boolean;
  resume: string | null;
  overrides: Partial<FinetuneConfig>;
}

/** Parse argv (no side effects). @throws UsageError with a one-line message. */
export function parseFinetuneArgs(args: string[]): FinetuneArgs {
  const { values, o } = parseRunFlags<FinetuneConfig>(args, {
    booleans: ["no-synthesis", "freeze-tokenizer"],
    strings: ["checkpoint", "game", "task-proxy"],
    presets: FINETUNE_PRESETS,
    num: NUM,
    real: REAL,
  });
  const str = (k: string) => values[k] as string | undefined;
  if (str("game") !== undefined) {
    const name = safeCanonical(str("game")!);
    if (!name) {
      throw new UsageError(
        `--game: unknown game '${str("game")}' (known: ${ALL_GAMES.join(", ")})`,
      );
    }
    o.game = name;
  }
  if (str("task-proxy") !== undefined) {
    const v = str("task-proxy")!;
    try {
      taskIdOf(v);
    } catch {
      throw new UsageError(`--task-proxy: '${v}' is not one of the 60 task-embedding games`);
    }
    o.taskProxy = v;
  }
  if (str("checkpoint") !== undefined) o.checkpoint = str("checkpoint")!;
  applyRunLocation(values, o);
  if (values["no-synthesis"]) o.synthesis = false;
  if (values["freeze-tokenizer"]) o.trainTokenizer = false;
  return finishRunArgs(values, o, RESUMABLE);
}

/** The config of a new run: base, preset, overrides; validated. @throws UsageError */
export function resolveFinetuneConfig(o: Partial<FinetuneConfig>): FinetuneConfig {
  for (const k of ["checkpoint", "game", "data"] as const) {
    if (o[k] === undefined) throw new UsageError(`--${k} is required (see --help)`);
  }
  const cfg = { ...BASE_CONFIG, ...o } as FinetuneConfig;
  if (!cfg.name) cfg.name = `finetune-${cfg.game}-${cfg.preset}`;
  validateFinetuneConfig(cfg);
  return cfg;
}

/** Cross-field checks. @throws UsageError */
export function validateFinetuneConfig(cfg: FinetuneConfig): void {
  if (cfg.realSteps > cfg.steps) {
    throw new UsageError(`--real-steps ${cfg.realSteps} exceeds --steps ${cfg.steps}`);
  }
  if (cfg.synthesis && cfg.syntheticBatch >= cfg.batch) {
    throw new UsageError(
      `--synthetic-batch ${cfg.syntheticBatch} must be below --batch ${cfg.batch}`,
    );
  }
  if (cfg.synthesis && cfg.horizon >= cfg.segmentLength) {
    throw new UsageError(
      `--horizon ${cfg.horizon} must be below --segment-length ${cfg.segmentLength}`,
    );
  }
}

function safeCanonical(g: string): string | null {
  try {
    return canonicalGameName(g);
  } catch {
    return null;
  }
}
