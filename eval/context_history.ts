/**
 * Each environment's recent past as the world-action model sees it: observation tokens and
 * the actions taken after them. Planning from the current observation uses a window of at
 * most `timesteps - horizon` observations (the current one included; fewer with a `context`
 * setting: min(L - H, context), as the authors' `buffer_size`), so the window plus
 * the H imagined timesteps fit the model's context (models/kv_cache_window.ts gives the same
 * count); positions restart at 0 in each window, as in training segments.
 *
 * @module
 */

/**
 * Observations a planning window holds: L - H (L with the greedy policy, H = 0), or fewer when
 * `context` (the public protocol's per-game `buffer_size`) asks for less: min(L - H, context).
 */
export function windowTimesteps(
  timesteps: number,
  horizon: number,
  context?: number | null,
): number {
  const w = timesteps - horizon;
  if (w < 1) throw new Error(`horizon ${horizon} leaves no room in a ${timesteps}-step context`);
  if (context === undefined || context === null) return w;
  if (!Number.isInteger(context) || context < 1) {
    throw new Error(`context must be a positive integer number of timesteps, got ${context}`);
  }
  return Math.min(w, context);
}

/** One environment's past observations (tokens) and the action taken after each. */
export class EnvHistory {
  /** Past observation tokens, oldest first (the current observation is not here yet). */
  readonly obs: Int32Array[] = [];
  /** actions[i] was taken after obs[i]. */
  readonly actions: number[] = [];

  constructor(readonly maxWindow: number) {}

  /** Forget everything (a new episode). */
  clear(): void {
    this.obs.length = 0;
    this.actions.length = 0;
  }

  /** Observations in the next planning window, the pending current one included. */
  get window(): number {
    return Math.min(this.obs.length + 1, this.maxWindow);
  }

  /** Record the current observation's tokens and the action taken (keeps what a window needs). */
  push(tokens: Int32Array, action: number): void {
    this.obs.push(tokens);
    this.actions.push(action);
    if (this.obs.length >= this.maxWindow) {
      this.obs.shift();
      this.actions.shift();
    }
  }

  /**
   * The tokens before the current observation in a window of `w` observations:
   * (w - 1) x (observation tokens, action), interleaved.
   */
  pastTokens(w: number, obsTokens: number): Int32Array {
    const past = w - 1;
    if (past > this.obs.length) throw new Error(`history holds ${this.obs.length} < ${past}`);
    const out = new Int32Array(past * (obsTokens + 1));
    let k = 0;
    for (let s = this.obs.length - past; s < this.obs.length; s++) {
      out.set(this.obs[s], k);
      k += obsTokens;
      out[k++] = this.actions[s];
    }
    return out;
  }
}
