/**
 * The world-action model's parameters as names and shapes, without allocating anything:
 * the parameter report counts from it and the model's constructor checks itself against it,
 * so the two cannot drift apart.
 *
 * Names (stable; checkpoints use them):
 * - `embed.obs.weight` [obsVocab, d], `embed.action.weight` [actions, d],
 *   `embed.position.weight` [context, d], `embed.task_obs.weight` [tasks, d],
 *   `embed.task_action.weight` [tasks, d]
 * - `blocks.{i}.{ln1,attn.qkv,attn.proj,ln2,mlp.fc1,mlp.fc2}.{weight,bias}` (models/world_action/transformer.ts)
 * - `ln_f.{weight,bias}`
 * - `head_obs.{fc1,fc2}.*`, `head_reward.{fc1,fc2}.*`, `head_end.{fc1,fc2}.*`
 * - `head_q.{e}.hidden.{j}.{linear,norm}.*`, `head_q.{e}.out.*` for ensemble member e
 * - target copy (not a parameter; saved as an extra tensor): `target_q.` + the `head_q.` names
 *
 * @module
 */
import { contextLength, type WorldActionConfig } from "./configs.ts";

/** Which part of the model a parameter belongs to (for reports). */
export type ModelPart =
  | "embeddings"
  | "backbone"
  | "head_obs"
  | "head_reward"
  | "head_end"
  | "head_q";

/** One parameter: dotted name, shape, part. */
export interface ParamSpec {
  name: string;
  shape: number[];
  part: ModelPart;
}

function linear(name: string, din: number, dout: number, part: ModelPart): ParamSpec[] {
  return [
    { name: `${name}.weight`, shape: [dout, din], part },
    { name: `${name}.bias`, shape: [dout], part },
  ];
}

function norm(name: string, d: number, part: ModelPart): ParamSpec[] {
  return [{ name: `${name}.weight`, shape: [d], part }, { name: `${name}.bias`, shape: [d], part }];
}

/** Parameters of one Q-head ensemble member, names relative to the member. */
export function qMemberSpec(c: WorldActionConfig, prefix: string): ParamSpec[] {
  const out: ParamSpec[] = [];
  let din = c.d;
  for (let j = 0; j < c.qLayers - 1; j++) {
    out.push(...linear(`${prefix}hidden.${j}.linear`, din, c.qHidden, "head_q"));
    out.push(...norm(`${prefix}hidden.${j}.norm`, c.qHidden, "head_q"));
    din = c.qHidden;
  }
  out.push(...linear(`${prefix}out`, din, c.actions * c.atoms, "head_q"));
  return out;
}

/** Every trainable parameter in registration order (the order `namedParameters()` lists). */
export function worldActionParamSpec(c: WorldActionConfig): ParamSpec[] {
  const d = c.d;
  const e = "embeddings" as const;
  const out: ParamSpec[] = [
    { name: "embed.obs.weight", shape: [c.obsVocab, d], part: e },
    { name: "embed.action.weight", shape: [c.actions, d], part: e },
    { name: "embed.position.weight", shape: [contextLength(c), d], part: e },
    { name: "embed.task_obs.weight", shape: [c.tasks, d], part: e },
    { name: "embed.task_action.weight", shape: [c.tasks, d], part: e },
  ];
  for (let i = 0; i < c.layers; i++) {
    const p = `blocks.${i}.`;
    out.push(
      ...norm(`${p}ln1`, d, "backbone"),
      ...linear(`${p}attn.qkv`, d, 3 * d, "backbone"),
      ...linear(`${p}attn.proj`, d, d, "backbone"),
      ...norm(`${p}ln2`, d, "backbone"),
      ...linear(`${p}mlp.fc1`, d, 4 * d, "backbone"),
      ...linear(`${p}mlp.fc2`, 4 * d, d, "backbone"),
    );
  }
  out.push(...norm("ln_f", d, "backbone"));
  const heads = [
    ["head_obs", c.obsVocab],
    ["head_reward", c.rewardClasses],
    ["head_end", c.endClasses],
  ] as const;
  for (const [name, classes] of heads) {
    out.push(...linear(`${name}.fc1`, d, d, name), ...linear(`${name}.fc2`, d, classes, name));
  }
  for (let m = 0; m < c.qEnsemble; m++) out.push(...qMemberSpec(c, `head_q.${m}.`));
  return out;
}

/** The target Q head's tensors (same shapes as `head_q`, prefixed `target_q.`). */
export function targetQSpec(c: WorldActionConfig): ParamSpec[] {
  const out: ParamSpec[] = [];
  for (let m = 0; m < c.qEnsemble; m++) out.push(...qMemberSpec(c, `target_q.${m}.`));
  return out;
}

/** Element count of a list of specs. */
export function countParams(specs: readonly ParamSpec[]): number {
  return specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
}

/** Element counts per part. */
export function countByPart(specs: readonly ParamSpec[]): Record<ModelPart, number> {
  const out: Record<ModelPart, number> = {
    embeddings: 0,
    backbone: 0,
    head_obs: 0,
    head_reward: 0,
    head_end: 0,
    head_q: 0,
  };
  for (const s of specs) out[s.part] += s.shape.reduce((x, y) => x * y, 1);
  return out;
}
