/**
 * Broken checkpoints fail in one line that names the file and the problem, before anything
 * is evaluated or written: config metadata that is not JSON, world-action and tokenizer files
 * swapped, a config field of the wrong type, and non-finite weights (the first bad tensor is
 * named). Through `deno task eval` (exit status, stderr, no results written, earlier results
 * intact) and the library calls.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { initRuntime } from "../kernels/core/runtime.ts";
import { readSafetensors, type TensorInput, writeSafetensors } from "../models/safetensors/mod.ts";
import { checkCheckpoint, CheckpointError, loadCheckpoint } from "../checkpoint/loader.ts";
import { firstNonFiniteF32, loadWorldActionModel } from "../checkpoint/model_checkpoint.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { TINY_TOKENIZER } from "../models/tokenizer/config.ts";
import { writeTinyCheckpoint } from "./helpers/eval_tiny_checkpoint.ts";

const EVAL = new URL("../eval/evaluate.ts", import.meta.url).pathname;
const WAM = "world_action.safetensors";
const TOK = "tokenizer.safetensors";

await initRuntime();
const tmp = Deno.makeTempDirSync({ prefix: "jowa-reliability-ckpt-" });
globalThis.addEventListener("unload", () => fs.rmSync(tmp, { recursive: true, force: true }));
const good = await writeTinyCheckpoint(path.join(tmp, "good"));

/** Copy `src` to `dst`, changing the metadata and/or one element of one tensor. */
async function rewrite(
  src: string,
  dst: string,
  edit: { metadata?: Record<string, string>; poison?: [string, number, number] },
): Promise<void> {
  const f = await readSafetensors(src);
  const tensors = new Map<string, TensorInput>();
  for (const [n, t] of f.tensors) {
    const data = t.toFloat32();
    if (edit.poison?.[0] === n) data[edit.poison[1]] = edit.poison[2];
    tensors.set(n, { dtype: "F32", shape: t.shape, data });
  }
  await writeSafetensors(dst, tensors, { ...f.metadata, ...edit.metadata });
}

/** A checkpoint directory like `good` with the given files replaced by `make`. */
async function variant(
  name: string,
  make: (dir: string) => Promise<void>,
): Promise<string> {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of [WAM, TOK]) fs.copyFileSync(path.join(good, f), path.join(dir, f));
  await make(dir);
  return dir;
}

const swapped = await variant("swapped", async (d) => {
  fs.copyFileSync(path.join(good, TOK), path.join(d, WAM));
  fs.copyFileSync(path.join(good, WAM), path.join(d, TOK));
  await Promise.resolve();
});
const notJson = await variant(
  "not_json",
  (d) => rewrite(path.join(good, WAM), path.join(d, WAM), { metadata: { config: "{layers: 2," } }),
);
const badField = await variant(
  "bad_field",
  (d) =>
    rewrite(path.join(good, TOK), path.join(d, TOK), {
      metadata: { config: JSON.stringify({ ...TINY_TOKENIZER, ch: "8" }) },
    }),
);
const firstWam = (await readSafetensors(path.join(good, WAM))).tensors.keys().next().value!;
// A name late in the file, so the check cannot be passing on the first tensor alone.
const nanName = [...(await readSafetensors(path.join(good, WAM))).tensors.keys()].at(-2)!;
const nanWam = await variant(
  "nan_wam",
  (d) => rewrite(path.join(good, WAM), path.join(d, WAM), { poison: [nanName, 3, NaN] }),
);
const tokName = [...(await readSafetensors(path.join(good, TOK))).tensors.keys()][5];
const infTok = await variant(
  "inf_tok",
  (d) => rewrite(path.join(good, TOK), path.join(d, TOK), { poison: [tokName, 0, -Infinity] }),
);

const CASES: { name: string; dir: string; file: string; want: RegExp }[] = [
  {
    name: "swapped files",
    dir: swapped,
    file: WAM,
    want: /expected a world-action model checkpoint, but it holds a tokenizer \(files swapped\?\)/,
  },
  { name: "config not JSON", dir: notJson, file: WAM, want: /config metadata is not valid JSON/ },
  {
    name: "config field of the wrong type",
    dir: badField,
    file: TOK,
    want: /bad stored config: tokenizer config field 'ch' is a string/,
  },
  {
    name: "NaN weight",
    dir: nanWam,
    file: WAM,
    want: new RegExp(`tensor '${nanName.replaceAll(".", "\\.")}' holds a non-finite value \\(NaN`),
  },
  {
    name: "-Infinity weight",
    dir: infTok,
    file: TOK,
    want: new RegExp(`tensor '${tokName.replaceAll(".", "\\.")}' holds a non-finite value`),
  },
];

