/**
 * Streaming reader of a gzip-compressed `.npy` file (DQN-Replay's checkpoint format): the
 * header is parsed and validated up front, then the data is pulled in exact-size pieces so
 * a 7 GB observation array never sits in memory whole.
 * @module
 */
import * as fs from "node:fs";
import * as zlib from "node:zlib";
import { DataError } from "./fs_util.ts";
import { type NpyHeader, parseNpyHeader } from "./npy.ts";

/** Sequential reader of one `.npy.gz` file. */
export class NpyGzReader {
  /** Path of the file (named in every error). */
  readonly file: string;
  /** The validated header. */
  readonly header: NpyHeader;
  #iter: AsyncIterator<Uint8Array>;
  #stream: fs.ReadStream;
  #buf: Uint8Array = new Uint8Array(0);
  #bufPos = 0;
  #dataRead = 0;

  private constructor(
    file: string,
    header: NpyHeader,
    iter: AsyncIterator<Uint8Array>,
    stream: fs.ReadStream,
    rest: Uint8Array,
  ) {
    this.file = file;
    this.header = header;
    this.#iter = iter;
    this.#stream = stream;
    this.#buf = rest;
  }

  /**
   * Open `file` and parse its header.
   * @throws DataError naming the file when it is missing, not gzip, or not an npy stream.
   */
  static async open(file: string): Promise<NpyGzReader> {
    if (!fs.existsSync(file)) throw new DataError(`${file}: missing file`);
    const stream = fs.createReadStream(file, { highWaterMark: 256 << 10 });
    const gunzip = zlib.createGunzip({ chunkSize: 1 << 20 });
    const iter = stream.pipe(gunzip)[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>;
    // Errors on the raw file stream do not propagate through pipe(): forward them.
    stream.on("error", (e) => gunzip.destroy(e));
    let head: Uint8Array = new Uint8Array(0);
    let header: NpyHeader | null = null;
    while (header === null) {
      const r = await next(iter, file);
      if (r === null) {
        stream.destroy();
        throw new DataError(`${file}: truncated before the end of the .npy header`);
      }
      head = concat(head, r);
      try {
        header = parseNpyHeader(head, file);
      } catch (e) {
        stream.destroy();
        throw e;
      }
    }
    return new NpyGzReader(file, header, iter, stream, head.subarray(header.headerBytes));
  }

  /** Data bytes not yet read. */
  get remaining(): number {
    return this.header.dataBytes - this.#dataRead;
  }

  /**
   * Fill `dst` with the next `dst.byteLength` data bytes.
   * @throws DataError when the stream ends early (truncated file) or is corrupt.
   */
  async readInto(dst: Uint8Array): Promise<void> {
    if (dst.byteLength > this.remaining) {
      throw new RangeError(`${this.file}: read past the array's ${this.header.dataBytes} bytes`);
    }
    let o = 0;
    while (o < dst.byteLength) {
      if (this.#bufPos >= this.#buf.byteLength) {
        const r = await next(this.#iter, this.file);
        if (r === null) {
          throw new DataError(
            `${this.file}: truncated: data ends after ${
              this.#dataRead + o
            } of ${this.header.dataBytes} bytes`,
          );
        }
        this.#buf = r;
        this.#bufPos = 0;
      }
      const n = Math.min(dst.byteLength - o, this.#buf.byteLength - this.#bufPos);
      dst.set(this.#buf.subarray(this.#bufPos, this.#bufPos + n), o);
      this.#bufPos += n;
      o += n;
    }
    this.#dataRead += dst.byteLength;
  }

  /** Read the whole (remaining) array; for the small per-step files. */
  async readAll(): Promise<Uint8Array> {
    const out = new Uint8Array(this.remaining);
    await this.readInto(out);
    await this.finish();
    return out;
  }

  /**
   * Check the stream ends exactly after the array (and that gzip's CRC is valid), then close.
   * @throws DataError on trailing bytes or a corrupt/truncated gzip trailer.
   */
  async finish(): Promise<void> {
    if (this.remaining !== 0) {
      this.close();
      throw new Error(`${this.file}: finish() before reading all data`);
    }
    let extra = this.#buf.byteLength - this.#bufPos;
    for (;;) {
      const r = await next(this.#iter, this.file);
      if (r === null) break;
      extra += r.byteLength;
    }
    this.close();
    if (extra > 0) throw new DataError(`${this.file}: ${extra} bytes after the array's data`);
  }

  /** Stop reading and release the file. */
  close(): void {
    this.#stream.destroy();
  }
}

async function next(iter: AsyncIterator<Uint8Array>, file: string): Promise<Uint8Array | null> {
  try {
    const r = await iter.next();
    return r.done ? null : r.value;
  } catch (e) {
    const msg = (e as Error).message;
    if ((e as { code?: string }).code === "ENOENT") throw new DataError(`${file}: missing file`);
    throw new DataError(`${file}: corrupt or truncated gzip (${msg})`);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

/**
 * Uncompressed size recorded in a gzip file's trailer (ISIZE, modulo 2^32). A cheap check for
 * truncation before decompressing gigabytes.
 */
export function gzipTrailerSize(file: string): number {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    if (size < 18) throw new DataError(`${file}: too short to be gzip (${size} bytes)`);
    const b = new Uint8Array(4);
    fs.readSync(fd, b, 0, 4, size - 4);
    return new DataView(b.buffer).getUint32(0, true);
  } finally {
    fs.closeSync(fd);
  }
}
