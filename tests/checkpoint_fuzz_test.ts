// Truncated, tampered and malicious files: every rejection must be a SafetensorsError (no
// other exception, no hang, no allocation from header values), and the reference library
// must agree: whatever we accept, Python accepts with the same content; corruptions that
// break the format's own rules are rejected by both.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  SafetensorsError,
  type SafetensorsFile,
} from "../models/safetensors/mod.ts";
import { type Dump, hex, randomBytes, reference, rng, withTempDir } from "./checkpoint_helpers.ts";

interface Case {
  label: string;
  bytes: Uint8Array;
  /** Must we reject it? (false for mutations that may legitimately stay valid) */
  invalid: boolean;
  /** Python may accept it: rules where we are deliberately stricter than the reference. */
  stricter?: boolean;
}

const enc = new TextEncoder();

function baseFile(): Uint8Array {
  const next = rng(3);
  const bytes = (n: number) => randomBytes(next, n);
  return encodeSafetensors({
    "enc.w": { dtype: "F32", shape: [2, 3], data: bytes(24) },
    "enc.h": { dtype: "F16", shape: [4], data: bytes(8) },
    "steps": { dtype: "I64", shape: [2], data: bytes(16) },
    "obs": { dtype: "U8", shape: [3], data: bytes(3) },
    "scale": { dtype: "BF16", shape: [], data: bytes(2) },
    "none": { dtype: "F32", shape: [0, 2], data: new Float32Array(0) },
  }, { format: "pt", run: "fuzz" });
}

function split(file: Uint8Array): { header: string; data: Uint8Array } {
  const n = Number(new DataView(file.buffer).getBigUint64(0, true));
  return {
    header: new TextDecoder().decode(file.subarray(8, 8 + n)).trimEnd(),
    data: file.subarray(8 + n),
  };
}

