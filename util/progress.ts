/**
 * A one-line progress bar on stderr for step-counted work: count, rate, ETA and a few live
 * fields (losses). Redraws at most 10 times a second; silent when stderr is not a terminal
 * unless forced, so logs stay clean.
 *
 * @module
 */

/** Options of `StepProgress`. */
export interface StepProgressOptions {
  label: string;
  total: number;
  /** Unit name for the rate ("steps", "episodes", ...). */
  unit?: string;
  /** Draw even when stderr is not a terminal (a line per redraw). */
  force?: boolean;
  /** Disable entirely (tests). */
  enabled?: boolean;
}

/** Progress over a known number of steps. */
export class StepProgress {
  readonly #opts: Required<StepProgressOptions>;
  readonly #start = performance.now();
  #last = 0;
  #done = 0;
  readonly #enc = new TextEncoder();
  readonly #tty: boolean;

  constructor(opts: StepProgressOptions) {
    this.#opts = { unit: "steps", force: false, enabled: true, ...opts };
    this.#tty = Deno.stderr.isTerminal();
  }

  /** Set the count and the fields shown after it; redraws if due. */
  update(done: number, fields: Record<string, number | string> = {}, force = false): void {
    this.#done = done;
    const { enabled, label, total, unit } = this.#opts;
    if (!enabled || (!this.#tty && !this.#opts.force && !force)) return;
    const now = performance.now();
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const width = 24;
    const full = Math.round(frac * width);
    const secs = (now - this.#start) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 ? (total - done) / rate : 0;
    const extra = Object.entries(fields).map(([k, v]) =>
      `${k} ${typeof v === "number" ? fmt(v) : v}`
    );
    const line = `${label} [${"#".repeat(full)}${".".repeat(width - full)}] ${done}/${total} ` +
      `${rate.toFixed(rate < 10 ? 2 : 0)} ${unit}/s ETA ${fmtTime(eta)}` +
      (extra.length ? ` | ${extra.join(" ")}` : "");
    Deno.stderr.writeSync(this.#enc.encode(this.#tty ? `\r${line}\x1b[K` : `${line}\n`));
  }

  /** Final redraw and newline. */
  finish(fields: Record<string, number | string> = {}): void {
    if (!this.#opts.enabled) return;
    this.update(this.#done, fields, true);
    if (this.#tty) Deno.stderr.writeSync(this.#enc.encode("\n"));
  }

  /** Seconds since the bar was created. */
  elapsed(): number {
    return (performance.now() - this.#start) / 1000;
  }
}

function fmt(v: number): string {
  if (v === 0 || !Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a >= 1000 || a < 1e-3 ? v.toExponential(2) : v.toPrecision(4);
}

/** "1h02m", "3m05s", "12s". */
export function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  if (h) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m${String(sec).padStart(2, "0")}s`;
  return `${sec}s`;
}
