// Round trips through our own writer and reader are bit-exact, deterministic and zero-copy.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  type SafetensorsDtype,
  SafetensorsError,
  type TensorInput,
  writeSafetensors,
} from "../models/safetensors/mod.ts";
import { hex, randomBytes, rng, withTempDir } from "./checkpoint_helpers.ts";

const DTYPES: SafetensorsDtype[] = ["F32", "F16", "BF16", "I32", "I64", "U8", "U16"];
const WIDTH = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, U8: 1, U16: 2 };

function randomModel(seed: number): Map<string, TensorInput> {
  const next = rng(seed);
  const tensors = new Map<string, TensorInput>();
  const count = 1 + Math.floor(next() * 12);
  for (let i = 0; i < count; i++) {
    const dtype = DTYPES[Math.floor(next() * DTYPES.length)];
    const rank = Math.floor(next() * 4);
    const shape = Array.from({ length: rank }, () => Math.floor(next() * 5));
    const n = shape.reduce((a, b) => a * b, 1);
    // random bytes cover NaN payloads, subnormals, -0 and every integer bit pattern
    tensors.set(`blk${Math.floor(next() * 4)}.p${i}`, {
      dtype,
      shape,
      data: randomBytes(next, n * WIDTH[dtype]),
    });
  }
  return tensors;
}

Deno.test("encode/decode round trip is bit-exact for random models", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const model = randomModel(seed);
    const metadata = seed % 3 === 0 ? undefined : { seed: String(seed), "é": "✓\n" };
    const bytes = encodeSafetensors(model, metadata);
    const file = decodeSafetensors(bytes);
    assert.equal(file.hasMetadata, metadata !== undefined);
    assert.deepEqual(file.metadata, metadata ?? {});
    assert.deepEqual([...file.tensors.keys()].sort(), [...model.keys()].sort());
    for (const [name, t] of model) {
      const got = file.tensors.get(name)!;
      assert.equal(got.dtype, t.dtype);
      assert.deepEqual(got.shape, t.shape);
      assert.equal(hex(got.data), hex(t.data as Uint8Array), `seed ${seed} ${name}`);
      assert.equal(got.data.buffer, bytes.buffer, "data must be a view, not a copy");
      assert.equal(hex(got.toTypedArray()), hex(t.data as Uint8Array));
    }
    // Python-compatible layout: 8-byte aligned header, data packed by descending alignment.
    assert.equal(file.headerSize % 8, 0);
    const offsets = [...file.tensors.values()].map((t) => t.data.byteOffset);
    assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b));
    // re-encoding what we read gives the same bytes, whatever the input order
    const reversed = new Map([...model].reverse());
    assert.deepEqual(encodeSafetensors(reversed, metadata), bytes);
    assert.deepEqual(encodeSafetensors(file.tensors, metadata), bytes);
    // bytes embedded at an odd offset of a larger buffer decode the same
    const embedded = new Uint8Array(bytes.length + 11);
    embedded.set(bytes, 3);
    const again = decodeSafetensors(embedded.subarray(3, 3 + bytes.length));
    for (const [name, t] of file.tensors) {
      assert.equal(hex(again.tensors.get(name)!.toTypedArray()), hex(t.toTypedArray()));
    }
  }
});

