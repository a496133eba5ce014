/**
 * Command-line options of `deno task eval` (eval/evaluate.ts): parsing, validation and the
 * usage text. Errors are `UsageError`s (util/cli.ts) with a message for the user.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ABLATION_GAMES, ALL_GAMES, FINETUNE_GAMES, PRETRAIN_GAMES } from "../atari/mod.ts";
import { UsageError } from "../util/cli.ts";
import { parsePrecision, type Precision } from "../kernels/core/precision.ts";
import { MAX_BEAM_WIDTH } from "./beam_kernels.ts";
import {
  MODEL_SIZES,
  type ModelSize,
  PAPER_MAX_FRAMES,
  type Protocol,
  PUBLIC_MAX_AGENT_STEPS,
} from "./public_protocol.ts";

/** Parsed settings of an evaluation. */
export interface EvalOptions {
  checkpoint: string;
  tokenizer?: string;
  games: string[];
  episodes: number;
  /** Parallel environments per game (default: all episodes at once). */
  envs: number | null;
  processes: number | null;
  /** Protocol: "paper" (Tables 15/16) or "public" (the authors' code and per-game settings). */
  protocol: Protocol;
  /** --model-size for the public settings when the checkpoint's config is custom. */
  modelSize: ModelSize | null;
  /** Planning horizon; null = the protocol's (2 in the paper; per game in public). */
  horizon: number | null;
  /** Beam width for every game; null = the protocol's per-game width. */
  beamWidth: number | null;
  /** Context timesteps kept (window min(L - H, context)); null = the protocol's. */
  context: number | null;
  plan: boolean;
  /**
   * Replay the planner's and the tokenizer's recorded GPU work for shapes seen before
   * (`--no-replay`: eager, for debugging). Default true.
   */
  replay?: boolean;
  epsilon: number;
  gamma: number;
  /** Emulator-frame cap per episode (0 = none; 0 when maxAgentSteps is set). */
  maxFrames: number;
  /** Agent-step cap per episode, or null (the public protocol's default: 108 000). */
  maxAgentSteps: number | null;
  /** Directory of `<rom>.bin` files instead of ale-py's bundled ROMs. */
  romDir: string | null;
  seed: number;
  out: string;
  record: number;
  recordSteps: number;
  bootstrapReps: number;
  label: string | null;
  /** Use the similar pretraining game's task id for held-out games (fine-tuned checkpoints). */
  taskProxy: boolean;
  quiet: boolean;
  /**
   * "f16": the world-action model's plain products read f16 weight copies (f32 accumulation,
   * kernels/ops/matmul_f16.ts) and the planner's KV cache holds f16 keys and values (f32
   * arithmetic); the fused decode kernels' weights stay f32. Default f32.
   */
  precision?: Precision;
}

