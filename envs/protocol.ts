/**
 * Framing for the ALE bridge: a 4-byte little-endian length, then one msgpack value.
 * @module
 */
// A full npm: specifier, not the import map: mod.ts must stay importable from a URL.
// deno-lint-ignore no-import-prefix
import { Packr } from "npm:msgpackr@2.1.3";

/** Protocol version; the Python side (envs/ale_bridge.py PROTOCOL) must match. */
export const PROTOCOL_VERSION = 1;

// Plain maps, no records extension: the Python msgpack package must read every frame.
const packr = new Packr({ useRecords: false, mapsAsObjects: true });

/** Encodes one message as a length-prefixed frame. */
export function encodeFrame(msg: unknown): Uint8Array {
  const body: Uint8Array = packr.pack(msg);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, true);
  out.set(body, 4);
  return out;
}

/** Decodes one frame body (without its length prefix). */
export function decodeBody(body: Uint8Array): unknown {
  return packr.unpack(body);
}

/** Reads length-prefixed frames from a byte stream, pulling only when asked. */
export class FrameReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buf = new Uint8Array(0);

  /** Wraps a stream reader; the caller keeps ownership for cancel(). */
  constructor(reader: ReadableStreamDefaultReader<Uint8Array>) {
    this.#reader = reader;
  }

  async #fill(n: number): Promise<boolean> {
    if (this.#buf.length >= n) return true;
    // Gather chunks and merge once: observation frames span several pipe reads.
    const chunks: Uint8Array[] = [this.#buf];
    let total = this.#buf.length;
    let ok = true;
    while (total < n) {
      const { value, done } = await this.#reader.read();
      if (done) {
        ok = false;
        break;
      }
      chunks.push(value);
      total += value.length;
    }
    const merged = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      merged.set(c, off);
      off += c.length;
    }
    this.#buf = merged;
    return ok;
  }

  /** Next decoded message, or `null` when the stream ended cleanly between frames. */
  async next(): Promise<unknown | null> {
    if (!(await this.#fill(4))) {
      if (this.#buf.length === 0) return null;
      throw new Error("stream ended inside a frame header");
    }
    const len = new DataView(this.#buf.buffer, this.#buf.byteOffset, 4).getUint32(0, true);
    if (!(await this.#fill(4 + len))) throw new Error("stream ended inside a frame");
    const body = this.#buf.subarray(4, 4 + len);
    this.#buf = this.#buf.subarray(4 + len);
    return decodeBody(body);
  }
}
