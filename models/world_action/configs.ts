/**
 * Sizes of the JOWA world-action model (jowa.md, "World-action model", T10/T11), plus a
 * `tiny` configuration for tests and the CPU demo that keeps the real token structure
 * (36 observation tokens + 1 action token per timestep, 8 timesteps = 296 tokens).
 *
 * "Q-head layers 3" is read as 3 Linear layers: 2 hidden blocks
 * [Linear -> Dropout -> LayerNorm -> Mish] of width `qHidden`, then the output Linear to
 * actions x atoms (`qLayers` = hidden blocks + 1).
 *
 * @module
 */
import { JOWA_SUPPORT, type Support } from "../../kernels/ops/c51.ts";

/**
 * Everything that fixes the world-action model's parameter shapes and behaviour. As a
 * {@linkcode Support} it carries the C51 atoms and their range [vMin, vMax], so it can be passed
 * to the C51 ops directly.
 */
export interface WorldActionConfig extends Support {
  /** Name used in reports and checkpoint metadata. */
  name: string;
  /** Transformer blocks. */
  layers: number;
  /** Embedding width. */
  d: number;
  /** Attention heads (d / heads must be a multiple of 4). */
  heads: number;
  /** Dropout of the backbone (embeddings, attention, residual branches). */
  dropout: number;
  /** Observation-token vocabulary (the tokenizer's codebook size). */
  obsVocab: number;
  /** Action vocabulary: the full Atari action set. */
  actions: number;
  /** Observation tokens per timestep (6 x 6). */
  obsTokens: number;
  /** Timesteps per segment (L); the context is `timesteps * (obsTokens + 1)` tokens. */
  timesteps: number;
  /** Rows of each task-embedding table (one per Atari game). */
  tasks: number;
  /** Linear layers of each Q head (hidden blocks = qLayers - 1). */
  qLayers: number;
  /** Width of the Q head's hidden blocks. */
  qHidden: number;
  /** Q heads in the ensemble (their atom distributions are averaged). */
  qEnsemble: number;
  /** Dropout inside the Q head's hidden blocks. */
  qDropout: number;
  /** Reward classes: sign(r) + 1. */
  rewardClasses: number;
  /** Termination classes. */
  endClasses: number;
  /** Seed of the parameter initialization. */
  seed: number;
  /**
   * GELU of the transformer MLP: "erf", the exact x * Phi(x) of PyTorch's `nn.GELU()` that
   * the authors' code uses; "tanh", GPT-2's approximation (what checkpoints saved before this
   * field existed were trained with, so a stored config without it reads as "tanh").
   */
  gelu: "erf" | "tanh";
  /**
   * Initialization. "jowa", the authors' code: every Linear/Embedding weight N(0, 0.02) with
   * no residual scaling, and the Q ensemble with PyTorch's default Linear init (weights and
   * biases U(+-1/sqrt(fan_in))), which their `init_transformer_weights` never reaches through
   * the stacked ensemble. "gpt2": residual projections N(0, 0.02 / sqrt(2 layers)), the Q head
   * N(0, 0.02) with zero biases. Only affects fresh models, never loaded weights.
   */
  init: "jowa" | "gpt2";
}

/** Tokens per timestep (observation tokens then one action token). */
export const tokensPerStep = (c: WorldActionConfig): number => c.obsTokens + 1;

/** Maximum sequence length in tokens. */
export const contextLength = (c: WorldActionConfig): number => c.timesteps * tokensPerStep(c);

const BASE = {
  dropout: 0.1,
  obsVocab: 2048,
  actions: 18,
  obsTokens: 36,
  timesteps: 8,
  tasks: 60,
  qLayers: 3,
  qDropout: 0.01,
  // C51 atoms and their range: JOWA's support, defined once in kernels/ops/c51.ts.
  ...JOWA_SUPPORT,
  rewardClasses: 3,
  endClasses: 2,
  seed: 0,
  gelu: "erf",
  init: "jowa",
} as const;

/**
 * Named configurations. `tiny` uses a 64-token observation vocabulary, the codebook of the
 * tiny tokenizer (models/tokenizer/config.ts TINY_TOKENIZER.vocab; the two must agree), and
 * a 2-member Q ensemble so tests exercise the averaging. It computes what the paper sizes
 * compute (exact GELU, so the CPU-reference tests cover the authors' form) but keeps the
 * GPT-2 initialization its learning tests were tuned with.
 *
 * The paper sizes follow the authors' code (github.com/CJReinforce/JOWA), checked against
 * fixtures made by their classes (tests/jowa_parity_model_test.ts). Remaining departures:
 * their Q-ensemble dropout stays active in eval mode and in the target head (a functorch
 * copy `.eval()` never reaches); ours is off outside training, so evaluation is
 * deterministic. They train and evaluate under bf16 autocast; we compute in f32.
 */
