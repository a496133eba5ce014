/**
 * Which world-action parameters AdamW decays: the authors' `configure_optimizer`
 * (src/utils.py, minGPT's rule plus a Q-head group) applied to our parameter names.
 *
 * - decayed: Linear weights (attention qkv/proj, MLPs, the three world heads' layers);
 * - not decayed: biases, LayerNorm affines and embedding tables (token, task, position);
 * - the Q ensemble (`head_q.*`): EVERYTHING decayed, biases and LayerNorm affines included,
 *   because theirs is stacked into plain `params.k` Parameters that only the `.head_q`
 *   group matches. (The target head is never trained: AdamW skips it.)
 *
 * @module
 */

/** True for a parameter AdamW must not decay (pass as `AdamWOptions.noDecay`). */
export function noDecay(name: string): boolean {
  if (name.startsWith("head_q.")) return false;
  return name.endsWith(".bias") || /(^|\.)(ln|norm)/.test(name) || name.startsWith("embed");
}
