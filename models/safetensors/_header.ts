/**
 * Strict parser and validator for the JSON header of a safetensors file.
 *
 * The header is parsed by a small schema-driven reader rather than `JSON.parse` so that
 * duplicate keys, unknown fields, non-integer numbers and deep nesting are rejected with a
 * precise message instead of being silently accepted (the root object can only nest three
 * levels deep, so malicious input cannot exhaust the stack).
 *
 * @module
 */

import {
  DTYPE_SIZE,
  isSafetensorsDtype,
  METADATA_KEY,
  quote,
  SafetensorsDtype,
  SafetensorsError,
  SUPPORTED_DTYPES,
} from "./format.ts";

/** One tensor entry of a parsed header; offsets are relative to the data region. */
export interface HeaderEntry {
  /** Tensor name (the JSON key). */
  name: string;
  /** Element type. */
  dtype: SafetensorsDtype;
  /** Dimensions, each a non-negative safe integer. */
  shape: number[];
  /** Start offset (inclusive) in the data region. */
  begin: number;
  /** End offset (exclusive) in the data region. */
  end: number;
}

/** A parsed, validated header. */
export interface ParsedHeader {
  /** `__metadata__` map, or undefined when the header has none. */
  metadata: Record<string, string> | undefined;
  /** Tensor entries in header order. */
  entries: HeaderEntry[];
}

// JSON integer without sign, fraction or exponent; sticky so it matches at `pos` only.
const UINT = /0|[1-9][0-9]*/y;

const ENTRY_FIELDS = ["dtype", "shape", "data_offsets"] as const;

class HeaderReader {
  pos = 0;
  constructor(readonly src: string) {}

  fail(problem: string): never {
    throw new SafetensorsError(`invalid header JSON: ${problem} at character ${this.pos}`);
  }

  skipWs(): void {
    const s = this.src;
    while (this.pos < s.length) {
      const c = s.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      this.pos++;
    }
  }

  expect(ch: string, what: string): void {
    this.skipWs();
    if (this.src[this.pos] !== ch) this.fail(`expected ${what}`);
    this.pos++;
  }

  /** Parse a JSON string token, validating escapes, then decode it with JSON.parse. */
  string(what: string): string {
    this.skipWs();
    const s = this.src;
    if (s[this.pos] !== '"') this.fail(`expected ${what} (a string)`);
    const start = this.pos;
    let i = start + 1;
    let escaped = false;
    for (;; i++) {
      if (i >= s.length) {
        this.pos = i;
        this.fail("unterminated string");
      }
      const c = s.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) {
        this.pos = i;
        this.fail("raw control character in string");
      }
      if (c === 0x5c) {
        escaped = true;
        const e = s[i + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(s.slice(i + 2, i + 6))) {
            this.pos = i;
            this.fail("bad \\u escape");
          }
          i += 5;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
          i += 1;
        } else {
          this.pos = i;
          this.fail("bad escape");
        }
      }
    }
    this.pos = i + 1;
    const value = escaped ? JSON.parse(s.slice(start, i + 1)) as string : s.slice(start + 1, i);
    // Lone surrogates from \ud800-style escapes are not representable in UTF-8 (Rust rejects).
    if (!value.isWellFormed()) {
      this.pos = start;
      this.fail("string contains an unpaired surrogate escape");
    }
    return value;
  }

  /** Parse a non-negative integer that is exactly representable in a JS number. */
  uint(what: string): number {
    this.skipWs();
    UINT.lastIndex = this.pos;
    const m = UINT.exec(this.src);
    if (m === null) this.fail(`expected ${what} (a non-negative integer)`);
    const next = this.src[this.pos + m[0].length];
    if (next === "." || next === "e" || next === "E" || (next >= "0" && next <= "9")) {
      this.fail(`${what} must be a non-negative integer`);
    }
    const n = Number(m[0]);
    if (!Number.isSafeInteger(n)) this.fail(`${what} ${m[0].slice(0, 30)} is too large`);
    this.pos += m[0].length;
    return n;
  }

  uintArray(what: string): number[] {
    this.expect("[", `${what} (an array)`);
    const out: number[] = [];
    this.skipWs();
    if (this.src[this.pos] === "]") {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.uint(`${what} element`));
      this.skipWs();
      const c = this.src[this.pos++];
      if (c === "]") return out;
      if (c !== ",") {
        this.pos--;
        this.fail(`expected ',' or ']' in ${what}`);
      }
    }
  }

  /** Parse an object, calling `value(key)` to consume each value; duplicate keys are rejected. */
  object(what: string, value: (key: string) => void): void {
    this.expect("{", `${what} (an object)`);
    const seen = new Set<string>();
    this.skipWs();
    if (this.src[this.pos] === "}") {
      this.pos++;
      return;
    }
    for (;;) {
      const keyPos = this.pos;
      const key = this.string(`a key in ${what}`);
      if (seen.has(key)) {
        this.pos = keyPos;
        this.fail(`duplicate key ${quote(key)} in ${what}`);
      }
      seen.add(key);
      this.expect(":", "':'");
      value(key);
      this.skipWs();
      const c = this.src[this.pos++];
      if (c === "}") return;
      if (c !== ",") {
        this.pos--;
        this.fail(`expected ',' or '}' in ${what}`);
      }
    }
  }
}

