/**
 * safetensors writer: in-memory encoding and atomic file writes.
 *
 * Layout matches the Python library byte for byte: tensors sorted by dtype alignment
 * (descending, Rust `Dtype` order) then by name (UTF-8 byte order), packed without gaps, and
 * the JSON header padded with spaces to a multiple of 8 bytes. `__metadata__` keys are sorted
 * by name too (Python's order there is random), and the entry is present whenever a metadata
 * object is given, even an empty one, as in Python.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import {
  compareUtf8,
  DTYPE_RANK,
  DTYPE_SIZE,
  isSafetensorsDtype,
  MAX_HEADER_SIZE,
  METADATA_KEY,
  quote,
  SafetensorsDtype,
  SafetensorsError,
  SUPPORTED_DTYPES,
} from "./format.ts";

/**
 * Tensor bytes: a typed array matching the dtype (Float32Array for F32; Uint16Array of bit
 * patterns or Float16Array for F16; Uint16Array for BF16 and U16; Int32Array; BigInt64Array
 * for I64) or a Uint8Array of raw little-endian bytes for any dtype.
 */
export type TensorData = ArrayBufferView;

/** A tensor to write. */
export interface TensorInput {
  /** Element type. */
  dtype: SafetensorsDtype;
  /** Dimensions; `[]` is a scalar. */
  shape: readonly number[];
  /**
   * The elements, or (file writes only) a function producing them when the tensor's turn
   * comes, so a caller can read parameters back one at a time instead of all up front.
   */
  data: TensorData | (() => TensorData | Promise<TensorData>);
}

/** Tensors to write, by name. */
export type TensorInputs = Record<string, TensorInput> | Map<string, TensorInput>;

/** Optional string->string metadata stored under `__metadata__`. */
export type Metadata = Record<string, string> | Map<string, string>;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

interface PlannedTensor {
  name: string;
  dtype: SafetensorsDtype;
  byteLength: number;
  data: TensorInput["data"];
}

interface Plan {
  /** 8-byte length prefix followed by the padded JSON header. */
  prefix: Uint8Array;
  tensors: PlannedTensor[];
  /** Total file size in bytes. */
  fileSize: number;
}

function entriesOf<T>(m: Record<string, T> | Map<string, T>, what: string): [string, T][] {
  if (m instanceof Map) return [...m.entries()];
  if (m === null || typeof m !== "object") throw new SafetensorsError(`${what} must be an object`);
  return Object.entries(m);
}

function checkName(name: unknown, what: string): string {
  if (typeof name !== "string" || !name.isWellFormed()) {
    throw new SafetensorsError(`${what} ${String(name)} must be a well-formed string`);
  }
  return name;
}

function allowedArray(dtype: SafetensorsDtype, data: ArrayBufferView): boolean {
  if (data instanceof Uint8Array) return true; // raw bytes
  const F16 = (globalThis as { Float16Array?: unknown }).Float16Array as
    | (new () => ArrayBufferView)
    | undefined;
  switch (dtype) {
    case "F32":
      return data instanceof Float32Array;
    case "F16":
      return data instanceof Uint16Array || (F16 !== undefined && data instanceof F16);
    case "BF16":
    case "U16":
      return data instanceof Uint16Array;
    case "I32":
      return data instanceof Int32Array;
    case "I64":
      return data instanceof BigInt64Array;
    case "U8":
      return false;
  }
}

/** Check produced data against its declared dtype/size and return little-endian bytes. */
function tensorBytes(t: PlannedTensor, data: unknown): Uint8Array {
  const where = `tensor ${quote(t.name)}`;
  if (!ArrayBuffer.isView(data) || data instanceof DataView) {
    throw new SafetensorsError(`${where}: data must be a typed array`);
  }
  if (!allowedArray(t.dtype, data)) {
    throw new SafetensorsError(
      `${where}: ${data.constructor.name} does not hold ${t.dtype} elements (pass a matching ` +
        `typed array or a Uint8Array of raw bytes)`,
    );
  }
  if (data.byteLength !== t.byteLength) {
    throw new SafetensorsError(
      `${where}: data has ${data.byteLength} bytes but dtype and shape need ${t.byteLength}`,
    );
  }
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const width = DTYPE_SIZE[t.dtype];
  if (LITTLE_ENDIAN || data instanceof Uint8Array || width === 1) return bytes;
  const swapped = bytes.slice();
  for (let i = 0; i < swapped.length; i += width) swapped.subarray(i, i + width).reverse();
  return swapped;
}

