// Atomic writes: a failed write never clobbers the previous file and never leaves temp files.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  encodeSafetensors,
  readSafetensors,
  SafetensorsError,
  type TensorInput,
  writeSafetensors,
} from "../models/safetensors/mod.ts";
import { withTempDir } from "./checkpoint_helpers.ts";

const list = async (dir: string) =>
  (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();

function model(value: number): Record<string, TensorInput> {
  return {
    a: { dtype: "F32", shape: [4], data: new Float32Array(4).fill(value) },
    b: { dtype: "U8", shape: [2], data: new Uint8Array([value, value]) },
  };
}

Deno.test("write replaces the file and leaves no temp files", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "m.safetensors");
    await writeSafetensors(path, model(1));
    await writeSafetensors(path, model(2), { v: "2" });
    assert.deepEqual(await list(dir), ["m.safetensors"]);
    assert.deepEqual(await Deno.readFile(path), encodeSafetensors(model(2), { v: "2" }));
    // concurrent writers: the result is one complete file, never a mix
    await Promise.all([3, 4, 5].map((v) => writeSafetensors(path, model(v))));
    const final = (await readSafetensors(path)).tensors.get("a")!.toFloat32()[0];
    assert.ok([3, 4, 5].includes(final));
    assert.deepEqual(await Deno.readFile(path), encodeSafetensors(model(final)));
    assert.deepEqual(await list(dir), ["m.safetensors"]);
  });
});

Deno.test("failed writes keep the old file and clean up", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "m.safetensors");
    await writeSafetensors(path, model(1));
    const old = await Deno.readFile(path);
    const unchanged = async (label: string) => {
      assert.deepEqual(await Deno.readFile(path), old, `${label}: old file clobbered`);
      assert.deepEqual(await list(dir), ["m.safetensors"], `${label}: leftovers`);
    };

    // invalid input: rejected before touching the disk
    const bad = { ...model(2), c: { dtype: "F32", shape: [3], data: new Float32Array(2) } };
    await assert.rejects(
      () => writeSafetensors(path, bad as Record<string, TensorInput>),
      SafetensorsError,
    );
    await unchanged("invalid input");

    // failure half-way through: the first tensor is already in the temp file when the
    // second one's data source throws
    let sawTemp = false;
    const failing: Record<string, TensorInput> = {
      a: model(2).a,
      b: {
        dtype: "U8",
        shape: [2],
        data: async () => {
          const names = await list(dir);
          sawTemp = names.length === 2 && names.some((n) => n.startsWith(".m.safetensors."));
          assert.deepEqual(await Deno.readFile(path), old); // target untouched mid-write
          throw new Error("device lost");
        },
      },
    };
    await assert.rejects(() => writeSafetensors(path, failing), (e: unknown) => {
      assert.ok(e instanceof SafetensorsError);
      assert.match(e.message, /device lost/);
      assert.equal((e.cause as Error).message, "device lost");
      return true;
    });
    assert.ok(sawTemp, "data was not being written to a temp sibling");
    await unchanged("throwing data source");

    // a lazy source producing the wrong size is caught mid-write
    const wrongSize = {
      ...model(2),
      b: { dtype: "U8" as const, shape: [2], data: () => new Uint8Array(3) },
    };
    await assert.rejects(() => writeSafetensors(path, wrongSize), /"b".*3 bytes/);
    await unchanged("wrong lazy size");

    // the final rename fails (target is a non-empty directory): temp file removed
    const dirTarget = join(dir, "sub");
    await Deno.mkdir(dirTarget);
    await Deno.writeTextFile(join(dirTarget, "keep"), "x");
    await assert.rejects(() => writeSafetensors(dirTarget, model(3)), SafetensorsError);
    assert.deepEqual(await list(dir), ["m.safetensors", "sub"]);
    assert.deepEqual(await list(dirTarget), ["keep"]);

    // missing directory: an I/O error wrapped as SafetensorsError
    await assert.rejects(
      () => writeSafetensors(join(dir, "nope", "m.safetensors"), model(3)),
      SafetensorsError,
    );
    assert.deepEqual(await list(dir), ["m.safetensors", "sub"]);
  });
});
