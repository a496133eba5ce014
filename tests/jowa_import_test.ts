/**
 * The JOWA importer without the forward passes (those are in jowa_parity_model_test.ts):
 * robustness (truncated zip, a pickle naming os.system, an empty file, a wrong dtype, the
 * state dict of another model, swapped files, an existing --out: one clear error each and
 * nothing written), ONE error listing every missing, misshapen and unknown key, prefix
 * stripping, the LPIPS name mapping (on a synthetic source with the names and shapes their
 * tokenizer holds, tokenizer_lpips_keys.json), the GPU-free tokenizer spec against the module,
 * the orthogonal init, and the CLI.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { initRuntime } from "../kernels/core/runtime.ts";
import { InitRng } from "../kernels/nn/layers.ts";
import { openTorchCheckpoint, type TorchDtype } from "../models/torch/mod.ts";
import { headsFor, importJowaCheckpoint, JowaImportError } from "../checkpoint/import_jowa.ts";
import {
  checkpointSource,
  type Source,
  type SourceTensor,
  stripPrefixes,
} from "../checkpoint/jowa_source.ts";
import { inferWorldConfig, planWorldModel } from "../checkpoint/jowa_world_map.ts";
import { inferTokenizerConfig, lpipsName, planLpips } from "../checkpoint/jowa_tokenizer_map.ts";
import { lpipsParameterShapes } from "../models/tokenizer/lpips.ts";
import { targetQSpec, worldActionParamSpec } from "../models/world_action/spec.ts";
import { tokenizerParamSpec } from "../models/tokenizer/spec.ts";
import { Tokenizer } from "../models/tokenizer/model.ts";
import { TINY_TOKENIZER } from "../models/tokenizer/config.ts";
import { orthogonal } from "../models/tokenizer/orthogonal_init.ts";
import { JOWA_FIXTURES } from "./helpers/jowa_fixtures.ts";

await initRuntime();

const WORLD = JOWA_FIXTURES + "world_model.pt";
const TOK = JOWA_FIXTURES + "tokenizer.pt";
const TORCH = new URL("./fixtures/torch/", import.meta.url).pathname;
const WRONG_DTYPE = new URL("./fixtures/jowa_import/wrong_dtype.pt", import.meta.url).pathname;

/** Run an import expected to fail; returns the error. Checks nothing was left behind. */
async function failedImport(world: string, tok: string, opts = { heads: 2 }): Promise<Error> {
  const parent = Deno.makeTempDirSync({ prefix: "jowa_import_" });
  const out = path.join(parent, "out");
  try {
    await importJowaCheckpoint(world, tok, out, opts);
  } catch (e) {
    assert.ok(!fs.existsSync(out), "an output directory was written");
    assert.deepEqual(fs.readdirSync(parent), [], "a temporary directory was left behind");
    return e as Error;
  } finally {
    fs.rmSync(parent, { recursive: true, force: true });
  }
  throw new Error("the import succeeded");
}

/** The fixture world model's source, with edits. */
async function editedWorldSource(edit: (m: Map<string, SourceTensor>) => void): Promise<Source> {
  const ckpt = await openTorchCheckpoint(WORLD);
  const src = new Map(checkpointSource(ckpt));
  edit(src);
  return src;
}

Deno.test("jowa import: a truncated zip, an empty file, os.system: one clear error each", async () => {
  const truncated = await failedImport(TORCH + "truncated.pt", TOK);
  assert.match(truncated.message, /truncated\.pt: /);
  assert.equal(truncated.message.split("\n").length, 1);
  const empty = await failedImport(TORCH + "empty.pt", TOK);
  assert.match(empty.message, /empty\.pt: empty file/);
  const evil = await failedImport(WORLD, TORCH + "os_system.pt");
  assert.match(evil.message, /os_system\.pt: .*(os|posix).*system/);
});

Deno.test("jowa import: another model's state dict, swapped files", async () => {
  const other = await failedImport(TORCH + "module_state.pt", TOK);
  assert.ok(other instanceof JowaImportError);
  assert.match(other.message, /module_state\.pt: not a JOWA world-action state dict: missing/);
  const swapped = await failedImport(TOK, WORLD);
  assert.match(swapped.message, /tokenizer\.pt: not a JOWA world-action state dict/);
  const tokAsWorld = await failedImport(WORLD, WORLD);
  assert.match(tokAsWorld.message, /world_model\.pt: not a JOWA tokenizer state dict/);
});