export const CONFIGS: Readonly<Record<"tiny" | "40M" | "70M" | "150M", WorldActionConfig>> = {
  tiny: {
    ...BASE,
    name: "tiny",
    layers: 2,
    d: 32,
    heads: 2,
    obsVocab: 64,
    qHidden: 48,
    qEnsemble: 2,
    init: "gpt2",
  },
  "40M": { ...BASE, name: "40M", layers: 4, d: 512, heads: 8, qHidden: 768, qEnsemble: 1 },
  "70M": { ...BASE, name: "70M", layers: 6, d: 768, heads: 12, qHidden: 1024, qEnsemble: 1 },
  "150M": { ...BASE, name: "150M", layers: 12, d: 768, heads: 12, qHidden: 1792, qEnsemble: 3 },
};

/** Names of the predefined configurations. */
export type ConfigName = keyof typeof CONFIGS;

/** A predefined configuration by name, with optional overrides (e.g. a shorter context). */
export function worldActionConfig(
  name: ConfigName,
  overrides: Partial<WorldActionConfig> = {},
): WorldActionConfig {
  const base = CONFIGS[name];
  if (!base) throw new Error(`unknown world-action config '${name}' (${Object.keys(CONFIGS)})`);
  return validateConfig({ ...base, ...overrides });
}

/** Positive-integer fields that fix the parameter shapes. */
export const INTEGER_SIZE_FIELDS = [
  "layers",
  "d",
  "heads",
  "obsVocab",
  "actions",
  "obsTokens",
  "timesteps",
  "tasks",
  "qLayers",
  "qHidden",
  "qEnsemble",
  "atoms",
  "rewardClasses",
  "endClasses",
] as const;

/** Check a configuration's invariants; returns it. */
export function validateConfig(c: WorldActionConfig): WorldActionConfig {
  for (const k of INTEGER_SIZE_FIELDS) {
    if (!Number.isInteger(c[k]) || c[k] < 1) throw new Error(`config ${c.name}: ${k} = ${c[k]}`);
  }
  if (c.d % c.heads !== 0 || (c.d / c.heads) % 4 !== 0) {
    throw new Error(`config ${c.name}: d/heads = ${c.d}/${c.heads} must be a multiple of 4`);
  }
  if (c.qLayers < 2) throw new Error(`config ${c.name}: qLayers must be >= 2`);
  for (const [k, allowed] of Object.entries(CHOICE_FIELDS)) {
    const v = (c as unknown as Record<string, unknown>)[k];
    if (!(allowed as readonly unknown[]).includes(v)) {
      throw new Error(`config ${c.name}: ${k} = ${JSON.stringify(v)}, expected one of ${allowed}`);
    }
  }
  if (!(c.vMax > c.vMin) || c.atoms < 2) throw new Error(`config ${c.name}: bad C51 support`);
  for (const p of [c.dropout, c.qDropout]) {
    if (!(p >= 0 && p < 1)) throw new Error(`config ${c.name}: dropout ${p} outside [0, 1)`);
  }
  return c;
}

/** Number fields of a config that are not sizes (any finite value; validateConfig bounds them). */
const REAL_FIELDS = ["dropout", "qDropout", "vMin", "vMax", "seed"] as const;

/** String fields with their allowed values. */
export const CHOICE_FIELDS = {
  gelu: ["erf", "tanh"],
  init: ["jowa", "gpt2"],
} as const;

/** What a stored config without a choice field was made with (before the field existed). */
const LEGACY_CHOICES = { gelu: "tanh", init: "gpt2" } as const;

/**
 * A world-action config read from untrusted JSON (a checkpoint's `config` metadata): an
 * object with every field of {@link WorldActionConfig} at its type (extra fields dropped),
 * then {@link validateConfig}. Throws a one-line Error naming the first bad field.
 */
export function parseWorldActionConfig(raw: unknown): WorldActionConfig {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new Error(`world-action config is ${jsonType(raw)}, expected an object`);
  }
  const o = raw as Record<string, unknown>;
  if (typeof o.name !== "string") {
    throw new Error(`world-action config field 'name' is ${jsonType(o.name)}, expected a string`);
  }
  const c: Record<string, unknown> = { name: o.name };
  for (const k of [...INTEGER_SIZE_FIELDS, ...REAL_FIELDS]) {
    const v = o[k];
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new Error(`world-action config field '${k}' is ${jsonType(v)}, expected a number`);
    }
    c[k] = v;
  }
  for (const k of Object.keys(CHOICE_FIELDS) as (keyof typeof CHOICE_FIELDS)[]) {
    const v = o[k] ?? LEGACY_CHOICES[k];
    if (!(CHOICE_FIELDS[k] as readonly unknown[]).includes(v)) {
      throw new Error(
        `world-action config field '${k}' is ${jsonType(v)}, expected one of ${CHOICE_FIELDS[k]}`,
      );
    }
    c[k] = v;
  }
  // The stored key order, so a re-saved config reads like the original (defaults last).
  const keys = [
    ...Object.keys(o).filter((k) => k in c),
    ...Object.keys(c).filter((k) => !(k in o)),
  ];
  const ordered = Object.fromEntries(keys.map((k) => [k, c[k]]));
  return validateConfig(ordered as unknown as WorldActionConfig);
}

/** How a JSON value reads in an error message. */
export function jsonType(v: unknown): string {
  if (v === undefined) return "missing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `a string (${JSON.stringify(v.slice(0, 20))})`;
  if (typeof v === "number") return String(v);
  return `${typeof v === "object" ? "an" : "a"} ${typeof v}`;
}
