/**
 * Shared definitions of the safetensors format: supported dtypes, limits and the error type.
 *
 * Format: 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON header, then the data
 * region. See https://github.com/huggingface/safetensors for the reference implementation.
 *
 * @module
 */

/** Element types this toolkit reads and writes (a strict subset of safetensors' dtypes). */
export type SafetensorsDtype = "F32" | "F16" | "BF16" | "I32" | "I64" | "U8" | "U16";

/** Bytes per element for each supported dtype. */
export const DTYPE_SIZE: Readonly<Record<SafetensorsDtype, number>> = Object.freeze({
  F32: 4,
  F16: 2,
  BF16: 2,
  I32: 4,
  I64: 8,
  U8: 1,
  U16: 2,
});

/** All supported dtype names, in a stable order (for error messages). */
export const SUPPORTED_DTYPES: readonly SafetensorsDtype[] = Object.freeze(
  Object.keys(DTYPE_SIZE) as SafetensorsDtype[],
);

/**
 * Position of each dtype in the Rust `safetensors::Dtype` enum order (only relative order
 * matters). The Python writer sorts tensors by this rank, descending, then by name; we do the
 * same so our files are byte-identical to Python's for the same input.
 */
export const DTYPE_RANK: Readonly<Record<SafetensorsDtype, number>> = Object.freeze({
  U8: 0,
  U16: 1,
  F16: 2,
  BF16: 3,
  I32: 4,
  F32: 5,
  I64: 6,
});

/** Largest header accepted, in bytes; the same cap as the Python library (100 MB). */
export const MAX_HEADER_SIZE = 100_000_000;

/** Key reserved for the string->string metadata map in the header. */
export const METADATA_KEY = "__metadata__";

/** True when `s` is one of the supported dtype names. */
export function isSafetensorsDtype(s: unknown): s is SafetensorsDtype {
  return typeof s === "string" && Object.hasOwn(DTYPE_SIZE, s);
}

/**
 * Every problem with a safetensors file or with tensors handed to the writer is reported as
 * this error type; I/O failures are wrapped with the original error as `cause`.
 */
export class SafetensorsError extends Error {
  /**
   * Create an error.
   * @param message what is wrong, naming the tensor when one is involved.
   * @param options standard error options (`cause`).
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SafetensorsError";
  }
}

/** Quote a tensor name or key for an error message (JSON escaping keeps odd names readable). */
export function quote(name: string): string {
  const q = JSON.stringify(name);
  return q.length > 200 ? q.slice(0, 197) + '..."' : q;
}

/** Compare two strings by their UTF-8 bytes (Rust `String` order), not UTF-16 code units. */
export function compareUtf8(a: string, b: string): number {
  // Code-point order equals UTF-8 byte order; UTF-16 unit order differs only for astral chars.
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  while (true) {
    const ca = ia.next();
    const cb = ib.next();
    if (ca.done || cb.done) return ca.done ? (cb.done ? 0 : -1) : 1;
    const d = ca.value.codePointAt(0)! - cb.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}
