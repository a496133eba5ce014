/**
 * Strict safetensors reader over plain bytes. Tensor data is exposed as zero-copy views into
 * the file buffer; conversions copy.
 *
 * @module
 */

import { bf16ArrayToF32, f16ArrayToF32, i64ToF32 } from "./dtype_convert.ts";
import { DTYPE_SIZE, MAX_HEADER_SIZE, SafetensorsDtype, SafetensorsError } from "./format.ts";
import { parseHeader, validateLayout } from "./_header.ts";

/** Native typed array for each dtype (16-bit floats stay raw bit patterns). */
export type DtypeArray =
  | Float32Array
  | Uint16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** One tensor of a decoded file. */
export class SafetensorsTensor {
  /**
   * Wrap one tensor's bytes (normally created by {@link decodeSafetensors}).
   * @param name tensor name.
   * @param dtype element type.
   * @param shape dimensions (frozen).
   * @param data raw little-endian bytes: a view into the file buffer, not a copy.
   */
  constructor(
    readonly name: string,
    readonly dtype: SafetensorsDtype,
    readonly shape: readonly number[],
    readonly data: Uint8Array,
  ) {}

  /** Number of elements (product of the shape; 1 for a scalar). */
  get size(): number {
    return this.data.byteLength / DTYPE_SIZE[this.dtype];
  }

  /**
   * A fresh, aligned native typed array with the tensor's elements: Float32Array (F32),
   * Uint16Array of bit patterns (F16, BF16, U16), Int32Array, BigInt64Array or Uint8Array.
   */
  toTypedArray(): DtypeArray {
    const bytes = this.data.slice(); // copy: aligned and independent of the file buffer
    const width = DTYPE_SIZE[this.dtype];
    if (!LITTLE_ENDIAN && width > 1) {
      for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
    }
    switch (this.dtype) {
      case "F32":
        return new Float32Array(bytes.buffer);
      case "F16":
      case "BF16":
      case "U16":
        return new Uint16Array(bytes.buffer);
      case "I32":
        return new Int32Array(bytes.buffer);
      case "I64":
        return new BigInt64Array(bytes.buffer);
      case "U8":
        return bytes;
    }
  }

  /**
   * Values as a new Float32Array. F16/BF16 widen exactly; integers convert to the nearest
   * float32 (I64 beyond 2^53 loses precision first through `Number`).
   */
  toFloat32(): Float32Array {
    const a = this.toTypedArray();
    switch (this.dtype) {
      case "F32":
        return a as Float32Array;
      case "F16":
        return f16ArrayToF32(a as Uint16Array);
      case "BF16":
        return bf16ArrayToF32(a as Uint16Array);
      case "I64":
        return Float32Array.from(a as BigInt64Array, i64ToF32);
      default:
        return Float32Array.from(a as Int32Array | Uint16Array | Uint8Array);
    }
  }
}

/** A decoded safetensors file. */
export interface SafetensorsFile {
  /** The `__metadata__` string map; empty when the file has none. */
  metadata: Record<string, string>;
  /** Whether the header contained a `__metadata__` entry at all. */
  hasMetadata: boolean;
  /** Tensors by name, in data-offset order. */
  tensors: Map<string, SafetensorsTensor>;
  /** Length of the JSON header in bytes (without the 8-byte length prefix). */
  headerSize: number;
}

/**
 * Decode and fully validate a safetensors file held in memory. Tensor `data` are views into
 * `bytes`, so keep `bytes` unmodified while using them.
 * @throws {SafetensorsError} for any malformed, truncated or unsupported content.
 */
export function decodeSafetensors(bytes: Uint8Array): SafetensorsFile {
  if (bytes.byteLength < 8) {
    throw new SafetensorsError(
      `file too small: ${bytes.byteLength} bytes, need at least the 8-byte header length`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_SIZE)) {
    throw new SafetensorsError(`header length ${n} exceeds the ${MAX_HEADER_SIZE}-byte limit`);
  }
  const headerSize = Number(n);
  if (8 + headerSize > bytes.byteLength) {
    throw new SafetensorsError(
      `header length ${headerSize} exceeds the file size (${bytes.byteLength} bytes): truncated?`,
    );
  }
  let text: string;
  try {
    // ignoreBOM keeps a BOM in the text, so it is rejected like any other non-'{' start.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
      .decode(bytes.subarray(8, 8 + headerSize));
  } catch (e) {
    throw new SafetensorsError("header is not valid UTF-8", { cause: e });
  }
  const header = parseHeader(text);
  const dataStart = 8 + headerSize;
  validateLayout(header.entries, bytes.byteLength - dataStart);
  const sorted = [...header.entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const e of sorted) {
    const data = bytes.subarray(dataStart + e.begin, dataStart + e.end);
    tensors.set(e.name, new SafetensorsTensor(e.name, e.dtype, Object.freeze(e.shape), data));
  }
  return {
    metadata: header.metadata ?? {},
    hasMetadata: header.metadata !== undefined,
    tensors,
    headerSize,
  };
}

/**
 * Read and validate a safetensors file from disk, or decode bytes already in memory.
 * Reading a path reads the whole (regular) file once; nothing is allocated from header values.
 * @throws {SafetensorsError} for I/O failures (with `cause`) and invalid content.
 */
export async function readSafetensors(source: string | URL | Uint8Array): Promise<SafetensorsFile> {
  if (source instanceof Uint8Array) return decodeSafetensors(source);
  let bytes: Uint8Array;
  try {
    const info = await Deno.stat(source);
    if (!info.isFile) throw new Error("not a regular file");
    bytes = await Deno.readFile(source);
  } catch (e) {
    throw new SafetensorsError(`cannot read ${String(source)}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  try {
    return decodeSafetensors(bytes);
  } catch (e) {
    if (e instanceof SafetensorsError) {
      throw new SafetensorsError(`${String(source)}: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

/** A shape as text, e.g. `[2, 3]`, for messages. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
