/**
 * From a token segment batch (train/data sampler) to the arrays the world-action model and
 * the losses take: the interleaved token rows, the next-observation targets, reward and
 * termination classes, the transitions of the action loss and each item's valid actions.
 *
 * Masks (B items, L timesteps, transition s = (o_s, a_s, r_s, d_s, o_{s+1})):
 * - reward/termination at step s: mask[s] (the last row of an episode has no next frame but
 *   still carries its terminal flag, which the termination head must see);
 * - next observation of step s (s < L-1): mask[s+1];
 * - action loss at s < L-1: mask[s] and (mask[s+1] or terminal[s]) (a terminal transition
 *   needs no next observation: its target is r alone).
 *
 * @module
 */
import type { SegmentBatch } from "../offline/mod.ts";
import { MINIMAL_ACTIONS } from "../atari/minimal_actions.ts";
import { gameOfTaskId } from "../atari/task_ids.ts";

/** CPU arrays of one training batch (B items, L timesteps, P tokens per frame). */
export interface WorldBatchArrays {
  B: number;
  L: number;
  /** Tokens per observation. */
  P: number;
  /** i32 [B, L, P] observation tokens; null when a tokenizer makes them on the GPU. */
  obsTokens: Int32Array | null;
  /** i32 [B, L]: the action of every step (0 on padding). */
  stepActions: Int32Array;
  /** i32 [B]. */
  taskIds: Int32Array;
  /** f32 [B*(L-1)]. */
  nextObsMask: Float32Array;
  /** i32 [B*L]: sign(r) + 1. */
  rewardClass: Int32Array;
  /** i32 [B*L]. */
  terminal: Int32Array;
  /** f32 [B*L]. */
  stepMask: Float32Array;
  /** i32 [B*(L-1)]: a_s. */
  actions: Int32Array;
  /** f32 [B*(L-1)]: r_s clipped to [-1, 1] (DQN-Replay's are already). */
  rewards: Float32Array;
  /** f32 [B*(L-1)]: d_s. */
  terminals: Float32Array;
  /** f32 [B*(L-1)]. */
  actionMask: Float32Array;
  /** f32 [B*(L-1), A]: 1 for the item's game's valid actions. */
  valid: Float32Array;
}

/** Options of {@link worldBatchArrays}. */
export interface WorldBatchOptions {
  /** Full action-set size (18). */
  actions?: number;
  /** Valid actions per task id (default: the game's minimal set, all actions if unknown). */
  validActions?: (taskId: number) => readonly number[];
  /**
   * Test hook: a poisoned batch (NaN rewards and a NaN next-observation weight), so both
   * stages' losses become non-finite (the non-finite guard's test).
   */
  poison?: boolean;
}

/** Valid actions of a task id: the game's minimal set, or all 18 for an unknown game. */
export function defaultValidActions(taskId: number, actions = 18): readonly number[] {
  const game = gameOfTaskId(taskId);
  return MINIMAL_ACTIONS[game] ?? Array.from({ length: actions }, (_, i) => i);
}

/**
 * Build the arrays of one batch: from token segments (`b.tokens` u16 [B, L, P]) or, for
 * frame segments, everything but the observation tokens (`obsTokens` null).
 */
export function worldBatchArrays(b: SegmentBatch, opts: WorldBatchOptions = {}): WorldBatchArrays {
  const A = opts.actions ?? 18;
  const valid = opts.validActions ?? ((id: number) => defaultValidActions(id, A));
  const B = b.batchSize, L = b.segmentLength;
  const P = b.tokens ? b.tokens.length / (B * L) : 36;
  const nextObsMask = new Float32Array(B * (L - 1));
  const rewardClass = new Int32Array(B * L);
  const terminal = new Int32Array(B * L);
  const stepMask = new Float32Array(B * L);
  const actions = new Int32Array(B * (L - 1));
  const rewards = new Float32Array(B * (L - 1));
  const terminals = new Float32Array(B * (L - 1));
  const actionMask = new Float32Array(B * (L - 1));
  const validArr = new Float32Array(B * (L - 1) * A);
  for (let i = 0; i < B; i++) {
    const rowValid = new Float32Array(A);
    for (const a of valid(b.taskIds[i])) rowValid[a] = 1;
    for (let s = 0; s < L; s++) {
      const k = i * L + s;
      const m = b.mask[k];
      const r = opts.poison ? NaN : Math.max(-1, Math.min(1, b.rewards[k]));
      rewardClass[k] = m ? Math.sign(b.rewards[k]) + 1 : 0;
      terminal[k] = m ? b.terminals[k] : 0;
      stepMask[k] = m;
      if (s === L - 1) continue;
      const t = i * (L - 1) + s;
      nextObsMask[t] = b.mask[k + 1];
      actions[t] = b.actions[k];
      rewards[t] = r;
      terminals[t] = b.terminals[k];
      actionMask[t] = m && (b.mask[k + 1] || b.terminals[k]) ? 1 : 0;
      validArr.set(rowValid, t * A);
    }
  }
  if (opts.poison) nextObsMask[0] = NaN;
  return {
    B,
    L,
    P,
    obsTokens: b.tokens ? Int32Array.from(b.tokens) : null,
    stepActions: Int32Array.from(b.actions),
    taskIds: Int32Array.from(b.taskIds),
    nextObsMask,
    rewardClass,
    terminal,
    stepMask,
    actions,
    rewards,
    terminals,
    actionMask,
    valid: validArr,
  };
}
