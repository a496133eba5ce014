/**
 * Open a `torch.save(state_dict)` checkpoint (the zip format torch writes since 1.6) and read
 * its tensors lazily, one at a time, straight from the file.
 *
 * Layout of such a file: `<prefix>/data.pkl` (the pickled dict, whose tensors point at
 * storages by key), `<prefix>/data/<key>` (raw storage bytes), `<prefix>/byteorder`, and a few
 * version entries. `<prefix>` is the file stem torch was given ("archive" for in-memory saves).
 *
 * @module
 */

import {
  asTypedArray,
  byteswap,
  DTYPE_BYTES,
  HOST_LITTLE_ENDIAN,
  toFloat32,
  type TorchDtype,
  type TorchTypedArray,
} from "./dtype.ts";
import { TorchCheckpointError } from "./errors.ts";
import { PyDict, pyTypeName, type PyValue, TorchTensor, unpickle } from "./pickle.ts";
import { gatherStrided, isContiguous, numelOf, viewSpan } from "./strided.ts";
import { type ZipEntry, ZipReader } from "./zip.ts";

/** One tensor of an opened checkpoint; its data is read only on request. */
export interface TorchCheckpointTensor {
  /** State-dict key, e.g. `module.encoder.weight` (nested dicts joined with dots). */
  readonly name: string;
  /** Element type. */
  readonly dtype: TorchDtype;
  /** Sizes (`[]` for a 0-d tensor). */
  readonly shape: readonly number[];
  /** Number of elements. */
  readonly size: number;
  /** Bytes of the materialised tensor (`size * bytes per element`). */
  readonly byteLength: number;
  /** Key of the storage it views (tensors sharing a storage share a key). */
  readonly storageKey: string;
  /** Contiguous row-major little-endian bytes (safetensors order). */
  readBytes(): Promise<Uint8Array>;
  /** Contiguous values as the dtype's native typed array (16-bit floats as raw bits). */
  read(): Promise<TorchTypedArray>;
  /** Contiguous values converted to float32 (I64 rounds to nearest). */
  readFloat32(): Promise<Float32Array>;
}

/** Progress after each finished tensor read. */
export interface TorchCheckpointProgress {
  /** The tensor just read. */
  readonly name: string;
  /** Tensor reads finished so far (a tensor read twice counts twice). */
  readonly tensorsDone: number;
  /** Tensors in the checkpoint. */
  readonly tensorsTotal: number;
  /** Tensor bytes materialised so far. */
  readonly bytesDone: number;
  /** Sum of all tensors' `byteLength`. */
  readonly bytesTotal: number;
}

/** Options of {@link openTorchCheckpoint}. */
export interface OpenTorchCheckpointOptions {
  /** Called after every tensor read (not during open, which reads only the directory). */
  onProgress?: (progress: TorchCheckpointProgress) => void;
}

/** An open checkpoint. Holds the file open until {@link TorchCheckpoint.close}. */
export interface TorchCheckpoint extends Disposable {
  /** The file path given to {@link openTorchCheckpoint}. */
  readonly path: string;
  /** Directory name inside the zip (e.g. `JOWA_150M`). */
  readonly prefix: string;
  /** Tensors in the pickle's key order. */
  readonly tensors: readonly TorchCheckpointTensor[];
  /** Tensor by key. */
  get(name: string): TorchCheckpointTensor | undefined;
  /** Bytes read from the file so far (directory, pickle and tensor data). */
  readonly bytesRead: number;
  /** Close the file; reads after this fail. */
  close(): void;
}

// torch's legacy (pre-1.6) format starts with a pickled magic number:
// PROTO 2, LONG1 of 10 bytes = 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC = [
  0x80,
  0x02,
  0x8a,
  0x0a,
  0x6c,
  0xfc,
  0x9c,
  0x46,
  0xf9,
  0x20,
  0x6a,
  0xa8,
  0x50,
  0x19,
];
const MAX_PICKLE_BYTES = 256 * 1024 * 1024;

function startsWith(bytes: Uint8Array, prefix: readonly number[]): boolean {
  return bytes.length >= prefix.length && prefix.every((b, i) => bytes[i] === b);
}