function plan(tensors: TensorInputs, metadata: Metadata | undefined): Plan {
  const planned: (PlannedTensor & { shape: readonly number[] })[] = [];
  for (const [rawName, t] of entriesOf(tensors, "tensors")) {
    const name = checkName(rawName, "tensor name");
    const where = `tensor ${quote(name)}`;
    if (name === METADATA_KEY) throw new SafetensorsError(`${where}: name is reserved`);
    if (t === null || typeof t !== "object") throw new SafetensorsError(`${where}: not an object`);
    if (!isSafetensorsDtype(t.dtype)) {
      throw new SafetensorsError(
        `${where}: unsupported dtype ${quote(String(t.dtype))} (supported: ${
          SUPPORTED_DTYPES.join(", ")
        })`,
      );
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`${where}: shape must be an array of non-negative integers`);
    }
    const byteLength = t.shape.reduce((a, d) => a * d, DTYPE_SIZE[t.dtype]);
    if (!Number.isSafeInteger(byteLength)) throw new SafetensorsError(`${where}: shape too large`);
    const p = { name, dtype: t.dtype, shape: [...t.shape], byteLength, data: t.data };
    if (typeof t.data !== "function") tensorBytes(p, t.data); // fail before touching the disk
    planned.push(p);
  }
  planned.sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || compareUtf8(a.name, b.name));

  const parts: string[] = [];
  if (metadata !== undefined) {
    const pairs = entriesOf(metadata, "metadata").map(([k, v]) => {
      checkName(k, "metadata key");
      if (typeof v !== "string" || !v.isWellFormed()) {
        throw new SafetensorsError(`metadata ${quote(k)}: value must be a well-formed string`);
      }
      return [k, v] as const;
    }).sort((a, b) => compareUtf8(a[0], b[0]));
    const body = pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",");
    parts.push(`"${METADATA_KEY}":{${body}}`);
  }
  let offset = 0;
  for (const t of planned) {
    const end = offset + t.byteLength;
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],` +
        `"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const headerSize = Math.ceil(json.length / 8) * 8; // Python pads with spaces to 8 bytes
  if (headerSize > MAX_HEADER_SIZE) {
    throw new SafetensorsError(`header would be ${headerSize} bytes, over ${MAX_HEADER_SIZE}`);
  }
  const prefix = new Uint8Array(8 + headerSize).fill(0x20, 8 + json.length);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerSize), true);
  prefix.set(json, 8);
  if (!Number.isSafeInteger(prefix.length + offset)) {
    throw new SafetensorsError("total size too large");
  }
  return { prefix, tensors: planned, fileSize: prefix.length + offset };
}

/**
 * Encode tensors (and optional metadata) into safetensors bytes in memory.
 * @throws {SafetensorsError} for invalid names, dtypes, shapes, data sizes or metadata, or
 * when a tensor's data is given as a function (only {@link writeSafetensors} accepts those).
 */
export function encodeSafetensors(tensors: TensorInputs, metadata?: Metadata): Uint8Array {
  const p = plan(tensors, metadata);
  const out = new Uint8Array(p.fileSize);
  out.set(p.prefix, 0);
  let at = p.prefix.length;
  for (const t of p.tensors) {
    if (typeof t.data === "function") {
      throw new SafetensorsError(
        `tensor ${quote(t.name)}: lazy data is only supported by writeSafetensors`,
      );
    }
    out.set(tensorBytes(t, t.data), at);
    at += t.byteLength;
  }
  return out;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
}

/**
 * Write tensors to `path` atomically: the file is written to a temporary sibling, synced and
 * renamed over `path`, so readers see either the old file or the complete new one. On any
 * failure the temporary file is removed and an existing `path` is left untouched.
 * Tensor data may be functions, called one at a time in file order.
 * @throws {SafetensorsError} for invalid input (before anything is written) and for I/O
 * failures (with `cause`).
 */
export async function writeSafetensors(
  path: string,
  tensors: TensorInputs,
  metadata?: Metadata,
): Promise<void> {
  const p = plan(tensors, metadata);
  const dir = dirname(path);
  const rand = crypto.getRandomValues(new Uint32Array(2)).join("");
  const tmp = join(dir, `.${basename(path)}.${Deno.pid}.${rand}.tmp`);
  let file: Deno.FsFile | undefined;
  try {
    file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
    await writeAll(file, p.prefix);
    for (const t of p.tensors) {
      const data = typeof t.data === "function" ? await t.data() : t.data;
      await writeAll(file, tensorBytes(t, data));
    }
    await file.sync();
    file.close();
    file = undefined;
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      file?.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError(`cannot write ${path}: ${(e as Error).message}`, { cause: e });
  }
  // Persist the rename itself; not every platform lets a directory be opened and synced.
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch { /* best effort */ }
}
