// checkNames: one error listing every missing name, unexpected name and shape mismatch.

import assert from "node:assert/strict";
import {
  checkNames,
  CheckpointMismatchError,
  decodeSafetensors,
  encodeSafetensors,
  SafetensorsError,
} from "../models/safetensors/mod.ts";

const file = decodeSafetensors(encodeSafetensors({
  "embed.weight": { dtype: "F32", shape: [10, 4], data: new Float32Array(40) },
  "head.weight": { dtype: "F32", shape: [4, 3], data: new Float32Array(12) },
  "head.bias": { dtype: "F32", shape: [3], data: new Float32Array(3) },
  "old.scale": { dtype: "F16", shape: [], data: new Uint16Array(1) },
  "zz.extra": { dtype: "U8", shape: [0], data: new Uint8Array(0) },
}));

Deno.test("checkNames accepts an exact match", () => {
  const expected = new Map<string, number[]>([...file.tensors].map(([k, t]) => [k, [...t.shape]]));
  checkNames(expected, file);
  checkNames(expected, file.tensors); // a plain map of shapes works too
});

Deno.test("checkNames lists missing, unexpected and mismatched tensors in one error", () => {
  const expected = new Map<string, number[]>([
    ["embed.weight", [10, 4]],
    ["head.weight", [3, 4]], // transposed
    ["head.bias", [3, 1]], // rank differs
    ["blocks.0.attn.qkv", [4, 12]],
    ["a.first", [1]],
    ["zz.extra", [0]],
  ]);
  assert.throws(() => checkNames(expected, file), (e: unknown) => {
    assert.ok(e instanceof CheckpointMismatchError);
    assert.ok(e instanceof SafetensorsError);
    assert.deepEqual(e.missing, ["a.first", "blocks.0.attn.qkv"]);
    assert.deepEqual(e.unexpected, ["old.scale"]);
    assert.deepEqual(e.shapeMismatches, [
      { name: "head.bias", expected: [3, 1], actual: [3] },
      { name: "head.weight", expected: [3, 4], actual: [4, 3] },
    ]);
    assert.equal(
      e.message,
      [
        "checkpoint does not match the model:",
        '  missing 2: "a.first", "blocks.0.attn.qkv"',
        '  unexpected 1: "old.scale"',
        '  shape mismatch "head.bias": expected [3, 1], file has [3]',
        '  shape mismatch "head.weight": expected [3, 4], file has [4, 3]',
      ].join("\n"),
    );
    return true;
  });
});

Deno.test("checkNames reports each kind of problem alone", () => {
  const all = new Map<string, number[]>([...file.tensors].map(([k, t]) => [k, [...t.shape]]));
  const only = (edit: (m: Map<string, number[]>) => void, pattern: RegExp) => {
    const m = new Map(all);
    edit(m);
    assert.throws(() => checkNames(m, file), (e: unknown) => {
      assert.ok(e instanceof CheckpointMismatchError);
      assert.match(e.message, pattern);
      const kinds = [e.missing.length, e.unexpected.length, e.shapeMismatches.length];
      assert.equal(kinds.filter((k) => k > 0).length, 1, e.message);
      return true;
    });
  };
  only((m) => m.set("new", [1]), /^checkpoint does not match the model:\n {2}missing 1: "new"$/);
  only((m) => m.delete("old.scale"), /^[^\n]*\n {2}unexpected 1: "old.scale"$/);
  only(
    (m) => m.set("old.scale", [1]),
    /shape mismatch "old.scale": expected \[1\], file has \[\]$/,
  );
});