/** Assemble a file from header bytes and data, with a correct (or given) length prefix. */
function assemble(header: Uint8Array | string, data: Uint8Array, n?: bigint): Uint8Array {
  const h = typeof header === "string" ? enc.encode(header) : header;
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/** JSON edits of the header: [label, edit, stricter-than-Python?]. */
type Edit = [string, (h: Record<string, unknown>) => void, boolean?];

const entry = (h: Record<string, unknown>, name: string) =>
  h[name] as { dtype: unknown; shape: unknown; data_offsets: unknown; [k: string]: unknown };

const EDITS: Edit[] = [
  ["overlap", (h) => (entry(h, "enc.w").data_offsets = [8, 32])],
  ["swap offsets", (h) => {
    const a = entry(h, "enc.w"), b = entry(h, "steps");
    [a.data_offsets, b.data_offsets] = [b.data_offsets, a.data_offsets];
  }],
  ["reversed offsets", (h) => (entry(h, "steps").data_offsets = [16, 0])],
  ["offsets past end", (h) => (entry(h, "obs").data_offsets = [50, 1e6])],
  ["offset 2^64", (h) => (entry(h, "obs").data_offsets = [50, "@18446744073709551616"])],
  ["3 offsets", (h) => (entry(h, "obs").data_offsets = [50, 53, 53])],
  ["1 offset", (h) => (entry(h, "obs").data_offsets = [50])],
  ["negative offset", (h) => (entry(h, "steps").data_offsets = [-16, 0])],
  ["float offset", (h) => (entry(h, "steps").data_offsets = [0, "@16.0"])],
  ["string offset", (h) => (entry(h, "steps").data_offsets = [0, "16"])],
  ["offsets object", (h) => (entry(h, "steps").data_offsets = { a: 0 })],
  ["shape x2", (h) => (entry(h, "enc.w").shape = [4, 3])],
  ["shape dropped dim", (h) => (entry(h, "enc.w").shape = [2])],
  ["huge shape", (h) => (entry(h, "enc.w").shape = [2 ** 40, 2 ** 40])],
  ["overflow shape x0", (h) => (entry(h, "none").shape = [2 ** 40, 2 ** 40, 0])],
  ["shape 2^64", (h) => (entry(h, "enc.w").shape = ["@18446744073709551616", 1])],
  ["shape 1e30", (h) => (entry(h, "enc.w").shape = ["@1e30"])],
  ["negative shape", (h) => (entry(h, "enc.w").shape = [-2, -3])],
  ["fraction shape", (h) => (entry(h, "enc.w").shape = ["@1.5", 4])],
  ["exponent shape", (h) => (entry(h, "enc.w").shape = ["@2e0", 3])],
  ["negative zero shape", (h) => (entry(h, "none").shape = ["@-0", 2])],
  ["string shape", (h) => (entry(h, "enc.w").shape = ["2", 3])],
  ["nested shape", (h) => (entry(h, "enc.w").shape = [[2], 3])],
  ["null shape", (h) => (entry(h, "enc.w").shape = null)],
  ["bool shape", (h) => (entry(h, "enc.w").shape = [true, 3])],
  ["dtype F32->F16", (h) => (entry(h, "enc.w").dtype = "F16")],
  ["dtype I64->F64", (h) => (entry(h, "steps").dtype = "F64"), true],
  ["dtype U8->BOOL", (h) => (entry(h, "obs").dtype = "BOOL"), true],
  ["dtype lower", (h) => (entry(h, "enc.w").dtype = "f32")],
  ["dtype numpy", (h) => (entry(h, "enc.w").dtype = "float32")],
  ["dtype empty", (h) => (entry(h, "enc.w").dtype = "")],
  ["dtype number", (h) => (entry(h, "enc.w").dtype = 4)],
  ["dtype null", (h) => (entry(h, "enc.w").dtype = null)],
  ["missing dtype", (h) => delete entry(h, "enc.w").dtype],
  ["missing shape", (h) => delete entry(h, "enc.w").shape],
  ["missing offsets", (h) => delete entry(h, "enc.w").data_offsets],
  ["extra field", (h) => (entry(h, "enc.w").offsets = [0, 1]), true],
  ["entry number", (h) => (h["enc.w"] = 5)],
  ["entry array", (h) => (h["enc.w"] = ["F32", [2, 3], [16, 40]]), true],
  ["entry string", (h) => (h["enc.w"] = "F32")],
  ["entry null", (h) => (h["enc.w"] = null)],
  ["metadata number value", (h) => (h.__metadata__ = { k: 1 })],
  ["metadata null value", (h) => (h.__metadata__ = { k: null })],
  ["metadata nested", (h) => (h.__metadata__ = { k: { x: "y" } })],
  ["metadata array", (h) => (h.__metadata__ = ["a"])],
  ["metadata string", (h) => (h.__metadata__ = "a")],
  ["metadata null", (h) => (h.__metadata__ = null), true],
  ["metadata as tensor", (h) => (h.__metadata__ = h["obs"])],
  ["removed tensor", (h) => delete h["obs"]],
  ["extra tensor", (h) => (h["ghost"] = { dtype: "U8", shape: [1], data_offsets: [53, 54] })],
];

/** Raw-text header corruptions: [label, header text, stricter-than-Python?]. */
function rawCases(header: string): [string, string, boolean?][] {
  const body = header.slice(1, -1);
  const obs = /"obs":\{[^}]*\}/.exec(header)![0];
  return [
    ["duplicate tensor key", `{${body},${obs}}`, true],
    [
      "duplicate metadata key",
      header.replace('"format":"pt"', '"format":"pt","format":"pt"'),
      true,
    ],
    ["duplicate field", header.replace('"dtype":"U8"', '"dtype":"U8","dtype":"U8"')],
    ["leading space", ` ${header}`, true],
    ["BOM", `\ufeff${header}`],
    ["trailing garbage", `${header}x`],
    ["second object", `${header}{}`],
    ["root array", `[${body}]`],
    ["root string", JSON.stringify(header)],
    ["root number", "1"],
    ["empty header", ""],
    ["NUL padding", `${header}\0\0`],
    ["unterminated", header.slice(0, -1)],
    ["unterminated string", header.slice(0, 20)],
    ["trailing comma", `{${body},}`],
    ["single quotes", header.replaceAll('"obs"', "'obs'")],
    ["lone surrogate", header.replace('"fuzz"', '"\\ud800"')],
    ["bad escape", header.replace('"fuzz"', '"\\x41"')],
    ["short unicode escape", header.replace('"fuzz"', '"\\u12"')],
    ["raw control char", header.replace('"fuzz"', '"fu\tzz"')],
    ["deep nesting", header.replace(obs, `"obs":${"[".repeat(100_000)}`)],
    ["comment", header.replace("{", "{/*x*/")],
    ["leading zero", header.replace('"shape":[3]', '"shape":[03]')],
    ["plus sign", header.replace('"shape":[3]', '"shape":[+3]')],
  ];
}

