/**
 * Random-access zip reader over a `Deno.FsFile`: parses the central directory (ZIP64 included)
 * and reads byte ranges of STORED entries, so a 512 MB checkpoint is never loaded whole.
 *
 * Only what `torch.save` produces is supported: one disk, no encryption, uncompressed entries.
 *
 * @module
 */

import { TorchCheckpointError } from "./errors.ts";

/** One file inside the archive, as the central directory describes it. */
export interface ZipEntry {
  /** Path inside the archive, e.g. `JOWA_150M/data/0`. */
  readonly name: string;
  /** Compression method: 0 = STORED (the only one readable), 8 = deflate, ... */
  readonly method: number;
  /** General-purpose flags (bit 0: encrypted). */
  readonly flags: number;
  /** Stored (compressed) size in bytes. */
  readonly compressedSize: number;
  /** Uncompressed size in bytes. */
  readonly size: number;
  /** CRC-32 of the uncompressed bytes. */
  readonly crc32: number;
  /** Offset of the entry's local header in the file. */
  readonly localHeaderOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;
const LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIZE = 56;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
const ZIP64_EXTRA_ID = 0x0001;
/** Central directories past this are not a checkpoint (torch writes ~100 bytes per tensor). */
const MAX_CENTRAL_DIRECTORY = 256 * 1024 * 1024;

const METHOD_NAMES: Record<number, string> = {
  8: "deflate",
  9: "deflate64",
  12: "bzip2",
  14: "lzma",
  93: "zstd",
  95: "xz",
};

/** Reads a little-endian u64 that must fit a JS number (files are far below 2^53 bytes). */
function u64(view: DataView, at: number, what: string, fail: (p: string) => never): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${v} is out of range`);
  return Number(v);
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (IEEE), as zip stores it. */
export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * A zip archive opened for random access. Reads are serialised internally (one file handle,
 * seek + read), so concurrent callers are safe.
 */
export class ZipReader {
  /** Entries by name, in central-directory order. */
  readonly entries: ReadonlyMap<string, ZipEntry>;
  #file: Deno.FsFile;
  #dataOffsets = new Map<string, number>();
  #queue: Promise<unknown> = Promise.resolve();
  #bytesRead = 0;
  #closed = false;

  private constructor(
    file: Deno.FsFile,
    /** File path, used in error messages. */
    readonly path: string,
    /** File size in bytes. */
    readonly size: number,
    entries: Map<string, ZipEntry>,
  ) {
    this.#file = file;
    this.entries = entries;
  }

  /**
   * Open `path` and parse its central directory (reads only the directory, not the entries).
   * @throws TorchCheckpointError when the file is empty, truncated or not a zip.
   */
  static async open(path: string): Promise<ZipReader> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (e) {
      throw new TorchCheckpointError(path, `cannot open: ${(e as Error).message}`);
    }
    try {
      return await ZipReader.fromFile(file, path);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /**
   * Parse the central directory of an already open file; the reader takes ownership of it
   * (close it with {@link ZipReader.close}).
   * @param file an open, readable, seekable file.
   * @param path name for error messages.
   */
  static async fromFile(file: Deno.FsFile, path: string): Promise<ZipReader> {
    const fail = (problem: string): never => {
      throw new TorchCheckpointError(path, problem);
    };
    const size = (await file.stat()).size;
    if (size === 0) fail("empty file");
    const entries = new Map<string, ZipEntry>();
    const reader = new ZipReader(file, path, size, entries); // filled in below

    // End of central directory: 22 bytes plus a comment of up to 64 KiB at the very end.
    const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT);
    const tailStart = size - tailLen;
    const tail = await reader.readAt(tailStart, tailLen);
    const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    let eocd = -1;
    for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
      if (
        tv.getUint32(i, true) === SIG_EOCD && i + EOCD_SIZE + tv.getUint16(i + 20, true) <= tailLen
      ) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) {
      fail("not a zip archive or truncated (no end-of-central-directory record)");
    }
    const eocdPos = tailStart + eocd;
    if (tv.getUint16(eocd + 4, true) !== 0 || tv.getUint16(eocd + 6, true) !== 0) {
      fail("multi-disk zip archives are not supported");
    }
    let count = tv.getUint16(eocd + 10, true);
    let cdSize = tv.getUint32(eocd + 12, true);
    let cdOffset = tv.getUint32(eocd + 16, true);
    let cdEnd = eocdPos; // the central directory must end before the record(s) describing it

    // ZIP64: a locator right before the EOCD points at the ZIP64 end record, whose 64-bit
    // fields replace the 16/32-bit ones (torch's writer emits this record for every archive).
    if (eocdPos >= LOCATOR_SIZE) {
      const loc = await reader.readAt(eocdPos - LOCATOR_SIZE, LOCATOR_SIZE);
      const lv = new DataView(loc.buffer, loc.byteOffset, loc.byteLength);
      if (lv.getUint32(0, true) === SIG_ZIP64_LOCATOR) {
        const z64Pos = u64(lv, 8, "ZIP64 end record offset", fail);
        if (z64Pos + ZIP64_EOCD_SIZE > eocdPos - LOCATOR_SIZE) {
          fail("corrupt zip: ZIP64 end record offset points outside the file");
        }
        const z = await reader.readAt(z64Pos, ZIP64_EOCD_SIZE);
        const zv = new DataView(z.buffer, z.byteOffset, z.byteLength);
        if (zv.getUint32(0, true) !== SIG_ZIP64_EOCD) fail("corrupt zip: bad ZIP64 end record");
        if (zv.getUint32(16, true) !== 0 || zv.getUint32(20, true) !== 0) {
          fail("multi-disk zip archives are not supported");
        }
        count = u64(zv, 32, "ZIP64 entry count", fail);
        cdSize = u64(zv, 40, "ZIP64 central directory size", fail);
        cdOffset = u64(zv, 48, "ZIP64 central directory offset", fail);
        cdEnd = z64Pos;
      }
    }
    if (cdSize > MAX_CENTRAL_DIRECTORY) fail(`central directory too large (${cdSize} bytes)`);
    if (cdOffset + cdSize > cdEnd) {
      fail("corrupt or truncated zip: central directory lies outside the file");
    }

    const cd = await reader.readAt(cdOffset, cdSize);
    const cv = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
    const decoder = new TextDecoder("utf-8", { fatal: false });
    let p = 0;
    for (let n = 0; n < count; n++) {
      if (p + CENTRAL_SIZE > cdSize || cv.getUint32(p, true) !== SIG_CENTRAL) {
        fail(`corrupt zip: central directory entry ${n} is malformed`);
      }
      const flags = cv.getUint16(p + 8, true);
      const method = cv.getUint16(p + 10, true);
      const crc = cv.getUint32(p + 16, true);
      let compressedSize = cv.getUint32(p + 20, true);
      let usize = cv.getUint32(p + 24, true);
      const nameLen = cv.getUint16(p + 28, true);
      const extraLen = cv.getUint16(p + 30, true);
      const commentLen = cv.getUint16(p + 32, true);
      let localHeaderOffset = cv.getUint32(p + 42, true);
      const next = p + CENTRAL_SIZE + nameLen + extraLen + commentLen;
      if (next > cdSize) fail(`corrupt zip: central directory entry ${n} is truncated`);
      const name = decoder.decode(cd.subarray(p + CENTRAL_SIZE, p + CENTRAL_SIZE + nameLen));

      // ZIP64 extended information: 64-bit values for exactly those fields set to 0xFFFFFFFF,
      // in the order size, compressed size, local header offset.
      let e = p + CENTRAL_SIZE + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = cv.getUint16(e, true);
        const len = cv.getUint16(e + 2, true);
        if (e + 4 + len > extraEnd) fail(`corrupt zip: bad extra field in entry ${name}`);
        if (id === ZIP64_EXTRA_ID) {
          let q = e + 4;
          const take = (what: string): number => {
            if (q + 8 > e + 4 + len) fail(`corrupt zip: short ZIP64 extra field in entry ${name}`);
            const v = u64(cv, q, what, fail);
            q += 8;
            return v;
          };
          if (usize === 0xffffffff) usize = take("entry size");
          if (compressedSize === 0xffffffff) compressedSize = take("entry compressed size");
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = take("entry offset");
        }
        e += 4 + len;
      }
      if (entries.has(name)) fail(`corrupt zip: duplicate entry ${name}`);
      if (localHeaderOffset + LOCAL_SIZE + compressedSize > cdOffset) {
        fail(`corrupt or truncated zip: entry ${name} lies outside the file`);
      }
      entries.set(name, {
        name,
        method,
        flags,
        compressedSize,
        size: usize,
        crc32: crc,
        localHeaderOffset,
      });
      p = next;
    }
    return reader;
  }

  /** Total bytes read from the file so far (directory and entries); lets tests prove laziness. */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /**
   * Read `length` bytes at absolute file position `pos`.
   * @throws TorchCheckpointError if the file ends first.
   */
  readAt(pos: number, length: number): Promise<Uint8Array> {
    const run = async () => {
      if (this.#closed) throw new TorchCheckpointError(this.path, "file is closed");
      const out = new Uint8Array(length);
      await this.#file.seek(pos, Deno.SeekMode.Start);
      let got = 0;
      while (got < length) {
        const n = await this.#file.read(out.subarray(got));
        if (n === null) {
          throw new TorchCheckpointError(
            this.path,
            `truncated file: wanted ${length} bytes at offset ${pos}, file ends after ${got}`,
          );
        }
        got += n;
      }
      this.#bytesRead += length;
      return out;
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => {});
    return result;
  }

  /**
   * Absolute file offset of an entry's first data byte (parses and checks its local header,
   * whose extra field torch pads to align data; the result is cached).
   * @throws TorchCheckpointError for compressed or encrypted entries and bad headers.
   */
  async dataOffset(entry: ZipEntry): Promise<number> {
    const cached = this.#dataOffsets.get(entry.name);
    if (cached !== undefined) return cached;
    if (entry.flags & 1) {
      throw new TorchCheckpointError(this.path, `zip entry ${entry.name} is encrypted`);
    }
    if (entry.method !== 0) {
      const how = METHOD_NAMES[entry.method] ?? `method ${entry.method}`;
      throw new TorchCheckpointError(
        this.path,
        `zip entry ${entry.name} is compressed (${how}); torch checkpoints store entries ` +
          `uncompressed, re-save with torch.save`,
      );
    }
    const nameBytes = new TextEncoder().encode(entry.name);
    const head = await this.readAt(entry.localHeaderOffset, LOCAL_SIZE + nameBytes.length);
    const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
    if (hv.getUint32(0, true) !== SIG_LOCAL) {
      throw new TorchCheckpointError(this.path, `corrupt zip: bad local header for ${entry.name}`);
    }
    const nameLen = hv.getUint16(26, true);
    const extraLen = hv.getUint16(28, true);
    const localName = head.subarray(LOCAL_SIZE);
    if (nameLen !== nameBytes.length || localName.some((b, i) => b !== nameBytes[i])) {
      throw new TorchCheckpointError(
        this.path,
        `corrupt zip: local header name differs from central directory for ${entry.name}`,
      );
    }
    const offset = entry.localHeaderOffset + LOCAL_SIZE + nameLen + extraLen;
    if (offset + entry.compressedSize > this.size) {
      throw new TorchCheckpointError(
        this.path,
        `truncated file: entry ${entry.name} ends past the end of the file`,
      );
    }
    this.#dataOffsets.set(entry.name, offset);
    return offset;
  }

  /**
   * Read `length` bytes of a STORED entry starting at `start` within it.
   * @throws TorchCheckpointError if the range leaves the entry.
   */
  async readRange(entry: ZipEntry, start: number, length: number): Promise<Uint8Array> {
    const base = await this.dataOffset(entry);
    if (start < 0 || length < 0 || start + length > entry.size) {
      throw new TorchCheckpointError(
        this.path,
        `read of ${length} bytes at ${start} is outside entry ${entry.name} (${entry.size} bytes)`,
      );
    }
    return await this.readAt(base + start, length);
  }

  /**
   * Read a whole STORED entry and check its CRC-32 (meant for small entries such as the pickle).
   * @throws TorchCheckpointError on a CRC mismatch.
   */
  async readEntry(entry: ZipEntry): Promise<Uint8Array> {
    const bytes = await this.readRange(entry, 0, entry.size);
    if (crc32(bytes) !== entry.crc32) {
      throw new TorchCheckpointError(this.path, `corrupt zip: CRC mismatch in ${entry.name}`);
    }
    return bytes;
  }

  /** Close the file; later reads fail. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
  }
}
