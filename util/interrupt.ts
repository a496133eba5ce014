/**
 * Ctrl-C handling for long-running CLIs: the first SIGINT asks for a graceful stop, only a
 * later, deliberate one exits at once.
 *
 * One key press can arrive as several SIGINTs: a terminal sends it to every process of the
 * foreground group, and `deno task` forwards the one it got to its child again. Signals
 * within `graceMs` of the first are therefore the same Ctrl-C; a hard exit needs one after.
 * @module
 */

/** What to do with one SIGINT. */
export type InterruptAction = "stop" | "ignore" | "exit";

/** Decides per SIGINT (pure, clock injectable for tests). */
export class InterruptGate {
  #first = -1;

  /** @param graceMs signals this soon after the first count as the same Ctrl-C. */
  constructor(
    readonly graceMs = 1000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Classify a SIGINT received now. */
  next(): InterruptAction {
    const t = this.now();
    if (this.#first < 0) {
      this.#first = t;
      return "stop";
    }
    return t - this.#first <= this.graceMs ? "ignore" : "exit";
  }
}

/** Options of {@link onInterrupt}. */
export interface InterruptOptions {
  /** Repeated signals within this many ms of the first are one Ctrl-C (default 1000). */
  graceMs?: number;
  /** Exit code of the hard exit (default 130). */
  exitCode?: number;
}

/**
 * Listen for SIGINT: the first calls `stop`, a second one more than `graceMs` later exits
 * the process. Returns a function removing the listener.
 */
export function onInterrupt(stop: () => void, opts: InterruptOptions = {}): () => void {
  const gate = new InterruptGate(opts.graceMs ?? 1000);
  const listener = () => {
    const a = gate.next();
    if (a === "stop") stop();
    else if (a === "exit") Deno.exit(opts.exitCode ?? 130);
  };
  Deno.addSignalListener("SIGINT", listener);
  return () => Deno.removeSignalListener("SIGINT", listener);
}