function buildCases(): Case[] {
  const base = baseFile();
  const { header, data } = split(base);
  const next = rng(20260501);
  const cases: Case[] = [];
  const int = (n: number) => Math.floor(next() * n);

  for (const [label, edit, stricter] of EDITS) {
    const h = JSON.parse(header);
    edit(h);
    // "@token" strings stand for raw JSON number tokens JSON.stringify cannot produce.
    const text = JSON.stringify(h).replace(/"@([^"]*)"/g, "$1");
    cases.push({ label: `json: ${label}`, bytes: assemble(text, data), invalid: true, stricter });
  }
  for (const [label, text, stricter] of rawCases(header)) {
    cases.push({ label: `raw: ${label}`, bytes: assemble(text, data), invalid: true, stricter });
  }
  // A hole in the data region with the total size still matching: only the gap rule catches it.
  const gapHeader = JSON.parse(header);
  entry(gapHeader, "obs").data_offsets = [51, 54];
  const gapData = new Uint8Array(data.length + 1);
  gapData.set(data);
  cases.push({
    label: "json: gap",
    bytes: assemble(JSON.stringify(gapHeader), gapData),
    invalid: true,
  });
  const h8 = enc.encode(header);
  const badUtf8 = h8.slice();
  badUtf8[h8.indexOf(0x7a /* z */)] = 0xff; // inside the "fuzz" metadata value
  cases.push({ label: "raw: invalid UTF-8", bytes: assemble(badUtf8, data), invalid: true });
  const overlong = h8.slice();
  overlong.set([0xc0, 0xa2], h8.indexOf(0x7a)); // overlong encoding of '"'
  cases.push({ label: "raw: overlong UTF-8", bytes: assemble(overlong, data), invalid: true });

  const n = base.length;
  const headerLen = 8 + Number(new DataView(base.buffer).getBigUint64(0, true));
  for (let i = 0; i < 100; i++) {
    // Truncation anywhere, weighted towards the header and the last bytes.
    const at = i < 40 ? int(headerLen) : i < 60 ? n - 1 - int(8) : int(n);
    cases.push({ label: `truncate to ${at}`, bytes: base.slice(0, at), invalid: true });
  }
  for (let i = 0; i < 10; i++) {
    const extra = randomBytes(next, 1 + int(16));
    const bytes = new Uint8Array(n + extra.length);
    bytes.set(base);
    bytes.set(extra, n);
    cases.push({ label: `append ${extra.length}`, bytes, invalid: true });
  }
  const lengths = [
    0n,
    1n,
    7n,
    2n ** 64n - 1n,
    2n ** 63n,
    2n ** 53n + 1n,
    100_000_000n,
    100_000_001n,
    BigInt(n),
    BigInt(n - 8),
  ];
  for (let i = 0; i < 30; i++) {
    lengths.push(BigInt(headerLen - 8 + (int(2) ? 1 : -1) * (1 + int(24))));
  }
  for (let i = 0; i < 10; i++) lengths.push(BigInt(int(2 ** 32)) * BigInt(1 + int(2 ** 31)));
  for (const len of lengths) {
    const bytes = base.slice();
    new DataView(bytes.buffer).setBigUint64(0, len, true);
    cases.push({ label: `header length ${len}`, bytes, invalid: true });
  }
  for (let i = 0; i < 150; i++) {
    // Byte flips in the header may leave a valid file (e.g. a renamed tensor); both outcomes
    // are allowed, but acceptance must match Python's.
    const bytes = base.slice();
    const flips = 1 + int(3);
    for (let f = 0; f < flips; f++) bytes[int(headerLen)] ^= 1 << int(8);
    cases.push({ label: `header flips #${i}`, bytes, invalid: false });
  }
  for (let i = 0; i < 10; i++) {
    const bytes = base.slice();
    bytes[headerLen + int(n - headerLen)] ^= 1 + int(255);
    cases.push({ label: `data flip #${i}`, bytes, invalid: false });
  }
  for (let i = 0; i < 40; i++) {
    const bytes = randomBytes(next, int(80));
    // Half of them with a plausible small header length so parsing gets further.
    if (i % 2 === 0 && bytes.length >= 8) {
      new DataView(bytes.buffer).setBigUint64(0, BigInt(int(bytes.length - 7)), true);
      if (bytes.length > 8) bytes[8] = 0x7b; // '{'
    }
    cases.push({ label: `garbage #${i}`, bytes, invalid: true });
  }
  return cases;
}

function describe(f: SafetensorsFile) {
  return {
    metadata: f.hasMetadata ? f.metadata : null,
    tensors: Object.fromEntries(
      [...f.tensors].map((
        [k, t],
      ) => [k, { dtype: t.dtype, shape: [...t.shape], hex: hex(t.data) }]),
    ),
  };
}

