/**
 * `--lpips FILE` (train/pretrain_options.ts -> train/tokenizer_stage.ts `loadPerceptual`):
 * a randomly initialised full LPIPS-VGG16 weights file (the documented names and shapes, as
 * tests/lpips_test.ts writes it) puts the perceptual term into the stage-1 tokenizer loss of a
 * one-step run on frame data; a missing or malformed file is a one-line error naming it.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { writeSafetensors } from "../models/safetensors/mod.ts";
import { lpipsParameterShapes } from "../models/tokenizer/lpips.ts";
import { openStoreWriter } from "../offline/writer.ts";
import { minimalActionsOf } from "../offline/mod.ts";
import { DEFAULT_CONFIG, parsePretrainArgs } from "../train/pretrain_options.ts";
import { pretrain } from "../train/pretrainer.ts";
import { loadPerceptual } from "../train/tokenizer_stage.ts";
import type { StepValues } from "../train/loss_readback.ts";
import { rng } from "./helpers/reference.ts";

const tmp = Deno.makeTempDirSync({ prefix: "pretrain_lpips_" });

/** Random LPIPS weights: He-scaled convolutions, small biases, positive heads. */
async function writeRandomLpips(file: string): Promise<void> {
  const r = rng(4);
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const [name, shape] of lpipsParameterShapes()) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const bound = name.startsWith("lin") ? 0 : Math.sqrt(6 / (shape[1] * 9));
    for (let i = 0; i < n; i++) {
      data[i] = name.startsWith("lin")
        ? r()
        : name.endsWith("bias")
        ? 0.1 * (r() - 0.5)
        : (2 * r() - 1) * bound;
    }
    tensors[name] = { dtype: "F32", shape, data };
  }
  await writeSafetensors(file, tensors);
}

async function writeFrameStore(root: string): Promise<string> {
  const w = await openStoreWriter(path.join(root, "Pong"), {
    game: "Pong",
    minimalActions: minimalActionsOf("Pong"),
    source: {},
  });
  const T = 6, r = rng(2);
  await w.addEpisode({
    frames: Uint8Array.from({ length: T * 84 * 84 }, () => Math.floor(r() * 256)),
    actions: new Uint8Array(T).fill(3),
    rewards: new Float32Array(T),
    terminals: new Uint8Array(T).map((_, t) => (t === T - 1 ? 1 : 0)),
    truncated: false,
  });
  await w.close();
  return root;
}

Deno.test("--lpips: parsed into the config; a bad file is a one-line error naming it", async () => {
  assert.equal(parsePretrainArgs(["--lpips", "w.safetensors"]).overrides.lpips, "w.safetensors");
  assert.equal(DEFAULT_CONFIG.lpips, null);
  assert.equal(await loadPerceptual(null), undefined);
  const bad = path.join(tmp, "bad.safetensors");
  await writeSafetensors(bad, { x: { dtype: "F32", shape: [1], data: new Float32Array(1) } });
  await assert.rejects(loadPerceptual(bad), (e: Error) => {
    assert.match(e.message, new RegExp(`^--lpips ${bad}: `));
    assert.ok(!e.message.includes("\n"));
    return true;
  });
});

Deno.test("--lpips: stage 1 trains the tokenizer with the perceptual term (full random VGG16)", async () => {
  const lpips = path.join(tmp, "lpips_random.safetensors");
  await writeRandomLpips(lpips);
  const data = await writeFrameStore(path.join(tmp, "data"));
  const seen: StepValues[] = [];
  const res = await pretrain(
    {
      ...DEFAULT_CONFIG,
      name: "lpips",
      runsDir: path.join(tmp, "runs"),
      data,
      lpips,
      batch: 1,
      segmentLength: 2,
      tokenizerBatch: 1,
      stage1Steps: 1,
      stage2Steps: 0,
      logEvery: 1,
      ckptEvery: 100,
      workers: 0,
      report: false,
    },
    null,
    { log: () => {}, onSteps: (s) => seen.push(...s) },
  );
  assert.equal(res.status, "done");
  assert.equal(seen.length, 1);
  const p = seen[0].losses.tok_perceptual;
  assert.ok(Number.isFinite(p) && p > 0, `tok_perceptual ${p}`);
});
