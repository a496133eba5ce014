// Interop with the reference implementation: files we write must load in Python's
// `safetensors` with identical content, and files Python writes must load in ours.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  encodeSafetensors,
  type Metadata,
  readSafetensors,
  type SafetensorsDtype,
  type TensorInput,
  writeSafetensors,
} from "../models/safetensors/mod.ts";
import { type Dump, hex, randomBytes, reference, rng, withTempDir } from "./checkpoint_helpers.ts";

const NUMPY_DTYPE: Record<string, string> = {
  F32: "float32",
  F16: "float16",
  I32: "int32",
  I64: "int64",
  U8: "uint8",
  U16: "uint16",
};

const WIDTH: Record<SafetensorsDtype, number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  I32: 4,
  I64: 8,
  U8: 1,
  U16: 2,
};

/** Random tensor given as raw bytes or as the dtype's natural typed array. */
function randomTensor(
  next: () => number,
  dtype: SafetensorsDtype,
  shape: number[],
  asBytes: boolean,
): TensorInput {
  const n = shape.reduce((a, b) => a * b, 1);
  const bytes = randomBytes(next, n * WIDTH[dtype]);
  if (asBytes) return { dtype, shape, data: bytes };
  const buf = bytes.buffer;
  const data = {
    F32: () => new Float32Array(buf),
    F16: () => new Uint16Array(buf),
    BF16: () => new Uint16Array(buf),
    I32: () => new Int32Array(buf),
    I64: () => new BigInt64Array(buf),
    U8: () => bytes,
    U16: () => new Uint16Array(buf),
  }[dtype]();
  return { dtype, shape, data };
}

const ODD_NAMES = ["", "é", "😀", "\uffee", 'q"\\\n\x01\x7f\u2028', "a/b.c[0]", "__metadata__x"];

function bytesOf(t: TensorInput): Uint8Array {
  const d = t.data as ArrayBufferView;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

Deno.test("files we write load in Python safetensors with identical content", async () => {
  await withTempDir(async (dir) => {
    const next = rng(7);
    const dtypes: SafetensorsDtype[] = ["F32", "F16", "BF16", "I32", "I64", "U8", "U16"];
    const shapes = [[], [0], [3, 0, 2], [5], [2, 3, 4], [1, 1, 7]];
    const big = new Map<string, TensorInput>();
    let k = 0;
    for (const dtype of dtypes) {
      for (const shape of shapes) {
        big.set(`layer${k}.${dtype.toLowerCase()}`, randomTensor(next, dtype, shape, k % 2 === 0));
        k++;
      }
    }
    // one dtype, so only the name order (UTF-8 bytes, not UTF-16 units) decides the layout
    ODD_NAMES.forEach((name) => big.set(name, randomTensor(next, "F32", [2, 2], false)));
    const files: { name: string; tensors: Map<string, TensorInput>; metadata?: Metadata }[] = [
      {
        name: "many.safetensors",
        tensors: big,
        metadata: new Map([["format", "pt"], ["__proto__", "x"], ['é\n"', "😀\u2028\\"]]),
      },
      {
        name: "one_meta.safetensors",
        tensors: new Map([...big].slice(0, 12).concat([...big].slice(-ODD_NAMES.length))),
        metadata: { step: "10" },
      },
      { name: "no_meta.safetensors", tensors: new Map([...big].slice(20, 30)) },
      { name: "empty.safetensors", tensors: new Map(), metadata: {} },
    ];
    for (const f of files) await writeSafetensors(join(dir, f.name), f.tensors, f.metadata);

    const dumps = await reference<Dump[]>("dump", ...files.map((f) => join(dir, f.name)));
    for (const [i, f] of files.entries()) {
      const d = dumps[i];
      assert.ok(d.ok, `${f.name}: Python rejected our file: ${d.error}`);
      const meta = f.metadata instanceof Map ? Object.fromEntries(f.metadata) : f.metadata;
      assert.deepEqual(d.metadata, meta ?? null, `${f.name}: metadata`);
      assert.deepEqual(Object.keys(d.tensors!).sort(), [...f.tensors.keys()].sort());
      const ours = await readSafetensors(join(dir, f.name));
      for (const [name, t] of f.tensors) {
        const p = d.tensors![name];
        assert.equal(p.dtype, t.dtype, name);
        assert.deepEqual(p.shape, t.shape, name);
        assert.equal(p.hex, hex(bytesOf(t)), `${name}: bytes`);
        if (t.dtype !== "BF16") {
          // numpy's own loader (what training scripts use) agrees as well
          assert.equal(p.numpy_dtype, NUMPY_DTYPE[t.dtype], name);
          assert.deepEqual(p.numpy_shape, t.shape, name);
          assert.equal(p.numpy_hex, p.hex, name);
        }
        // numpy's float32 rendering (F16 widening, int casts) vs our toFloat32
        assert.equal(hex(ours.tensors.get(name)!.toFloat32()), p.f32hex, `${name}: toFloat32`);
      }
    }

    // Python's writer lays the same content out byte-identically (metadata with <= 1 key, as
    // Python orders metadata keys randomly). Not for the empty file: safetensors 0.8 writes
    // the invalid header `{},"__metadata__":{}}` for no tensors with empty metadata.
    for (const f of files.slice(1, 3)) {
      const resaved = join(dir, `py_${f.name}`);
      await reference("resave", join(dir, f.name), resaved);
      const py = await Deno.readFile(resaved);
      assert.deepEqual(await Deno.readFile(join(dir, f.name)), py, `${f.name}: layout`);
      assert.deepEqual(encodeSafetensors(f.tensors, f.metadata), py, `${f.name}: encode`);
    }
  });
});

Deno.test("files Python writes load in ours with correct values", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "py.safetensors");
    const expected = await reference<{
      metadata: Record<string, string>;
      tensors: Record<string, { dtype: string; shape: number[]; hex: string; f32hex: string }>;
    }>("sample", path);
    const file = await readSafetensors(path);
    assert.deepEqual(file.metadata, expected.metadata);
    assert.equal(file.hasMetadata, true);
    assert.deepEqual([...file.tensors.keys()].sort(), Object.keys(expected.tensors).sort());
    for (const [name, e] of Object.entries(expected.tensors)) {
      const t = file.tensors.get(name)!;
      assert.equal(t.dtype, e.dtype, name);
      assert.deepEqual(t.shape, e.shape, name);
      assert.equal(hex(t.data), e.hex, `${name}: bytes`);
      assert.equal(hex(t.toFloat32()), e.f32hex, `${name}: toFloat32`);
    }
    // Spot values decoded independently of the reference's hex.
    assert.deepEqual(
      [...(file.tensors.get("steps.i64")!.toTypedArray() as BigInt64Array)],
      [-(2n ** 62n), 2n ** 53n + 1n, -1n, 2n ** 60n + 2n ** 36n + 1n],
    );
    assert.deepEqual(
      [...file.tensors.get("dec.bf16")!.toFloat32()].slice(0, 3),
      [1, -3.140625, Infinity],
    );
    assert.equal(file.tensors.get("scalar")!.toFloat32()[0], 3.25);
    assert.deepEqual(file.tensors.get("scalar")!.shape, []);
    assert.equal(file.tensors.get("empty")!.size, 0);
  });
});