Deno.test("fuzzed and malicious files give SafetensorsError, consistent with Python", async () => {
  const cases = buildCases();
  assert.ok(cases.length >= 300, `only ${cases.length} cases`);
  const results: (SafetensorsFile | SafetensorsError)[] = [];
  let slowest = 0;
  for (const c of cases) {
    const t0 = performance.now();
    let r: SafetensorsFile | SafetensorsError;
    try {
      r = decodeSafetensors(c.bytes);
    } catch (e) {
      if (!(e instanceof SafetensorsError)) {
        assert.fail(`${c.label}: threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
      }
      assert.ok(e.message.length > 10, `${c.label}: uninformative message`);
      r = e;
    }
    slowest = Math.max(slowest, performance.now() - t0);
    if (c.invalid) {
      assert.ok(r instanceof SafetensorsError, `${c.label}: accepted an invalid file`);
    }
    results.push(r);
  }
  assert.ok(slowest < 2000, `a single decode took ${slowest} ms`);
  const accepted = results.filter((r) => !(r instanceof SafetensorsError)).length;
  // the flip cases must exercise both outcomes, or the generator is broken
  assert.ok(accepted >= 10 && accepted < cases.length / 2, `${accepted} accepted`);

  await withTempDir(async (dir) => {
    const paths = cases.map((_, i) => join(dir, `case${i}.safetensors`));
    await Promise.all(cases.map((c, i) => Deno.writeFile(paths[i], c.bytes)));
    const dumps = await reference<Dump[]>("dump", ...paths);
    const problems: string[] = [];
    for (const [i, c] of cases.entries()) {
      const ours = results[i];
      const py = dumps[i];
      if (!(ours instanceof SafetensorsError)) {
        if (!py.ok) problems.push(`${c.label}: we accept, Python rejects (${py.error})`);
        else {
          const pyView = {
            metadata: py.metadata,
            tensors: Object.fromEntries(
              Object.entries(py.tensors!).map((
                [k, t],
              ) => [k, { dtype: t.dtype, shape: t.shape, hex: t.hex }]),
            ),
          };
          try {
            assert.deepEqual(describe(ours), pyView);
          } catch {
            problems.push(`${c.label}: content differs from Python's reading`);
          }
        }
      } else if (c.invalid && !c.stricter && py.ok) {
        problems.push(`${c.label}: Python accepts what the test calls invalid (${ours.message})`);
      }
    }
    assert.deepEqual(problems, []);
    // Reading from a path reports the same errors, prefixed with the path.
    await assert.rejects(() => readSafetensors(paths[0]), (e: unknown) => {
      assert.ok(e instanceof SafetensorsError);
      assert.ok(e.message.startsWith(paths[0]), e.message);
      return true;
    });
    await assert.rejects(() => readSafetensors(join(dir, "missing")), SafetensorsError);
    await assert.rejects(() => readSafetensors(dir), SafetensorsError);
  });
});

Deno.test("error messages name the tensor and the problem", () => {
  const { header, data } = split(baseFile());
  const withEdit = (edit: (h: Record<string, unknown>) => void) => {
    const h = JSON.parse(header);
    edit(h);
    return assemble(JSON.stringify(h), data);
  };
  const expectError = (bytes: Uint8Array, pattern: RegExp) =>
    assert.throws(() => decodeSafetensors(bytes), (e: unknown) => {
      assert.ok(e instanceof SafetensorsError);
      assert.match(e.message, pattern);
      return true;
    });
  expectError(
    withEdit((h) => (entry(h, "steps").dtype = "F64")),
    /"steps".*unsupported dtype "F64"/,
  );
  expectError(withEdit((h) => (entry(h, "enc.w").shape = [4, 3])), /"enc.w".*needs 48 bytes/);
  expectError(
    withEdit((h) => (entry(h, "enc.w").data_offsets = [8, 32])),
    /"enc.w".*overlap.*"steps"/,
  );
  expectError(withEdit((h) => (entry(h, "enc.w").extra = 1)), /"enc.w".*unexpected field "extra"/);
  expectError(withEdit((h) => delete entry(h, "enc.w").shape), /"enc.w".*missing shape/);
  expectError(withEdit((h) => delete h["obs"]), /trailing bytes/);
  expectError(withEdit((h) => (entry(h, "steps").data_offsets = [16, 0])), /"steps".*reversed/);
  expectError(
    withEdit((h) => (entry(h, "obs").data_offsets = [50, 60])),
    /"obs".*exceed the data region of 53 bytes/,
  );
  const gap = JSON.parse(header);
  entry(gap, "obs").data_offsets = [51, 54];
  expectError(
    assemble(JSON.stringify(gap), new Uint8Array(data.length + 1)),
    /"obs".*gap.*\[50, 51\)/,
  );
  expectError(
    assemble(`{${header.slice(1, -1)},${/"obs":\{[^}]*\}/.exec(header)![0]}}`, data),
    /duplicate key "obs"/,
  );
  expectError(assemble(header, data, 2n ** 60n), /header length .* exceeds the 100000000-byte/);
  expectError(assemble(header, data).subarray(0, 50), /exceeds the file size/);
  expectError(new Uint8Array(3), /too small/);
});
