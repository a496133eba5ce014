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

/** Everything that fixes the world-action model's parameter shapes and behaviour. */
export interface WorldActionConfig {
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
  /** C51 atoms and their support [vMin, vMax]. */
  atoms: number;
  vMin: number;
  vMax: number;
  /** Reward classes: sign(r) + 1. */
  rewardClasses: number;
  /** Termination classes. */
  endClasses: number;
  /** Seed of the parameter initialization. */
  seed: number;
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
  atoms: 51,
  vMin: -10,
  vMax: 30,
  rewardClasses: 3,
  endClasses: 2,
  seed: 0,
} as const;

/**
 * Named configurations. `tiny` uses a 64-token observation vocabulary, the codebook of the
 * tiny tokenizer (models/tokenizer_config.ts TINY_TOKENIZER.vocab; the two must agree), and
 * a 2-member Q ensemble so tests exercise the averaging.
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
  if (!(c.vMax > c.vMin) || c.atoms < 2) throw new Error(`config ${c.name}: bad C51 support`);
  for (const p of [c.dropout, c.qDropout]) {
    if (!(p >= 0 && p < 1)) throw new Error(`config ${c.name}: dropout ${p} outside [0, 1)`);
  }
  return c;
}

/** The C51 support z_i = vMin + i (vMax - vMin) / (atoms - 1). */
export function support(c: WorldActionConfig): Float32Array {
  const dz = (c.vMax - c.vMin) / (c.atoms - 1);
  return Float32Array.from({ length: c.atoms }, (_, i) => c.vMin + i * dz);
}
