/**
 * A one-line progress bar on stderr (redrawn at most 10 times a second).
 * @module
 */

/** Progress bar for byte-counted work. */
export class ProgressBar {
  #label: string;
  #start = performance.now();
  #last = 0;
  #enc = new TextEncoder();
  #enabled: boolean;
  #fmt: (n: number) => string;

  /** A bar prefixed by `label`; `enabled` false silences it; `unit` picks the number format. */
  constructor(label: string, enabled = true, unit: "bytes" | "items" = "bytes") {
    this.#label = label;
    this.#enabled = enabled;
    this.#fmt = unit === "bytes" ? fmtBytes : (n) => n.toFixed(0);
  }

  /** Redraw with `done` of `total` bytes (or items, when constructed with `unit` "items"). */
  update(done: number, total: number, force = false): void {
    if (!this.#enabled) return;
    const now = performance.now();
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const width = 30, full = Math.round(frac * width);
    const secs = (now - this.#start) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 ? (total - done) / rate : 0;
    const line = `\r${this.#label} [${"#".repeat(full)}${".".repeat(width - full)}] ` +
      `${(frac * 100).toFixed(1).padStart(5)}% ${this.#fmt(done)}/${this.#fmt(total)} ` +
      `${this.#fmt(rate)}/s ETA ${eta.toFixed(0)}s `;
    Deno.stderr.writeSync(this.#enc.encode(line));
  }

  /** Final redraw and newline. */
  finish(done: number, total: number): void {
    if (!this.#enabled) return;
    this.update(done, total, true);
    Deno.stderr.writeSync(this.#enc.encode("\n"));
  }
}

/** Human-readable byte count. */
export function fmtBytes(n: number): string {
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
}
