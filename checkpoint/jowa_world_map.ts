/**
 * The authors' world-action state dict (their `JOWAModel.state_dict()`, github.com/CJReinforce/JOWA)
 * mapped onto ours (models/world_action/spec.ts), with the configuration inferred from the
 * shapes. Their names -> ours:
 *
 *   embedder.embedding_tables.{0,1}.weight   embed.{action,obs}.weight (table 0 = actions)
 *   task_emb.embedding_tables.{0,1}.weight   embed.task_{action,obs}.weight
 *   pos_emb.weight                           embed.position.weight
 *   transformer.blocks.i.attn.{query,key,value}.*   blocks.i.attn.qkv.* = cat([q, k, v], 0)
 *   transformer.blocks.i.attn.proj.*, ln1, ln2      same names under blocks.i
 *   transformer.blocks.i.mlp.{0,2}.*         blocks.i.mlp.{fc1,fc2}.*
 *   transformer.ln_f.*                       ln_f.*
 *   head_{observations,rewards,ends}.head_module.{0,2}.*   head_{obs,reward,end}.{fc1,fc2}.*
 *   head_q.head_module.params.k [num_q, ...]  head_q.{e}.* = slice e of params.k, k in the
 *     MLP's named_parameters order: per hidden block j: 4j linear.weight, 4j+1 linear.bias,
 *     4j+2 norm.weight, 4j+3 norm.bias; then out.weight, out.bias (their utils.Ensemble)
 *   head_q_target.head_module.params.k       target_q.{e}.*
 *   *.indices, transformer.blocks.i.attn.mask (buffers)   dropped
 *
 * Not in the weights, so taken from their code's constants: 36 observation tokens per frame
 * (their tokens_per_block 37), the C51 support [-10, 30], heads = width / 64 (their 40M,
 * 70M and 150M configs) unless given, dropout 0.1 and Q dropout 0.01.
 *
 * @module
 */
import {
  CONFIGS,
  INTEGER_SIZE_FIELDS,
  validateConfig,
  type WorldActionConfig,
} from "../models/world_action/configs.ts";
import { type ParamSpec, targetQSpec, worldActionParamSpec } from "../models/world_action/spec.ts";
import {
  FLOAT_DTYPES,
  fmtShape,
  JowaImportError,
  type MappedTensor,
  numel,
  OneTensorCache,
  sameShape,
  type Source,
} from "./jowa_source.ts";

/** Options of the world-model import. */
export interface JowaWorldOptions {
  /** Attention heads (not visible in the weights); default width / 64 as their configs. */
  heads?: number;
  /** Observation tokens per frame (default 36: their 6x6 tokenizer grid). */
  obsTokens?: number;
}

/** Keys the configuration is read from. */
const KEYS = {
  pos: "pos_emb.weight",
  act: "embedder.embedding_tables.0.weight",
  obs: "embedder.embedding_tables.1.weight",
  task: "task_emb.embedding_tables.0.weight",
  reward: "head_rewards.head_module.2.weight",
  end: "head_ends.head_module.2.weight",
  q0: "head_q.head_module.params.0",
} as const;

const Q_PARAMS = /^head_q\.head_module\.params\.(\d+)$/;
const BLOCK = /^transformer\.blocks\.(\d+)\./;
const DROPPED = [/\.indices$/, /^transformer\.blocks\.\d+\.attn\.mask$/];