Deno.test("jowa import: a parameter of integer dtype is refused (a float16 one converted)", async () => {
  const e = await failedImport(WRONG_DTYPE, TOK);
  assert.ok(e instanceof JowaImportError);
  assert.deepEqual(e.problems, [
    "'pos_emb.weight' is I64, expected a floating dtype (F32, F16, BF16)",
  ]);
});

Deno.test("jowa import: missing, misshapen and unknown keys in ONE error", async () => {
  const src = await editedWorldSource((m) => {
    m.delete("transformer.blocks.1.attn.key.bias");
    const w = m.get("head_ends.head_module.0.weight")!;
    m.set("head_ends.head_module.0.weight", { ...w, shape: [64, 63], name: w.name });
    const b = m.get("transformer.ln_f.bias")!;
    m.set("transformer.extra.weight", { ...b, name: "transformer.extra.weight" });
  });
  const cfg = inferWorldConfig("w.pt", src, { heads: 2 });
  try {
    planWorldModel("w.pt", src, cfg);
    assert.fail("no error");
  } catch (e) {
    assert.ok(e instanceof JowaImportError);
    assert.deepEqual([...e.problems].sort(), [
      "'head_ends.head_module.0.weight' has shape [64,63], expected [64,64]",
      "missing 'transformer.blocks.1.attn.key.bias' [64]",
      "unexpected 'transformer.extra.weight' [64]",
    ]);
    assert.match(e.message, /^w\.pt: 3 problems:\n {2}/);
  }
});

Deno.test("jowa import: module. / _orig_mod. prefixes are stripped; buffers dropped", async () => {
  assert.equal(stripPrefixes("_orig_mod.module.head_q.indices"), "head_q.indices");
  assert.equal(stripPrefixes("module._orig_mod.pos_emb.weight"), "pos_emb.weight");
  const plain = await editedWorldSource(() => {});
  const wrapped: Source = new Map(
    [...plain].map(([k, t]) => [k, { ...t, readFloat32: t.readFloat32, name: `module.${k}` }]),
  );
  const prefixed = new Map([...wrapped.values()].map((t) => [stripPrefixes(t.name), t]));
  const cfg = inferWorldConfig("w.pt", prefixed, { heads: 2 });
  const mapped = planWorldModel("w.pt", prefixed, cfg);
  assert.ok(plain.has("head_q.indices"), "the fixture keeps the index buffers");
  assert.equal(mapped.length, worldActionParamSpec(cfg).length + targetQSpec(cfg).length);
  // qkv is cat([query, key, value], 0).
  const qkv = mapped.find((m) => m.name === "blocks.0.attn.qkv.weight")!;
  const got = await qkv.read();
  const q = await plain.get("transformer.blocks.0.attn.query.weight")!.readFloat32();
  const k = await plain.get("transformer.blocks.0.attn.key.weight")!.readFloat32();
  const v = await plain.get("transformer.blocks.0.attn.value.weight")!.readFloat32();
  assert.deepEqual(got, Float32Array.from([...q, ...k, ...v]));
  // Target member 1's output bias is slice 1 of head_q_target params.9.
  const tb = await mapped.find((m) => m.name === "target_q.1.out.bias")!.read();
  const p9 = await plain.get("head_q_target.head_module.params.9")!.readFloat32();
  assert.deepEqual(tb, p9.slice(918, 1836));
});

Deno.test("jowa import: heads from --heads, a meta.json beside the file, else width / 64", () => {
  assert.equal(headsFor(WORLD, {}), 2, "the fixture's meta.json: 2 heads at width 64");
  assert.equal(headsFor(WORLD, { heads: 4 }), 4);
  assert.equal(headsFor(WRONG_DTYPE, {}), undefined);
});

