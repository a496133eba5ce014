/**
 * The process-wide compute precision of products: "f32" (default) or "f16" (`--precision
 * f16`: matmuls read f16-rounded operands and f16 weight copies and accumulate in f32, see
 * kernels/ops/matmul_f16.ts; training attention reads the f16 q, k, v its qkv product stores;
 * a KV cache created under f16 holds f16 keys and values; master weights, optimizer state and
 * checkpoints stay f32).
 *
 * @module
 */

/** Compute precision of the matmuls. */
export type Precision = "f32" | "f16";

let current: Precision = "f32";

/** The precision matmuls run in now. */
export function precision(): Precision {
  return current;
}

/**
 * Throws the one-line error for f16 on an adapter without `shader-f16` (`flag` names what
 * asked for it, e.g. "--precision f16").
 */
export function checkF16Support(hasF16: boolean, flag = "--precision f16"): void {
  if (!hasF16 || noF16Simulated()) {
    throw new Error(
      `${flag} needs a WebGPU adapter with the 'shader-f16' feature; this one has none (use --precision f32)`,
    );
  }
}

/** `JOWA_NO_F16=1` simulates an adapter without `shader-f16` (tests of the refusal). */
function noF16Simulated(): boolean {
  try {
    return Deno.env.get("JOWA_NO_F16") === "1";
  } catch {
    return false; // no env permission: nothing simulated
  }
}

/**
 * Set the precision of every later matmul. "f16" needs `hasF16` (the device's `shader-f16`,
 * `runtime().ctx.hasF16`).
 */
export function setPrecision(p: Precision, hasF16: boolean, flag?: string): void {
  if (p !== "f32" && p !== "f16") throw new Error(`unknown precision '${p}' (f32 or f16)`);
  if (p === "f16") checkF16Support(hasF16, flag);
  current = p;
}

/** Parse a `--precision` value (throws a one-line error naming the flag). */
export function parsePrecision(value: string | undefined, flag = "--precision"): Precision {
  const v = value ?? "f32";
  if (v !== "f32" && v !== "f16") {
    throw new Error(`${flag} must be f32 or f16, got '${v}' (bf16 does not exist in WGSL)`);
  }
  return v;
}
