/**
 * From a token segment batch (offline/ sampler) to the arrays the world-action model and
 * the losses take, with the authors' masks (`compute_loss` and `compute_labels_world_model`,
 * src/models/jowa_model.py). B items, L timesteps, P tokens per frame; mask = their
 * `mask_padding`:
 *
 * - next observation token: the flattened tokens [B, L*P] shifted by one, i.e. target j is
 *   token j+1 (frame 0's tokens 1..P-1 included: L*P - 1 targets per segment), weighted by
 *   the mask of the timestep that owns the target token;
 * - reward/termination at step s: mask[s] (the last row of an episode has no next frame but
 *   still carries its terminal flag, which the termination head must see);
 * - TD transition at every step s (L per segment): mask[s] and (mask[s+1] or terminal[s]),
 *   so the last position counts when it is terminal (its target is r alone). Departure: a
 *   terminal that is not the last real step counts once here, twice in theirs (their data,
 *   right-padded after the terminal, never has one);
 * - CQL at every real step s: mask[s].
 *
 * Rewards are clipped to [-1, 1] for the TD target (theirs are raw; DQN-Replay's rewards are
 * clipped already, so the two agree on it).
 *
 * @module
 */
import type { SegmentBatch } from "../offline/mod.ts";
import { gameOfTaskId, MINIMAL_ACTIONS } from "../atari/mod.ts";

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
  /** f32 [B, L*P - 1]: weight of next-token target j (token j+1 of the item's frames). */
  obsMask: Float32Array;
  /** i32 [B*L]: sign(r) + 1. */
  rewardClass: Int32Array;
  /** i32 [B*L]. */
  terminal: Int32Array;
  /** f32 [B*L]: real timesteps (reward/termination rows and CQL rows). */
  stepMask: Float32Array;
  /** f32 [B*L]: r_s clipped to [-1, 1] (DQN-Replay's are already). */
  rewards: Float32Array;
  /** f32 [B*L]: d_s. */
  terminals: Float32Array;
  /** f32 [B*L]: TD transitions (see the module doc). */
  tdMask: Float32Array;
  /** f32 [B*L, A]: 1 for the item's game's valid actions. */
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
  const R = L * P - 1; // next-token targets per item
  const obsMask = new Float32Array(B * R);
  const rewardClass = new Int32Array(B * L);
  const terminal = new Int32Array(B * L);
  const stepMask = new Float32Array(B * L);
  const rewards = new Float32Array(B * L);
  const terminals = new Float32Array(B * L);
  const tdMask = new Float32Array(B * L);
  const validArr = new Float32Array(B * L * A);
  for (let i = 0; i < B; i++) {
    const rowValid = new Float32Array(A);
    for (const a of valid(b.taskIds[i])) rowValid[a] = 1;
    for (let s = 0; s < L; s++) {
      const k = i * L + s;
      const m = b.mask[k];
      rewardClass[k] = m ? Math.sign(b.rewards[k]) + 1 : 0;
      terminal[k] = m ? b.terminals[k] : 0;
      stepMask[k] = m;
      rewards[k] = opts.poison ? NaN : Math.max(-1, Math.min(1, b.rewards[k]));
      terminals[k] = b.terminals[k];
      const next = s + 1 < L && b.mask[k + 1];
      tdMask[k] = m && (next || b.terminals[k]) ? 1 : 0;
      validArr.set(rowValid, k * A);
      // Targets s*P-1 .. s*P+P-2 are the tokens of frame s (frame 0 starts at its token 1).
      obsMask.fill(m, i * R + Math.max(0, s * P - 1), i * R + s * P + P - 1);
    }
  }
  if (opts.poison) obsMask[0] = NaN;
  return {
    B,
    L,
    P,
    obsTokens: b.tokens ? Int32Array.from(b.tokens) : null,
    stepActions: Int32Array.from(b.actions),
    taskIds: Int32Array.from(b.taskIds),
    obsMask,
    rewardClass,
    terminal,
    stepMask,
    rewards,
    terminals,
    tdMask,
    valid: validArr,
  };
}