Deno.test("typed-array inputs, lazy data and file writes give the same bytes", async () => {
  await withTempDir(async (dir) => {
    const w = new Float32Array([1.5, -0, NaN, Infinity, 1e-45, 3.4028234663852886e38]);
    const nanPayload = new Uint32Array(w.buffer);
    nanPayload[2] = 0x7fa00001; // signalling NaN with payload must survive unchanged
    const typed: Record<string, TensorInput> = {
      w: { dtype: "F32", shape: [2, 3], data: w },
      h: { dtype: "F16", shape: [2], data: new Uint16Array([0x3c00, 0xfc01]) },
      b: { dtype: "BF16", shape: [1], data: new Uint16Array([0x3f80]) },
      i: { dtype: "I32", shape: [2], data: new Int32Array([-(2 ** 31), 2 ** 31 - 1]) },
      l: { dtype: "I64", shape: [2], data: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]) },
      u: { dtype: "U16", shape: [1], data: new Uint16Array([65535]) },
      o: { dtype: "U8", shape: [2, 1], data: new Uint8Array([0, 255]) },
      // a subarray view with a non-zero byteOffset
      v: { dtype: "F32", shape: [2], data: new Float32Array([9, 8, 7, 6]).subarray(1, 3) },
    };
    const bytes = encodeSafetensors(typed, { kind: "typed" });
    const lazy = Object.fromEntries(
      Object.entries(typed).map(([k, t]) => [k, { ...t, data: () => Promise.resolve(t.data) }]),
    ) as Record<string, TensorInput>;
    const path = join(dir, "m.safetensors");
    await writeSafetensors(path, lazy, { kind: "typed" });
    assert.deepEqual(await Deno.readFile(path), bytes);
    const file = await readSafetensors(path);
    const w2 = file.tensors.get("w")!.toFloat32();
    assert.deepEqual(new Uint32Array(w2.buffer), nanPayload);
    assert.deepEqual([...file.tensors.get("h")!.toFloat32()].slice(0, 1), [1]);
    assert.ok(Number.isNaN(file.tensors.get("h")!.toFloat32()[1]));
    assert.deepEqual([...file.tensors.get("b")!.toFloat32()], [1]);
    assert.deepEqual([...file.tensors.get("i")!.toTypedArray()], [-(2 ** 31), 2 ** 31 - 1]);
    assert.deepEqual([...file.tensors.get("l")!.toTypedArray()], [-(2n ** 63n), 2n ** 63n - 1n]);
    assert.deepEqual([...file.tensors.get("l")!.toFloat32()], [-(2 ** 63), 2 ** 63]);
    assert.deepEqual([...file.tensors.get("u")!.toFloat32()], [65535]);
    assert.deepEqual([...file.tensors.get("o")!.toFloat32()], [0, 255]);
    assert.deepEqual([...file.tensors.get("v")!.toFloat32()], [8, 7]);
    // conversions copy: mutating the result leaves the file buffer alone
    w2[0] = 42;
    assert.equal(file.tensors.get("w")!.toFloat32()[0], 1.5);
    // lazy data is rejected by the in-memory encoder
    assert.throws(() => encodeSafetensors(lazy), SafetensorsError);
  });
});

Deno.test("writer rejects bad input with SafetensorsError", () => {
  const bad: [string, Record<string, TensorInput>, RegExp][] = [
    ["size", { x: { dtype: "F32", shape: [3], data: new Float32Array(2) } }, /"x".*8 bytes.*12/],
    ["type", { x: { dtype: "F16", shape: [2], data: new Float32Array(1) } }, /Float32Array.*F16/],
    ["type i64", { x: { dtype: "I64", shape: [1], data: new Float64Array(1) } }, /"x"/],
    [
      "dtype",
      { x: { dtype: "F64" as SafetensorsDtype, shape: [1], data: new Uint8Array(8) } },
      /F64/,
    ],
    ["shape", { x: { dtype: "U8", shape: [-1], data: new Uint8Array(0) } }, /non-negative/],
    ["shape float", { x: { dtype: "U8", shape: [1.5], data: new Uint8Array(1) } }, /non-negative/],
    ["reserved", { __metadata__: { dtype: "U8", shape: [], data: new Uint8Array(1) } }, /reserved/],
    ["surrogate", { "\ud800": { dtype: "U8", shape: [], data: new Uint8Array(1) } }, /well-formed/],
    ["not typed", { x: { dtype: "U8", shape: [1], data: [1] as unknown as Uint8Array } }, /typed/],
  ];
  for (const [label, tensors, pattern] of bad) {
    assert.throws(() => encodeSafetensors(tensors), (e: unknown) => {
      assert.ok(e instanceof SafetensorsError, label);
      assert.match(e.message, pattern, label);
      return true;
    });
  }
  const ok = { x: { dtype: "U8" as const, shape: [1], data: new Uint8Array(1) } };
  assert.throws(() => encodeSafetensors(ok, { k: 1 as unknown as string }), SafetensorsError);
  assert.throws(() => encodeSafetensors(ok, { k: "\udc00" }), SafetensorsError);
});