/** Read up to `n` bytes from the start of a file. */
async function readHead(file: Deno.FsFile, n: number): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await file.read(buf.subarray(got));
    if (r === null) break;
    got += r;
  }
  return buf.subarray(0, got);
}

/** Find the single `<prefix>/data.pkl`, explaining what the archive is when there is none. */
function findPrefix(zip: ZipReader, fail: (p: string) => never): string {
  const prefixes: string[] = [];
  for (const name of zip.entries.keys()) {
    const m = /^([^/]+)\/data\.pkl$/.exec(name);
    if (m) prefixes.push(m[1]);
  }
  if (prefixes.length === 1) return prefixes[0];
  if (prefixes.length > 1) fail(`several data.pkl entries (${prefixes.join(", ")})`);
  const names = [...zip.entries.keys()];
  if (names.some((n) => /(^|\/)constants\.pkl$/.test(n) || /(^|\/)code\//.test(n))) {
    fail("TorchScript archive (torch.jit.save), not a torch.save state dict");
  }
  return fail("zip archive without a */data.pkl entry: not a torch.save checkpoint");
}

/** Flatten the pickled dict into key -> tensor, nested dicts joined with dots. */
function collectTensors(top: PyValue, fail: (p: string) => never): Map<string, TorchTensor> {
  if (!(top instanceof PyDict)) {
    fail(`top-level object is a ${pyTypeName(top)}, not a state dict of tensors`);
  }
  const out = new Map<string, TorchTensor>();
  const active = new Set<PyDict>();
  const walk = (dict: PyDict, prefix: string) => {
    if (active.has(dict)) fail(`dict at ${JSON.stringify(prefix)} contains itself`);
    active.add(dict);
    for (const [k, v] of dict.items) {
      if (typeof k !== "string") fail(`state dict key ${String(k)} is not a string`);
      const name = prefix ? `${prefix}.${k}` : (k as string);
      if (v instanceof TorchTensor) {
        if (out.has(name)) fail(`key ${JSON.stringify(name)} appears twice after flattening`);
        out.set(name, v);
      } else if (v instanceof PyDict) {
        walk(v, name);
      } else {
        fail(
          `value at key ${JSON.stringify(name)} is of type ${pyTypeName(v)}, not a tensor ` +
            `(only dicts of tensors are read; save just the state dict)`,
        );
      }
    }
    active.delete(dict);
  };
  walk(top as PyDict, "");
  return out;
}

/**
 * Open a PyTorch checkpoint written by `torch.save` and list its tensors without reading them.
 *
 * The top-level object must be a dict (or OrderedDict) of tensors; nested dicts of tensors
 * are flattened with dotted keys (`{"model": {"w": t}}` -> `model.w`); any other value
 * (numbers, lists, None, optimizer state, pickled modules) is refused. Reading a tensor reads
 * only the bytes of its view, so peak memory is about the largest tensor, not the file.
 *
 * @param path the `.pt` / `.pth` / `.bin` file.
 * @param options progress callback.
 * @throws TorchCheckpointError naming the file and the problem (empty, truncated, legacy
 *   format, compressed entries, refused pickle globals/opcodes, non-tensor values, ...).
 */
export async function openTorchCheckpoint(
  path: string,
  options: OpenTorchCheckpointOptions = {},
): Promise<TorchCheckpoint> {
  const fail = (problem: string): never => {
    throw new TorchCheckpointError(path, problem);
  };
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    return fail(`cannot open: ${(e as Error).message}`);
  }
  let zip: ZipReader | undefined;
  try {
    const head = await readHead(file, LEGACY_MAGIC.length);
    if (head.length === 0) fail("empty file");
    if (startsWith(head, LEGACY_MAGIC)) {
      fail(
        "legacy torch format: re-save with a newer torch (torch.save(torch.load(f), f))",
      );
    }
    if (!startsWith(head, [0x50, 0x4b])) fail("not a torch checkpoint (not a zip archive)");
    zip = await ZipReader.fromFile(file, path);
    const prefix = findPrefix(zip, fail);
    const entry = (name: string): ZipEntry | undefined => zip!.entries.get(`${prefix}/${name}`);

    // Byte order of the storages; torch before 1.10 wrote none (and only ran little-endian).
    let bigEndian = false;
    const order = entry("byteorder");
    if (order) {
      const text = new TextDecoder().decode(await zip.readEntry(order)).trim();
      if (text !== "little" && text !== "big") fail(`unknown byteorder ${JSON.stringify(text)}`);
      bigEndian = text === "big";
    }

    const pkl = entry("data.pkl")!;
    if (pkl.size > MAX_PICKLE_BYTES) fail(`data.pkl is too large (${pkl.size} bytes)`);
    const top = unpickle(await zip.readEntry(pkl), path);
    const found = collectTensors(top, fail);

    // Check every storage entry now, so a bad file fails at open rather than mid-load.
    const storageEntries = new Map<string, ZipEntry>();
    for (const t of found.values()) {
      const s = t.storage;
      if (storageEntries.has(s.key)) continue;
      const e = entry(`data/${s.key}`);
      if (!e) fail(`storage data/${s.key} is missing from the archive`);
      await zip.dataOffset(e!); // rejects compressed or encrypted entries
      if (e!.size < s.numel * DTYPE_BYTES[s.dtype]) {
        fail(
          `storage data/${s.key} holds ${e!.size} bytes, ` +
            `expected ${s.numel * DTYPE_BYTES[s.dtype]}`,
        );
      }
      storageEntries.set(s.key, e!);
    }

    const bytesTotal = [...found.values()].reduce(
      (sum, t) => sum + numelOf(t.shape) * DTYPE_BYTES[t.storage.dtype],
      0,
    );
    let tensorsDone = 0;
    let bytesDone = 0;
    const reader = zip;
    const tensors: TorchCheckpointTensor[] = [];
    for (const [name, t] of found) {
      const dtype = t.storage.dtype;
      const width = DTYPE_BYTES[dtype];
      const size = numelOf(t.shape);
      if (!Number.isSafeInteger(size * width)) fail(`tensor ${name} has an absurd shape`);
      const span = viewSpan(t.storageOffset, t.shape, t.stride);
      if (size > 0 && span.end > t.storage.numel) {
        fail(`tensor ${name} reads past the end of its storage data/${t.storage.key}`);
      }
      const storageEntry = storageEntries.get(t.storage.key)!;
      const contiguous = isContiguous(t.shape, t.stride);

      const readBytes = async (): Promise<Uint8Array> => {
        let bytes: Uint8Array;
        try {
          bytes = await readView();
        } catch (e) {
          if (!(e instanceof RangeError)) throw e;
          return fail(`tensor ${name} (${size * width} bytes) cannot be allocated`);
        }
        if (bigEndian) byteswap(bytes, width);
        tensorsDone++;
        bytesDone += bytes.byteLength;
        options.onProgress?.({
          name,
          tensorsDone,
          tensorsTotal: found.size,
          bytesDone,
          bytesTotal,
        });
        return bytes;
      };
      const readView = async (): Promise<Uint8Array> => {
        let bytes: Uint8Array;
        if (size === 0) {
          bytes = new Uint8Array(0);
        } else if (contiguous) {
          bytes = await reader.readRange(storageEntry, t.storageOffset * width, size * width);
        } else {
          // Read the span the view covers once, then gather (peak: span + tensor).
          const src = await reader.readRange(
            storageEntry,
            span.start * width,
            (span.end - span.start) * width,
          );
          bytes = gatherStrided(src, span.start, t.storageOffset, t.shape, t.stride, width);
        }
        return bytes;
      };
      const read = async (): Promise<TorchTypedArray> => {
        const bytes = await readBytes();
        if (!HOST_LITTLE_ENDIAN) byteswap(bytes, width);
        return asTypedArray(bytes, dtype);
      };
      tensors.push(Object.freeze({
        name,
        dtype,
        shape: Object.freeze([...t.shape]),
        size,
        byteLength: size * width,
        storageKey: t.storage.key,
        readBytes,
        read,
        readFloat32: async () => toFloat32(await read(), dtype),
      }));
    }
    const byName = new Map(tensors.map((t) => [t.name, t]));
    return {
      path,
      prefix,
      tensors,
      get: (name: string) => byName.get(name),
      get bytesRead() {
        return reader.bytesRead;
      },
      close: () => reader.close(),
      [Symbol.dispose]: () => reader.close(),
    };
  } catch (e) {
    if (zip) zip.close();
    else file.close();
    throw e;
  }
}
