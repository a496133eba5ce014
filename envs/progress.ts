/**
 * A carriage-return progress bar on stderr.
 * @module
 */

/** Draws `label [#####-----] 50% done/total rate/s ETA` on stderr, at most 10 times a second. */
export class ProgressBar {
  #start = -1;
  #last = 0;
  #enc = new TextEncoder();

  /** Creates a bar for `total` units of work. */
  constructor(readonly total: number, readonly label = "", readonly unit = "steps") {}

  /** Shows progress `done` (redrawn only every 100 ms unless `force`). */
  update(done: number, force = false): void {
    const now = performance.now();
    if (this.#start < 0) this.#start = now; // rate from the first update, not from setup
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const width = 30;
    const fill = Math.round(frac * width);
    const secs = (now - this.#start) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 ? (this.total - done) / rate : 0;
    const line = `\r${this.label} [${"#".repeat(fill)}${"-".repeat(width - fill)}] ` +
      `${(frac * 100).toFixed(0).padStart(3)}% ${done}/${this.total} ` +
      `${rate.toFixed(0)} ${this.unit}/s ETA ${eta.toFixed(0)}s  `;
    Deno.stderr.writeSync(this.#enc.encode(line));
  }

  /** Draws the final state and ends the line. */
  done(done: number): void {
    this.update(done, true);
    Deno.stderr.writeSync(this.#enc.encode("\n"));
  }
}