function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of fs.readdirSync(dir)) {
    out.set(f, fs.readFileSync(path.join(dir, f)).toString("base64"));
  }
  return out;
}

Deno.test("deno task eval: a broken checkpoint is one line naming the file; nothing written", async () => {
  for (const c of CASES) {
    const out = path.join(tmp, `out_${c.dir.split("/").at(-1)}`);
    fs.mkdirSync(out, { recursive: true });
    // An earlier evaluation's results in the same --out stay as they were.
    fs.writeFileSync(path.join(out, "results.json"), '{"earlier": true}\n');
    const before = snapshot(c.dir);
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", EVAL, "--checkpoint", c.dir, "--games", "Pong", "--episodes", "1"]
        .concat(["--max-frames", "20", "--out", out, "--quiet"]),
      env: { JOWA_ALLOW_GL: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(r.stderr);
    const lines = stderr.trim().split("\n").filter((l) => !/XDG_RUNTIME_DIR/.test(l));
    assert.equal(r.code, 1, `${c.name}: status ${r.code}\n${stderr}`);
    assert.equal(lines.length, 1, `${c.name}: one line, got ${JSON.stringify(lines)}`);
    assert.ok(
      lines[0].startsWith(`error: ${path.join(c.dir, c.file)}: `),
      `${c.name}: ${lines[0]}`,
    );
    assert.match(lines[0], c.want, c.name);
    assert.deepEqual(fs.readdirSync(out), ["results.json"], `${c.name}: nothing new in --out`);
    assert.equal(fs.readFileSync(path.join(out, "results.json"), "utf8"), '{"earlier": true}\n');
    assert.deepEqual(snapshot(c.dir), before, `${c.name}: checkpoint files untouched`);
  }
});

Deno.test("library: loadCheckpoint and checkCheckpoint throw CheckpointError naming the file", async () => {
  for (const c of CASES) {
    await assert.rejects(loadCheckpoint(c.dir), (e: Error) => {
      assert.ok(e instanceof CheckpointError, `${c.name}: ${e.name}: ${e.message}`);
      assert.ok(e.message.startsWith(`${path.join(c.dir, c.file)}: `), e.message);
      assert.match(e.message, c.want);
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    });
  }
  // Config problems are found from the headers alone (before any GPU work).
  await assert.rejects(checkCheckpoint(swapped), /files swapped/);
  await assert.rejects(checkCheckpoint(notJson), /not valid JSON/);
  const ok = await checkCheckpoint(nanWam); // weights are not read here
  assert.equal(ok.worldAction.obsVocab, TINY_TOKENIZER.vocab);
  const loaded = await loadCheckpoint(good);
  assert.equal(loaded.worldAction.cfg.name, "tiny");
});

Deno.test("library: loadWorldActionModel refuses a NaN weight and assigns nothing", async () => {
  const model = new WorldActionModel(worldActionConfig("tiny", { obsVocab: 64, seed: 9 }));
  const first = model.namedParameters().find(([n]) => n === firstWam)![1];
  const before = await first.read();
  await assert.rejects(
    loadWorldActionModel(path.join(nanWam, WAM), model),
    new RegExp(`'${nanName.replaceAll(".", "\\.")}' holds a non-finite value`),
  );
  assert.deepEqual(await first.read(), before, "the first tensor was not overwritten");
  await assert.rejects(
    loadWorldActionModel(path.join(swapped, WAM), model),
    /but it holds a tokenizer/,
  );
});

Deno.test("firstNonFiniteF32 agrees with Number.isFinite on any bit pattern, unaligned too", () => {
  const n = 4096;
  const bytes = new Uint8Array(4 * n + 1);
  let s = 12345;
  for (let i = 0; i < bytes.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    bytes[i] = s >>> 24;
  }
  for (const off of [0, 1]) {
    const view = bytes.subarray(off, off + 4 * n);
    const dv = new DataView(view.buffer, view.byteOffset, view.byteLength);
    let want = -1;
    for (let i = 0; i < n && want < 0; i++) {
      if (!Number.isFinite(dv.getFloat32(4 * i, true))) want = i;
    }
    assert.ok(want >= 0, "random bits hit a non-finite value");
    assert.equal(firstNonFiniteF32(view), want);
  }
  const edge = new Float32Array([3.4028234663852886e38, -0, 1e-45, -3.4028234663852886e38]);
  assert.equal(firstNonFiniteF32(new Uint8Array(edge.buffer)), -1);
  for (const v of [NaN, Infinity, -Infinity]) {
    assert.equal(firstNonFiniteF32(new Uint8Array(new Float32Array([1, 2, v]).buffer)), 2);
  }
});