/** The world-action configuration their state dict describes. */
export function inferWorldConfig(
  file: string,
  src: Source,
  opts: JowaWorldOptions = {},
): WorldActionConfig {
  const missing = Object.values(KEYS).filter((k) => !src.has(k));
  if (missing.length) {
    throw new JowaImportError(file, [
      `not a JOWA world-action state dict: missing ${missing.map((k) => `'${k}'`).join(", ")}`,
    ]);
  }
  const shape = (k: string) => src.get(k)!.shape;
  const [ctx, d] = shape(KEYS.pos);
  const obsTokens = opts.obsTokens ?? 36;
  const timesteps = ctx / (obsTokens + 1);
  const problems: string[] = [];
  if (!Number.isInteger(timesteps)) {
    problems.push(
      `'${KEYS.pos}' has ${ctx} positions, not a whole number of ${obsTokens + 1}-token timesteps`,
    );
  }
  let layers = 0;
  let qParams = 0;
  for (const k of src.keys()) {
    const b = BLOCK.exec(k);
    if (b) layers = Math.max(layers, Number(b[1]) + 1);
    const q = Q_PARAMS.exec(k);
    if (q) qParams = Math.max(qParams, Number(q[1]) + 1);
  }
  const heads = opts.heads ?? d / 64;
  if (!Number.isInteger(heads) || heads < 1 || d % heads !== 0) {
    problems.push(`width ${d}: cannot infer the heads (width / 64); pass --heads`);
  }
  const q0 = shape(KEYS.q0);
  const actions = shape(KEYS.act)[0];
  const qOut = src.get(`head_q.head_module.params.${qParams - 1}`)?.shape ?? [];
  const atoms = (qOut[1] ?? 0) / actions;
  if ((qParams - 2) % 4 !== 0 || qParams < 6 || !Number.isInteger(atoms) || q0.length !== 3) {
    problems.push(
      `the Q ensemble 'head_q.head_module.params.*' (${qParams} tensors, last ${
        fmtShape(qOut)
      }) is not an MLP of [Linear, LayerNorm] blocks and a Linear to ${actions} x atoms`,
    );
  }
  if (problems.length) throw new JowaImportError(file, problems);
  const cfg: WorldActionConfig = {
    ...CONFIGS["150M"],
    name: "imported",
    layers,
    d,
    heads,
    obsVocab: shape(KEYS.obs)[0],
    actions,
    obsTokens,
    timesteps,
    tasks: shape(KEYS.task)[0],
    qLayers: (qParams - 2) / 4 + 1,
    qHidden: q0[1],
    qEnsemble: q0[0],
    atoms,
    rewardClasses: shape(KEYS.reward)[0],
    endClasses: shape(KEYS.end)[0],
    gelu: "erf",
    init: "jowa",
  };
  // A released size keeps its name (the eval protocol looks settings up by it).
  for (const name of ["40M", "70M", "150M"] as const) {
    if (INTEGER_SIZE_FIELDS.every((k) => CONFIGS[name][k] === cfg[k])) cfg.name = name;
  }
  try {
    return validateConfig(cfg);
  } catch (e) {
    throw new JowaImportError(file, [(e as Error).message]);
  }
}

/** Where one of our tensors comes from. */
type From =
  | { kind: "copy"; key: string }
  | { kind: "fuse"; keys: [string, string, string] }
  | { kind: "member"; key: string; member: number };

const HEADS: Record<string, string> = {
  head_obs: "head_observations",
  head_reward: "head_rewards",
  head_end: "head_ends",
};
const EMBED: Record<string, string> = {
  "embed.obs.weight": "embedder.embedding_tables.1.weight",
  "embed.action.weight": "embedder.embedding_tables.0.weight",
  "embed.position.weight": "pos_emb.weight",
  "embed.task_obs.weight": "task_emb.embedding_tables.1.weight",
  "embed.task_action.weight": "task_emb.embedding_tables.0.weight",
};