/** The usage text. */
export const USAGE = `deno task eval --checkpoint <path> [options]

Evaluate a JOWA checkpoint on Atari: no sticky actions, frame skip 4, terminal on game over,
epsilon 0.001, 16 episodes per game, beam search. Two protocols:
  paper   (default) H = 2, the paper's per-game beam width K (Table 16), a window of all
          that fits (8 - H timesteps), a 108k-FRAME cap per episode
  public  the authors' code: per model size and game their context length (window
          min(8 - H, context)), K and H, a 108k-AGENT-STEP cap; results beside their
          published per-game means (pretraining games only)

  --checkpoint <path>   checkpoint directory (world_action.safetensors + tokenizer.safetensors),
                        a run directory (its newest checkpoint) or a world_action .safetensors
  --tokenizer <file>    tokenizer .safetensors (default: beside the world-action file)
  --games <list>        comma-separated names or ROM ids, or a group: pretrain (default),
                        finetune, ablation, all
  --episodes <n>        episodes per game (default 16)
  --envs <n>            parallel environments per game (default: all episodes at once)
  --processes <n>       emulator processes (default: min(envs, 4))
  --protocol <p>        paper (default) or public
  --model-size <s>      40M, 70M or 150M: the public settings to use when the checkpoint's
                        config is none of these (default: from the checkpoint's config)
  --horizon <n>         planning horizon H (default: the protocol's, 2)
  --beam-width <k>      beam width K (1..${MAX_BEAM_WIDTH}) for every game (default: the protocol's per-game K)
  --context <n>         timesteps of context, 1..8 (default: paper all that fits; public per game)
  --no-plan             greedy Q policy (no planning)
  --no-replay           record every step eagerly (debugging); by default the planner's
                        and the tokenizer's GPU work is recorded once per shape and replayed
  --precision <p>       f32 (default) or f16: world-action products read f16 weight copies
                        and the KV cache stores f16, with f32 accumulation (needs
                        shader-f16; the fused decode kernels' weights stay f32)
  --epsilon <p>         exploration rate, uniform over valid actions (default 0.001)
  --gamma <g>           planning discount (default 0.99)
  --max-frames <n>      emulator frames per episode (paper default 108000; 0 = no cap)
  --max-steps <n>       agent steps per episode (public default 108000; = 4 frames each)
  --rom-dir <dir>       <rom>.bin files to use instead of ale-py's bundled ROMs
  --seed <n>            environment and exploration seed (default 0)
  --out <dir>           output directory (default runs/eval-<timestamp>/)
  --record <n>          save the first n episodes of each game as GIFs (real | imagined)
  --record-steps <n>    steps kept per recording (default 1000)
  --bootstrap-reps <n>  bootstrap replicates for the confidence intervals (default 2000)
  --label <text>        heading of the results table
  --task-proxy          held-out games use a similar pretraining game's task id
                        (Robotank->Phoenix, YarsRevenge->ChopperCommand, Gravitar->TimePilot,
                        MsPacman->Berzerk), as fine-tuned checkpoints expect
  --quiet               no progress output
  -h, --help            this text
`;

const GROUPS: Record<string, readonly string[]> = {
  pretrain: PRETRAIN_GAMES,
  finetune: FINETUNE_GAMES,
  ablation: ABLATION_GAMES,
  all: ALL_GAMES,
};

/** Resolve a --games list (names, ROM ids or group names) to canonical names. */
export function parseGames(spec: string): string[] {
  const out: string[] = [];
  for (const raw of spec.split(",").map((s) => s.trim()).filter(Boolean)) {
    const group = GROUPS[raw.toLowerCase()];
    if (group) {
      out.push(...group);
      continue;
    }
    const key = raw.replace(/[_\s-]/g, "").toLowerCase();
    const name = ALL_GAMES.find((g) => g.toLowerCase() === key);
    if (!name) {
      throw new UsageError(
        `unknown game "${raw}"; valid games: ${ALL_GAMES.join(", ")} ` +
          `(or a group: ${Object.keys(GROUPS).join(", ")})`,
      );
    }
    out.push(name);
  }
  if (out.length === 0) throw new UsageError("--games is empty");
  return [...new Set(out)];
}

function int(name: string, v: string | undefined, def: number, lo: number, hi = 2 ** 31 - 1) {
  if (v === undefined) return def;
  const n = Number(v);
  if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < lo || n > hi) {
    throw new UsageError(`--${name} must be an integer in ${lo}..${hi}, got "${v}"`);
  }
  return n;
}

function num(name: string, v: string | undefined, def: number, lo: number, hi: number) {
  if (v === undefined) return def;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < lo || n > hi) {
    throw new UsageError(`--${name} must be a number in [${lo}, ${hi}], got "${v}"`);
  }
  return n;
}

function timestamp(d = new Date()): string {
  return d.toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").replace("T", "-");
}

