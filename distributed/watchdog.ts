/**
 * The collective watchdog: a collective that does not finish within `JOWA_MPI_TIMEOUT_S`
 * seconds means a peer died without the launcher noticing, or hangs; the job is then aborted
 * with a message naming the operation, instead of hanging until the allocation ends.
 * @module
 */
import { DistributedError } from "./errors.ts";
import type { Env } from "./launcher.ts";

/**
 * Default deadline of one collective, in seconds. Generous: a collective also waits for the
 * slowest rank's work before it (an evaluation or checkpoint on rank 0, say).
 */
export const DEFAULT_TIMEOUT_S = 600;

/** Exit code of a job aborted by the watchdog (as GNU timeout's). */
export const TIMEOUT_EXIT_CODE = 124;

/** `JOWA_MPI_TIMEOUT_S` (seconds, fractions allowed; 0 disables), else the default. */
export function timeoutFromEnv(env: Env): number {
  const raw = env.JOWA_MPI_TIMEOUT_S?.trim();
  if (!raw) return DEFAULT_TIMEOUT_S;
  const t = Number(raw);
  if (!Number.isFinite(t) || t < 0) {
    throw new DistributedError(`jowa distributed: JOWA_MPI_TIMEOUT_S=${raw} is not a number >= 0`);
  }
  return t;
}

/**
 * Resolves as `p` does; calls `onTimeout` if it has not settled after `seconds` (0: never).
 * The timer does not keep the process alive on its own.
 */
export function withDeadline<T>(p: Promise<T>, seconds: number, onTimeout: () => void): Promise<T> {
  if (!(seconds > 0)) return p;
  const id = setTimeout(onTimeout, seconds * 1000);
  Deno.unrefTimer(id);
  return p.finally(() => clearTimeout(id));
}