/** Their source of our tensor `name` (a name of worldActionParamSpec or targetQSpec). */
export function worldSourceOf(cfg: WorldActionConfig, name: string): From {
  if (EMBED[name]) return { kind: "copy", key: EMBED[name] };
  let m = /^blocks\.(\d+)\.(.+)$/.exec(name);
  if (m) {
    const pre = `transformer.blocks.${m[1]}.`;
    const rest = m[2];
    const qkv = /^attn\.qkv\.(weight|bias)$/.exec(rest);
    if (qkv) {
      const s = qkv[1];
      return {
        kind: "fuse",
        keys: [`${pre}attn.query.${s}`, `${pre}attn.key.${s}`, `${pre}attn.value.${s}`],
      };
    }
    return {
      kind: "copy",
      key: pre + rest.replace("mlp.fc1", "mlp.0").replace("mlp.fc2", "mlp.2"),
    };
  }
  if (name.startsWith("ln_f.")) return { kind: "copy", key: `transformer.${name}` };
  m = /^(head_obs|head_reward|head_end)\.fc([12])\.(weight|bias)$/.exec(name);
  if (m) {
    return { kind: "copy", key: `${HEADS[m[1]]}.head_module.${m[2] === "1" ? 0 : 2}.${m[3]}` };
  }
  m = /^(head_q|target_q)\.(\d+)\.(.+)$/.exec(name);
  if (m) {
    const head = m[1] === "head_q" ? "head_q" : "head_q_target";
    const h = /^hidden\.(\d+)\.(linear|norm)\.(weight|bias)$/.exec(m[3]);
    let k: number;
    if (h) k = 4 * Number(h[1]) + (h[2] === "norm" ? 2 : 0) + (h[3] === "bias" ? 1 : 0);
    else k = 4 * (cfg.qLayers - 1) + (m[3] === "out.bias" ? 1 : 0);
    return { kind: "member", key: `${head}.head_module.params.${k}`, member: Number(m[2]) };
  }
  throw new Error(`jowa import: no source for our tensor '${name}'`);
}

/**
 * Every tensor of our world-action checkpoint (parameters, then the target head) with its
 * source. Checks all source tensors first (missing, misshapen, non-float, unknown keys) and
 * throws ONE JowaImportError listing every problem.
 */
export function planWorldModel(
  file: string,
  src: Source,
  cfg: WorldActionConfig,
): MappedTensor[] {
  const specs: ParamSpec[] = [...worldActionParamSpec(cfg), ...targetQSpec(cfg)];
  const expected = new Map<string, number[]>(); // their key -> shape
  const froms = specs.map((s) => {
    const f = worldSourceOf(cfg, s.name);
    if (f.kind === "copy") expected.set(f.key, s.shape);
    else if (f.kind === "fuse") {
      const part = [s.shape[0] / 3, ...s.shape.slice(1)];
      for (const k of f.keys) expected.set(k, part);
    } else expected.set(f.key, [cfg.qEnsemble, ...s.shape]);
    return f;
  });
  const problems = checkSource(src, expected, DROPPED);
  if (problems.length) throw new JowaImportError(file, problems);
  const cache = new OneTensorCache(src);
  return specs.map((s, i) => {
    const f = froms[i];
    const n = numel(s.shape);
    const read = async (): Promise<Float32Array> => {
      if (f.kind === "copy") return Float32Array.from(await cache.read(f.key));
      if (f.kind === "member") {
        return (await cache.read(f.key)).slice(f.member * n, (f.member + 1) * n);
      }
      const out = new Float32Array(n);
      for (const [j, k] of f.keys.entries()) out.set(await cache.read(k), (j * n) / 3);
      return out;
    };
    return { name: s.name, shape: s.shape, read };
  });
}

/**
 * Problems of a source against the expected keys and shapes: missing, misshapen and
 * non-float tensors, and keys neither expected nor matching `dropped`.
 */
export function checkSource(
  src: Source,
  expected: ReadonlyMap<string, readonly number[]>,
  dropped: readonly RegExp[],
): string[] {
  const problems: string[] = [];
  for (const [k, shape] of expected) {
    const t = src.get(k);
    if (!t) problems.push(`missing '${k}' ${fmtShape(shape)}`);
    else if (!FLOAT_DTYPES.includes(t.dtype)) {
      problems.push(`'${t.name}' is ${t.dtype}, expected a floating dtype (F32, F16, BF16)`);
    } else if (!sameShape(t.shape, shape)) {
      problems.push(`'${t.name}' has shape ${fmtShape(t.shape)}, expected ${fmtShape(shape)}`);
    }
  }
  for (const [k, t] of src) {
    if (!expected.has(k) && !dropped.some((re) => re.test(k))) {
      problems.push(`unexpected '${t.name}' ${fmtShape(t.shape)}`);
    }
  }
  return problems;
}
