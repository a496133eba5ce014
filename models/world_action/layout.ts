/**
 * Where each head reads in the interleaved token sequence. Per timestep: observation tokens
 * at offsets 0..obsTokens-1, then the action token (absolute position p has offset
 * p % (obsTokens + 1)). The conventions (IRIS / JOWA public code):
 *
 * - next-observation head: every position whose NEXT token is an observation token, i.e.
 *   observation offsets 0..obsTokens-2 (predicting offsets 1..obsTokens-1 of the same
 *   timestep) and the action token (predicting offset 0 of the next timestep). The last
 *   observation token is excluded: the token after it is an action.
 * - reward and termination heads: the action token of each timestep (the outcome of taking
 *   that action after that observation).
 * - Q head: the last observation token of each timestep (before the action token).
 *
 * Rows are offsets into a block of `t` tokens that starts at absolute position `start`.
 *
 * @module
 */
import { tokensPerStep, type WorldActionConfig } from "./configs.ts";

/** Offsets (within the block) each head reads, in increasing order. */
export interface HeadRows {
  /** Next-observation predictions; the target of row r is the token at position+1. */
  obs: number[];
  /** Reward and termination predictions (action tokens). */
  action: number[];
  /** Q predictions (last observation token of a timestep). */
  q: number[];
}

/** Whether absolute position `pos` holds an action token. */
export function isActionPosition(c: WorldActionConfig, pos: number): boolean {
  return pos % tokensPerStep(c) === c.obsTokens;
}

/** The head rows of the block [start, start + t). */
export function headRows(c: WorldActionConfig, start: number, t: number): HeadRows {
  const rows: HeadRows = { obs: [], action: [], q: [] };
  const last = c.obsTokens - 1;
  for (let i = 0; i < t; i++) {
    const off = (start + i) % tokensPerStep(c);
    if (off === c.obsTokens) {
      rows.action.push(i);
      rows.obs.push(i);
    } else if (off === last) rows.q.push(i);
    else rows.obs.push(i);
  }
  return rows;
}

/** Maximal runs of one token kind in the block: offsets [from, to). */
export function kindRuns(
  c: WorldActionConfig,
  start: number,
  t: number,
): { action: boolean; from: number; to: number }[] {
  const runs: { action: boolean; from: number; to: number }[] = [];
  for (let i = 0; i < t; i++) {
    const action = isActionPosition(c, start + i);
    const last = runs.at(-1);
    if (last && last.action === action) last.to = i + 1;
    else runs.push({ action, from: i, to: i + 1 });
  }
  return runs;
}

/**
 * Interleave observation tokens [L][obsTokens] and actions [L] (CPU arrays) into one token
 * row of L * (obsTokens + 1) ids; `actions` may be one shorter than the observations (the
 * sequence then ends with the last observation, as when planning from it).
 */
export function interleaveTokens(
  c: WorldActionConfig,
  obs: ArrayLike<number>,
  actions: ArrayLike<number>,
): Int32Array {
  const L = obs.length / c.obsTokens;
  if (!Number.isInteger(L) || (actions.length !== L && actions.length !== L - 1)) {
    throw new Error(
      `interleaveTokens: ${obs.length} observation tokens and ${actions.length} actions`,
    );
  }
  const out = new Int32Array(L * c.obsTokens + actions.length);
  let k = 0;
  for (let s = 0; s < L; s++) {
    for (let j = 0; j < c.obsTokens; j++) out[k++] = obs[s * c.obsTokens + j];
    if (s < actions.length) out[k++] = actions[s];
  }
  return out;
}
