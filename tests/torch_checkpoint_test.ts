// Reading real `torch.save` checkpoints without torch: values match what torch wrote (from the
// committed fixtures of tests/fixtures/torch/make_torch_fixtures.py), every malicious or
// broken file fails with one clear error, nothing a pickle names is ever run, and tensors are
// read lazily. Only the large-file test needs torch at test time; it is skipped without it.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  crc32,
  f16BitsToF32,
  i64ToF32,
  openTorchCheckpoint,
  TorchCheckpointError,
  type TorchCheckpointProgress,
  unpickle,
  ZipReader,
} from "../models/torch/mod.ts";

const FIXTURES = fileURLToPath(new URL("./fixtures/torch/", import.meta.url));
const fixture = (name: string) => join(FIXTURES, name);
const PWNED_MARKER = "/tmp/jowa_torch_fixture_pwned";

interface Expected {
  dtype: string;
  shape: number[];
  hex: string;
  f32hex: string;
}
const EXPECTED: Record<string, Record<string, Expected>> = JSON.parse(
  Deno.readTextFileSync(fixture("expected.json")),
);

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The error a promise rejects with, checked to be our one-line error naming the file. */
async function rejection(path: string, p: Promise<unknown>): Promise<TorchCheckpointError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TorchCheckpointError, `not a TorchCheckpointError: ${e}`);
    assert.equal(e.path, path);
    assert.ok(e.message.startsWith(`${path}: `), e.message);
    assert.ok(!e.message.includes("\n"), `multi-line message: ${e.message}`);
    return e;
  }
  assert.fail(`${path} opened without error`);
}

for (const [file, tensors] of Object.entries(EXPECTED)) {
  Deno.test(`torch checkpoint: ${file} reads exactly what torch wrote`, async () => {
    using ckpt = await openTorchCheckpoint(fixture(file));
    assert.deepEqual(ckpt.tensors.map((t) => t.name), Object.keys(tensors));
    for (const t of ckpt.tensors) {
      const want = tensors[t.name];
      assert.equal(t.dtype, want.dtype, t.name);
      assert.deepEqual(t.shape, want.shape, t.name);
      assert.equal(t.size, want.shape.reduce((a, b) => a * b, 1), t.name);
      assert.equal(t.byteLength, want.hex.length / 2, t.name);
      assert.equal(hex(await t.readBytes()), want.hex, `${t.name} bytes`);
      assert.equal(hex(bytesOf(await t.readFloat32())), want.f32hex, `${t.name} float32`);
      const typed = await t.read();
      const kind = {
        F32: Float32Array,
        F16: Uint16Array,
        BF16: Uint16Array,
        I64: BigInt64Array,
        I32: Int32Array,
      }[t.dtype];
      assert.ok(typed instanceof kind, `${t.name} is a ${typed.constructor.name}`);
      assert.equal(hex(bytesOf(typed)), want.hex, `${t.name} typed`);
      assert.equal(ckpt.get(t.name), t);
    }
  });
}

Deno.test("torch checkpoint: views share one storage and are materialised contiguously", async () => {
  using ckpt = await openTorchCheckpoint(fixture("views.pt"));
  const key = ckpt.get("base")!.storageKey;
  for (const name of ["rows", "column", "transposed", "every_other"]) {
    assert.equal(ckpt.get(name)!.storageKey, key, name);
  }
  // base = arange(16).reshape(4, 4)
  assert.deepEqual([...await ckpt.get("column")!.readFloat32()], [1, 5, 9, 13]);
  assert.deepEqual([...await ckpt.get("rows")!.readFloat32()], [4, 5, 6, 7, 8, 9, 10, 11]);
  assert.deepEqual([...await ckpt.get("every_other")!.readFloat32()], [1, 3, 9, 11]);
  assert.deepEqual(
    [...await ckpt.get("transposed")!.readFloat32()],
    [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15],
  );
  assert.deepEqual([...await ckpt.get("expanded")!.readFloat32()], [0, 1, 2, 0, 1, 2]);
});