Deno.test("jowa import: an existing --out is refused", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    await assert.rejects(importJowaCheckpoint(WORLD, TOK, dir, { heads: 2 }), /already exists/);
    assert.deepEqual(fs.readdirSync(dir), []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** A synthetic source with their lpips.* names and shapes (values: the key's index). */
function lpipsSource(drop?: string): Source {
  const json = JSON.parse(Deno.readTextFileSync(JOWA_FIXTURES + "tokenizer_lpips_keys.json"));
  const src: Source = new Map();
  (json.keys as [string, number[], string][]).forEach(([name, shape], i) => {
    if (name === drop) return;
    const n = shape.reduce((a, b) => a * b, 1);
    src.set(name, {
      name,
      dtype: "F32" as TorchDtype,
      shape,
      readFloat32: () => Promise.resolve(new Float32Array(n).fill(i)),
    });
  });
  return src;
}

Deno.test("jowa import: their lpips.* names and shapes map onto our LPIPS weights", async () => {
  assert.equal(lpipsName("lpips.net.slice3.14.bias"), "vgg.features.14.bias");
  assert.equal(lpipsName("lpips.lin4.model.1.weight"), "lin4.weight");
  assert.equal(lpipsName("lpips.scaling_layer.shift"), null);
  assert.equal(lpipsName("lpips.net.slice9.1.weight"), undefined);
  const mapped = planLpips("tok.pt", lpipsSource())!;
  const ours = lpipsParameterShapes();
  assert.deepEqual(mapped.map((m) => m.name), [...ours.keys()]);
  for (const m of mapped) assert.deepEqual(m.shape, ours.get(m.name));
  // vgg.features.0.weight is their third key (after the two scaling constants).
  assert.equal((await mapped[0].read())[0], 2);
  assert.equal(planLpips("tok.pt", new Map()), null);
  assert.throws(
    () => planLpips("tok.pt", lpipsSource("lpips.lin2.model.1.weight")),
    /tok\.pt: missing LPIPS tensor for our 'lin2\.weight'/,
  );
});

Deno.test("tokenizer spec: names and shapes equal the module's (fixture config and tiny)", async () => {
  const ckpt = await openTorchCheckpoint(TOK);
  const cfg = inferTokenizerConfig(TOK, checkpointSource(ckpt));
  ckpt.close();
  for (const c of [cfg, TINY_TOKENIZER]) {
    const tok = new Tokenizer(c);
    const got = tok.namedParameters().map(([n, p]) => `${n}[${p.shape}]`);
    assert.deepEqual(tokenizerParamSpec(c).map((s) => `${s.name}[${s.shape}]`), got);
  }
});

Deno.test("orthogonal init: W W^T = 2 I (wide) and W^T W = 2 I (tall); a tokenizer uses it", async () => {
  for (const [r, c] of [[5, 12], [12, 5], [6, 6]]) {
    const w = orthogonal(r, c, Math.SQRT2, new InitRng(3));
    const small = Math.min(r, c);
    for (let i = 0; i < small; i++) {
      for (let j = 0; j < small; j++) {
        let dot = 0;
        for (let k = 0; k < Math.max(r, c); k++) {
          dot += r <= c ? w[i * c + k] * w[j * c + k] : w[k * c + i] * w[k * c + j];
        }
        assert.ok(Math.abs(dot - (i === j ? 2 : 0)) < 1e-5, `[${r},${c}] (${i},${j}) = ${dot}`);
      }
    }
  }
  const tok = new Tokenizer({ ...TINY_TOKENIZER, init: "orthogonal" });
  const w = await tok.encoder.convOut.weight.read(); // [16, 8 * 9]: wide
  let diag = 0;
  for (let k = 0; k < 72; k++) diag += w[k] * w[k];
  assert.ok(Math.abs(diag - 2) < 1e-5, `row norm^2 ${diag}`);
  assert.deepEqual(Array.from(await tok.encoder.convOut.bias.read()), new Array(16).fill(0));
});

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "checkpoint/import_cli.ts", ...args],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  });
  const r = await cmd.output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

Deno.test("deno task import: --help, usage errors, a failed and a successful import", async () => {
  const help = await cli("--help");
  assert.equal(help.code, 0);
  assert.match(help.out, /--world FILE/);
  assert.equal((await cli("--world", WORLD)).code, 2);
  const parent = Deno.makeTempDirSync({ prefix: "jowa_cli_" });
  try {
    const bad = await cli(
      "--world",
      TORCH + "module_state.pt",
      "--tokenizer",
      TOK,
      "--out",
      path.join(parent, "x"),
    );
    assert.equal(bad.code, 1);
    assert.match(bad.err, /^import: .*module_state\.pt: not a JOWA world-action state dict/);
    const out = path.join(parent, "ok");
    const ok = await cli("--world", WORLD, "--tokenizer", TOK, "--out", out, "--heads", "2");
    assert.equal(ok.code, 0, ok.err);
    assert.deepEqual(fs.readdirSync(out).sort(), [
      "import.json",
      "tokenizer.safetensors",
      "world_action.safetensors",
    ]);
    assert.match(ok.err, /world_model\.pt: 100%/);
  } finally {
    Deno.removeSync(parent, { recursive: true });
  }
});
