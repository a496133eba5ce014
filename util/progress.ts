/**
 * The project's progress bar, on stderr: count, rate, ETA and a few live fields (losses).
 *
 * On a terminal it redraws one line at most 10 times a second. Elsewhere (logs, CI, a pipe)
 * it prints a plain line at most every `logEvery` seconds, plus the first and the final
 * state, so logs stay readable; `force` prints there at the terminal rate.
 *
 * @module
 */

/** Options of `StepProgress`. */
export interface StepProgressOptions {
  label: string;
  total: number;
  /** Unit name for the rate ("steps", "episodes", "B" for bytes, ...). */
  unit?: string;
  /** Formats counts (e.g. `fmtBytes`); default: integers. */
  format?: (n: number) => string;
  /** When stderr is not a terminal, seconds between lines (default 10). */
  logEvery?: number;
  /** Draw at the terminal rate even when stderr is not a terminal. */
  force?: boolean;
  /** Disable entirely (tests, --quiet). */
  enabled?: boolean;
}

/** Progress over a known amount of work. */
export class StepProgress {
  /** The amount of work; may change as it becomes known. */
  total: number;
  readonly #opts: Required<Omit<StepProgressOptions, "total">>;
  #start = -1;
  #last = -Infinity;
  #done = 0;
  readonly #enc = new TextEncoder();
  readonly #tty: boolean;

  constructor(opts: StepProgressOptions) {
    this.total = opts.total;
    this.#opts = {
      unit: "steps",
      format: (n) => n.toFixed(0),
      logEvery: 10,
      force: false,
      enabled: true,
      ...opts,
    };
    this.#tty = Deno.stderr.isTerminal();
  }

  /** Set the count and the fields shown after it; redraws if due. */
  update(done: number, fields: Record<string, number | string> = {}, force = false): void {
    this.#done = done;
    const { enabled, label, unit, format } = this.#opts;
    if (!enabled) return;
    const now = performance.now();
    if (this.#start < 0) this.#start = now; // the rate counts from the first update
    const interval = this.#tty || this.#opts.force ? 100 : this.#opts.logEvery * 1000;
    if (!force && now - this.#last < interval) return;
    this.#last = now;
    const total = this.total;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const width = 24;
    const full = Math.round(frac * width);
    const secs = (now - this.#start) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 ? (total - done) / rate : NaN;
    const extra = Object.entries(fields).map(([k, v]) =>
      `${k} ${typeof v === "number" ? fmtNumber(v) : v}`
    );
    const line = `${label} [${"#".repeat(full)}${".".repeat(width - full)}] ` +
      `${format(done)}/${format(total)} ${fmtRate(rate, format)} ${unit}/s ETA ${fmtTime(eta)}` +
      (extra.length ? ` | ${extra.join(" ")}` : "");
    Deno.stderr.writeSync(this.#enc.encode(this.#tty ? `\r${line}\x1b[K` : `${line}\n`));
  }

  /** Final redraw and newline. */
  finish(fields: Record<string, number | string> = {}): void {
    if (!this.#opts.enabled) return;
    this.update(this.#done, fields, true);
    if (this.#tty) Deno.stderr.writeSync(this.#enc.encode("\n"));
  }

  /** Seconds since the first update. */
  elapsed(): number {
    return this.#start < 0 ? 0 : (performance.now() - this.#start) / 1000;
  }
}

/** Slow rates keep two decimals (0.24 steps/s); byte rates use the count's format. */
function fmtRate(rate: number, format: (n: number) => string): string {
  if (rate >= 10 || format(1000) !== "1000") return format(rate);
  return rate.toFixed(2);
}

function fmtNumber(v: number): string {
  if (Number.isInteger(v) || !Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a >= 1000 || a < 1e-3 ? v.toExponential(2) : v.toPrecision(4);
}

/** "1h02m", "3m05s", "12s"; "?" when unknown. */
export function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  if (h) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m${String(sec).padStart(2, "0")}s`;
  return `${sec}s`;
}

/** Human-readable byte count (decimal units). */
export function fmtBytes(n: number): string {
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
}