Deno.test("torch checkpoint: nn.Module state dict with _metadata and a module. prefix", async () => {
  using ckpt = await openTorchCheckpoint(fixture("module_state.pt"));
  assert.equal(ckpt.prefix, "module_state");
  assert.ok(ckpt.tensors.every((t) => t.name.startsWith("module.")));
  const counter = ckpt.get("module.1.num_batches_tracked")!;
  assert.equal(counter.dtype, "I64");
  assert.deepEqual(counter.shape, []);
  assert.deepEqual([...await counter.read() as BigInt64Array], [0n]);
});

Deno.test("torch checkpoint: nested dicts of parameters are flattened with dots", async () => {
  using ckpt = await openTorchCheckpoint(fixture("nested_params.pt"));
  assert.deepEqual(ckpt.tensors.map((t) => t.name), ["model.w", "model.b", "ema.w"]);
});

Deno.test("torch checkpoint: dtype helpers", () => {
  assert.equal(f16BitsToF32(0x3c00), 1);
  assert.equal(f16BitsToF32(0xc100), -2.5);
  assert.equal(f16BitsToF32(0x0001), 2 ** -24);
  assert.equal(f16BitsToF32(0x7c00), Infinity);
  assert.ok(Number.isNaN(f16BitsToF32(0x7e00)));
  // Double rounding through float64 would give 2^60 here; single rounding gives 2^60 + 2^37.
  assert.equal(i64ToF32(2n ** 60n + 2n ** 36n + 1n), 2 ** 60 + 2 ** 37);
  assert.equal(i64ToF32(-(2n ** 63n)), -(2 ** 63));
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
});

Deno.test("torch checkpoint: ZIP64 directory is parsed", async () => {
  const zip = await ZipReader.open(fixture("zip64.pt"));
  try {
    const pkl = zip.entries.get("zip64/data.pkl")!;
    assert.ok(pkl.size > 0 && pkl.size < 4096);
    assert.equal((await zip.readEntry(pkl))[0], 0x80); // PROTO
    const order = zip.entries.get("zip64/byteorder")!;
    assert.equal(new TextDecoder().decode(await zip.readEntry(order)), "little");
    assert.equal((await zip.dataOffset(zip.entries.get("zip64/data/0")!)) % 64, 0);
  } finally {
    zip.close();
  }
});

const BAD_FILES: [string, RegExp][] = [
  ["os_system.pt", /global posix\.system, which is not allowed/],
  ["builtins_eval.pt", /global __builtin__\.eval, which is not allowed/],
  ["stack_global.pt", /global posix\.system, which is not allowed/],
  ["reduce_storage.pt", /REDUCE of torch\.FloatStorage is not allowed/],
  ["newobj.pt", /pickle opcode NEWOBJ \(0x81\) at byte \d+ is not allowed/],
  ["build_tensor.pt", /BUILD on a tensor with a dict is not allowed/],
  ["whole_module.pt", /global torch\.nn\.modules\.linear\.Linear, which is not allowed/],
  ["float64.pt", /unsupported tensor storage torch\.DoubleStorage/],
  ["epoch.pt", /value at key "epoch" is of type int, not a tensor/],
  ["tensor_list.pt", /top-level object is a list, not a state dict of tensors/],
  ["empty.pt", /^empty file$/],
  ["truncated.pt", /not a zip archive or truncated/],
  ["not_zip.pt", /not a torch checkpoint \(not a zip archive\)/],
  [
    "legacy.pt",
    /legacy torch format: re-save with a newer torch \(torch\.save\(torch\.load\(f\), f\)\)/,
  ],
  ["compressed.pt", /zip entry compressed\/byteorder is compressed \(deflate\)/],
  ["missing_storage.pt", /storage data\/0 is missing from the archive/],
  ["bad_crc.pt", /CRC mismatch in protocol4\/data\.pkl/],
  ["does_not_exist.pt", /cannot open/],
];

for (const [file, pattern] of BAD_FILES) {
  Deno.test(`torch checkpoint: ${file} is refused clearly`, async () => {
    const path = fixture(file);
    const err = await rejection(path, openTorchCheckpoint(path));
    assert.match(err.problem, pattern);
  });
}

