import { mulberry32 } from "../util/rng.ts";
/**
 * Shared helpers for the envs_* tests: the Python reference runner and a small PRNG.
 * @module
 */
import { unpack } from "msgpackr";

/** Python for the tests: env JOWA_PYTHON, else python3. */
export const PYTHON = Deno.env.get("JOWA_PYTHON") ?? "python3";

/** Runs tests/envs_reference.py with `args` on `python` and returns its decoded output. */
export async function runReference(
  args: Record<string, unknown>,
  python = PYTHON,
): Promise<Record<string, unknown>> {
  const script = new URL("./envs_reference.py", import.meta.url).pathname;
  const r = await new Deno.Command(python, {
    args: [script, JSON.stringify(args)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (r.code !== 0) throw new Error(`reference failed:\n${new TextDecoder().decode(r.stderr)}`);
  return unpack(r.stdout) as Record<string, unknown>;
}

/** Deterministic mulberry32 PRNG in [0, 1). */
export const prng: (seed: number) => () => number = mulberry32;

/** Hex SHA-256 of some bytes. */
export async function sha256(data: Uint8Array): Promise<string> {
  const h = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(h), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** True when a process with this pid exists (and is not a zombie). */
export function pidAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** Waits up to `ms` for every pid to disappear; returns the ones still alive. */
export async function waitGone(pids: number[], ms = 5000): Promise<number[]> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pids.every((p) => !pidAlive(p))) return [];
    await new Promise((r) => setTimeout(r, 50));
  }
  return pids.filter(pidAlive);
}
