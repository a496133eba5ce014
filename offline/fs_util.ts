/**
 * Small synchronous file-system helpers shared by the store writer and readers.
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";

/** A user-facing error: CLIs print only its message (no stack trace). */
export class DataError extends Error {
  /** Create the error; `message` should name the offending file. */
  constructor(message: string) {
    super(message);
    this.name = "DataError";
  }
}

/** fsync a directory so a rename inside it survives a crash (best effort: not all FS allow it). */
export function fsyncDir(dir: string): void {
  let fd = -1;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
  } catch {
    // Some platforms refuse fsync on directories; the rename itself is still atomic.
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}

/** Write all of `data` at the file's current position (loops over short writes). */
export function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.byteLength) {
    off += fs.writeSync(fd, data, off, data.byteLength - off);
  }
}

/** Read exactly `length` bytes at `position` into `buf[offset..]`; throws on a short file. */
export function preadExact(
  fd: number,
  buf: Uint8Array,
  offset: number,
  length: number,
  position: number,
  file: string,
): void {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, offset + done, length - done, position + done);
    if (n === 0) throw new DataError(`${file}: unexpected end of file (store truncated?)`);
    done += n;
  }
}

/**
 * Atomically replace `file` with `data`: write a temporary sibling, fsync, rename, fsync the
 * directory. Readers see either the old or the new content, never a partial one.
 */
export function atomicWriteFile(file: string, data: Uint8Array | string): void {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, "w");
  try {
    writeAll(fd, bytes);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

/** True when `p` exists (file or directory). */
export function exists(p: string): boolean {
  try {
    fs.statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Remove a file if present. */
export function removeIfExists(p: string): void {
  try {
    fs.rmSync(p, { force: true, recursive: true });
  } catch {
    // already gone
  }
}

/** Byte view of any typed array (no copy). */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
