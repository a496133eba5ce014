/**
 * Shared helpers of the data tests: temp dirs, running Python/numpy as the reference.
 * @module
 */

/** The Python interpreter of the tests: $JOWA_PYTHON or python3. */
export const PYTHON = Deno.env.get("JOWA_PYTHON") ?? "python3";

/** Run a Python script (stdin) with args; returns stdout, throws with stderr on failure. */
export async function runPython(script: string, args: string[] = []): Promise<string> {
  const cmd = new Deno.Command(PYTHON, {
    args: ["-c", script, ...args],
    stdout: "piped",
    stderr: "piped",
  });
  const out = await cmd.output();
  const dec = new TextDecoder();
  if (!out.success) throw new Error(`python failed:\n${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

/** Run `fn` with a fresh temp dir, removed afterwards. */
export async function withTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "jowa_data_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Deterministic pseudo-random bytes for fixtures (xorshift32). */
export function fixtureBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 255;
  }
  return out;
}