/** Parse argv; null when --help was asked. Throws UsageError on mistakes. */
export function parseEvalArgs(argv: string[]): EvalOptions | null {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        checkpoint: { type: "string" },
        tokenizer: { type: "string" },
        games: { type: "string" },
        episodes: { type: "string" },
        envs: { type: "string" },
        processes: { type: "string" },
        protocol: { type: "string" },
        "model-size": { type: "string" },
        horizon: { type: "string" },
        context: { type: "string" },
        "max-steps": { type: "string" },
        "rom-dir": { type: "string" },
        "beam-width": { type: "string" },
        "no-plan": { type: "boolean" },
        "no-replay": { type: "boolean" },
        precision: { type: "string" },
        epsilon: { type: "string" },
        gamma: { type: "string" },
        "max-frames": { type: "string" },
        seed: { type: "string" },
        out: { type: "string" },
        record: { type: "string" },
        "record-steps": { type: "string" },
        "bootstrap-reps": { type: "string" },
        label: { type: "string" },
        "task-proxy": { type: "boolean" },
        quiet: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return null;
  if (!v.checkpoint) throw new UsageError("--checkpoint <path> is required");
  const envs = v.envs === undefined ? null : int("envs", v.envs, 0, 1, 1024);
  const processes = v.processes === undefined ? null : int("processes", v.processes, 0, 1, 256);
  const protocol = v.protocol ?? "paper";
  if (protocol !== "paper" && protocol !== "public") {
    throw new UsageError(`--protocol must be paper or public, got "${protocol}"`);
  }
  const modelSize = v["model-size"] ?? null;
  if (modelSize !== null && !(MODEL_SIZES as readonly string[]).includes(modelSize)) {
    throw new UsageError(
      `--model-size must be one of ${MODEL_SIZES.join(", ")}, got "${modelSize}"`,
    );
  }
  if (v["max-frames"] !== undefined && v["max-steps"] !== undefined) {
    throw new UsageError("--max-frames and --max-steps both cap episodes: give one");
  }
  let maxAgentSteps: number | null = null;
  let maxFrames = int("max-frames", v["max-frames"], PAPER_MAX_FRAMES, 0);
  if (v["max-steps"] !== undefined) maxAgentSteps = int("max-steps", v["max-steps"], 0, 1);
  else if (v["max-frames"] === undefined && protocol === "public") {
    maxAgentSteps = PUBLIC_MAX_AGENT_STEPS;
  }
  if (maxAgentSteps !== null) maxFrames = 0;
  return {
    checkpoint: v.checkpoint,
    tokenizer: v.tokenizer,
    games: parseGames(v.games ?? "pretrain"),
    episodes: int("episodes", v.episodes, 16, 1, 100_000),
    envs,
    processes,
    protocol,
    modelSize: modelSize as ModelSize | null,
    horizon: v.horizon === undefined
      ? (protocol === "paper" ? 2 : null)
      : int("horizon", v.horizon, 0, 0, 7),
    beamWidth: v["beam-width"] === undefined
      ? null
      : int("beam-width", v["beam-width"], 0, 1, MAX_BEAM_WIDTH),
    context: v.context === undefined ? null : int("context", v.context, 0, 1, 8),
    plan: !v["no-plan"],
    replay: !v["no-replay"],
    epsilon: num("epsilon", v.epsilon, 0.001, 0, 1),
    gamma: num("gamma", v.gamma, 0.99, 0, 1),
    maxFrames,
    maxAgentSteps,
    romDir: v["rom-dir"] ?? null,
    seed: int("seed", v.seed, 0, 0, 2 ** 30),
    out: v.out ?? `runs/eval-${timestamp()}`,
    record: int("record", v.record, 0, 0, 100_000),
    recordSteps: int("record-steps", v["record-steps"], 1000, 1, 1_000_000),
    bootstrapReps: int("bootstrap-reps", v["bootstrap-reps"], 2000, 10, 1_000_000),
    label: v.label ?? null,
    taskProxy: v["task-proxy"] ?? false,
    quiet: v.quiet ?? false,
    precision: evalPrecision(v.precision),
  };
}

/** `--precision f32|f16` (one-line {@link UsageError}). */
function evalPrecision(value: string | undefined): Precision {
  try {
    return parsePrecision(value);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}