Deno.test("torch checkpoint: a malicious pickle never executes anything", async () => {
  try {
    Deno.removeSync(PWNED_MARKER);
  } catch { /* not there: good */ }
  for (const file of ["os_system.pt", "builtins_eval.pt", "stack_global.pt"]) {
    await rejection(fixture(file), openTorchCheckpoint(fixture(file)));
    // Also straight through the unpickler, bypassing the checkpoint layer.
    const zip = await ZipReader.open(fixture(file));
    const stem = file.replace(/\.pt$/, "");
    const pkl = await zip.readEntry(zip.entries.get(`${stem}/data.pkl`)!);
    zip.close();
    assert.throws(() => unpickle(pkl, file), TorchCheckpointError);
  }
  assert.equal(existsSync(PWNED_MARKER), false, "a pickle ran code");
});

Deno.test("torch checkpoint: progress, concurrent reads and close", async () => {
  const seen: TorchCheckpointProgress[] = [];
  const ckpt = await openTorchCheckpoint(fixture("views.pt"), {
    onProgress: (p) => seen.push(p),
  });
  const all = await Promise.all(ckpt.tensors.map((t) => t.readBytes()));
  const want = EXPECTED["views.pt"];
  ckpt.tensors.forEach((t, i) => assert.equal(hex(all[i]), want[t.name].hex, t.name));
  assert.equal(seen.length, ckpt.tensors.length);
  const last = seen[seen.length - 1];
  assert.equal(last.tensorsDone, ckpt.tensors.length);
  assert.equal(last.tensorsTotal, ckpt.tensors.length);
  assert.equal(last.bytesDone, last.bytesTotal);
  ckpt.close();
  const path = fixture("views.pt");
  const err = await rejection(path, ckpt.tensors[0].readBytes());
  assert.match(err.problem, /closed/);
});

/** A Python with torch importable, or undefined (then the large-file test is skipped). */
function torchPython(): string | undefined {
  const py = Deno.env.get("JOWA_PYTHON") ?? "python3";
  try {
    const r = new Deno.Command(py, { args: ["-c", "import torch"], stdout: "null", stderr: "null" })
      .outputSync();
    return r.success ? py : undefined;
  } catch {
    return undefined;
  }
}
const PY = torchPython();

Deno.test({
  name: "torch checkpoint: a 40 MB checkpoint is read tensor by tensor, never whole",
  ignore: PY === undefined,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const path = join(dir, "big.pt");
      const script = `
import collections, sys, torch
sd = collections.OrderedDict()
for i in range(9):
    sd[f"layer{i}.weight"] = torch.arange(1 << 20, dtype=torch.float32) * (i + 1)
sd["big_t"] = torch.arange(1000 * 1000, dtype=torch.float32).reshape(1000, 1000).t()
torch.save(sd, sys.argv[1])
`;
      const r = await new Deno.Command(PY!, { args: ["-c", script, path], stderr: "piped" })
        .output();
      assert.ok(r.success, new TextDecoder().decode(r.stderr));
      const fileSize = (await Deno.stat(path)).size;
      assert.ok(fileSize > 40e6, `${fileSize}`);

      using ckpt = await openTorchCheckpoint(path);
      assert.equal(ckpt.tensors.length, 10);
      const afterOpen = ckpt.bytesRead;
      assert.ok(afterOpen < 200_000, `open read ${afterOpen} bytes`);

      const w3 = await ckpt.get("layer3.weight")!.readFloat32();
      assert.equal(w3.length, 1 << 20);
      assert.equal(w3[12345], 12345 * 4);
      const afterOne = ckpt.bytesRead - afterOpen;
      assert.ok(afterOne >= 4 << 20 && afterOne < (4 << 20) + 4096, `one tensor: ${afterOne}`);

      const t = await ckpt.get("big_t")!.readFloat32();
      assert.deepEqual(ckpt.get("big_t")!.shape, [1000, 1000]);
      for (const [i, j] of [[0, 0], [0, 1], [1, 0], [999, 998], [500, 7]]) {
        assert.equal(t[i * 1000 + j], j * 1000 + i, `big_t[${i}, ${j}]`);
      }
      assert.ok(ckpt.bytesRead < fileSize / 3, `read ${ckpt.bytesRead} of ${fileSize}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
