import { mulberry32 } from "../util/rng.ts";
/**
 * Shared helpers for the checkpoint tests: the Python reference, seeded randomness, temp dirs.
 * @module
 */

import { fileURLToPath } from "node:url";

/** Python interpreter used as the reference (JOWA_PYTHON, else python3). */
export const PYTHON = Deno.env.get("JOWA_PYTHON") ?? "python3";

const SCRIPT = fileURLToPath(new URL("./checkpoint_reference.py", import.meta.url));

/** Run tests/checkpoint_reference.py with `args` and return its parsed JSON output. */
export async function reference<T>(...args: string[]): Promise<T> {
  const out = await new Deno.Command(PYTHON, {
    args: [SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`reference ${args[0]} failed (${out.code}):\n${stderr}`);
  return JSON.parse(new TextDecoder().decode(out.stdout)) as T;
}

/** Deterministic PRNG (mulberry32) returning floats in [0, 1). */
export const rng: (seed: number) => () => number = mulberry32;

/** Random bytes from a seeded generator. */
export function randomBytes(next: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256);
  return out;
}

/** Lower-case hex of bytes (the reference script's encoding). */
export function hex(bytes: ArrayBufferView): string {
  const u8 = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from(u8, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Run `fn` with a fresh temporary directory that is removed afterwards. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "jowa_ckpt_" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** What the reference `dump` command reports for one file. */
export interface Dump {
  ok: boolean;
  error?: string;
  metadata?: Record<string, string> | null;
  header_len?: number;
  tensors?: Record<string, {
    dtype: string;
    shape: number[];
    hex: string;
    f32hex: string | null;
    numpy_dtype?: string;
    numpy_shape?: number[];
    numpy_hex?: string;
  }>;
}