function parseEntry(r: HeaderReader, name: string): HeaderEntry {
  const where = `tensor ${quote(name)}`;
  let dtype: string | undefined;
  let shape: number[] | undefined;
  let offsets: number[] | undefined;
  r.object(where, (key) => {
    if (key === "dtype") dtype = r.string(`${where} dtype`);
    else if (key === "shape") shape = r.uintArray(`${where} shape`);
    else if (key === "data_offsets") offsets = r.uintArray(`${where} data_offsets`);
    else {
      throw new SafetensorsError(
        `${where}: unexpected field ${quote(key)} (allowed: ${ENTRY_FIELDS.join(", ")})`,
      );
    }
  });
  const missing = ENTRY_FIELDS.filter((_f, i) => [dtype, shape, offsets][i] === undefined);
  if (missing.length > 0) throw new SafetensorsError(`${where}: missing ${missing.join(", ")}`);
  if (!isSafetensorsDtype(dtype)) {
    throw new SafetensorsError(
      `${where}: unsupported dtype ${quote(dtype!)} (supported: ${SUPPORTED_DTYPES.join(", ")})`,
    );
  }
  if (offsets!.length !== 2) {
    throw new SafetensorsError(
      `${where}: data_offsets must have exactly 2 elements, got ${offsets!.length}`,
    );
  }
  return { name, dtype, shape: shape!, begin: offsets![0], end: offsets![1] };
}

/**
 * Parse header text into metadata and tensor entries, checking JSON form and field types.
 * Byte-level layout is checked separately by {@link validateLayout}.
 * @throws {SafetensorsError} on any deviation from the expected schema.
 */
export function parseHeader(text: string): ParsedHeader {
  const r = new HeaderReader(text);
  // Leading whitespace is legal JSON but no writer emits it; the reference reader plans to
  // require '{' first, so we already do.
  if (text[0] !== "{") r.fail("header must start with '{'");
  let metadata: Record<string, string> | undefined;
  const entries: HeaderEntry[] = [];
  r.object("header", (key) => {
    if (key === METADATA_KEY) {
      const pairs: [string, string][] = [];
      r.object(METADATA_KEY, (k) => pairs.push([k, r.string(`${METADATA_KEY} value`)]));
      // fromEntries defines own properties, so a "__proto__" key stays plain data.
      metadata = Object.fromEntries(pairs);
    } else {
      entries.push(parseEntry(r, key));
    }
  });
  r.skipWs();
  if (r.pos !== text.length) r.fail("unexpected trailing characters after the header object");
  return { metadata, entries };
}

/**
 * Check that tensor byte ranges match shape x dtype size, stay inside the data region, do not
 * overlap and cover it completely (the same rules as the Python library, with named errors).
 * @param entries parsed header entries.
 * @param dataLength size of the data region in bytes.
 * @throws {SafetensorsError} naming the first offending tensor.
 */
export function validateLayout(entries: readonly HeaderEntry[], dataLength: number): void {
  for (const e of entries) {
    const where = `tensor ${quote(e.name)}`;
    if (e.end < e.begin) {
      throw new SafetensorsError(`${where}: data_offsets [${e.begin}, ${e.end}] are reversed`);
    }
    if (e.end > dataLength) {
      throw new SafetensorsError(
        `${where}: data_offsets [${e.begin}, ${e.end}] exceed the data region of ${dataLength} bytes`,
      );
    }
    // Running product, rejected once it leaves the safe-integer range even if a later 0
    // would bring it back: stricter than Python's u64 overflow check, never looser.
    let need = DTYPE_SIZE[e.dtype];
    for (const d of e.shape) {
      need *= d;
      if (!Number.isSafeInteger(need)) {
        throw new SafetensorsError(
          `${where}: shape [${e.shape.join(", ")}] of ${e.dtype} overflows the byte size`,
        );
      }
    }
    if (need !== e.end - e.begin) {
      throw new SafetensorsError(
        `${where}: shape [${e.shape.join(", ")}] of ${e.dtype} needs ${need} bytes but ` +
          `data_offsets [${e.begin}, ${e.end}] span ${e.end - e.begin}`,
      );
    }
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: HeaderEntry | undefined;
  for (const e of sorted) {
    if (e.begin < cursor) {
      throw new SafetensorsError(
        `tensor ${quote(e.name)}: data_offsets [${e.begin}, ${e.end}] overlap tensor ` +
          `${quote(prev!.name)} [${prev!.begin}, ${prev!.end}]`,
      );
    }
    if (e.begin > cursor) {
      throw new SafetensorsError(
        `tensor ${quote(e.name)}: gap in the data region, bytes [${cursor}, ${e.begin}) ` +
          `belong to no tensor`,
      );
    }
    cursor = e.end;
    prev = e;
  }
  if (cursor !== dataLength) {
    throw new SafetensorsError(
      `data region has ${dataLength - cursor} trailing bytes after the last tensor ` +
        `(tensors cover ${cursor} of ${dataLength} bytes)`,
    );
  }
}
