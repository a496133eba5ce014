/**
 * Fine-tuning with the captured steps replayed (the default: stage 1's world-action step,
 * stage 2's mixed real + synthetic COMBO step) equals `--no-replay` bit for bit: the same
 * losses at every step and the same weights and AdamW moments at the end (tiny checkpoint,
 * Pong token store, dropout on). Losses are read back every 3 steps, so replay outputs must
 * be copied before the next replay; the log says how many steps each stage replayed.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { initRuntime } from "../kernels/core/runtime.ts";
import { BASE_CONFIG, type FinetuneConfig, parseFinetuneArgs } from "../train/finetune_options.ts";
import { finetune } from "../train/finetuner.ts";
import type { StepValues } from "../train/loss_readback.ts";
import { readSafetensors } from "../models/safetensors/mod.ts";
import { finetuneFixture, tinyFinetuneConfig } from "./helpers/finetune_fixture.ts";

await initRuntime();
const tmp = Deno.makeTempDirSync({ prefix: "finetune_replay_" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));
const { checkpoint, data } = await finetuneFixture(tmp);

const base = tinyFinetuneConfig({ checkpoint, data }, path.join(tmp, "runs"), {
  batch: 3,
  syntheticBatch: 1,
  steps: 12,
  realSteps: 5,
  targetEvery: 4,
  logEvery: 3,
  seed: 1,
});

async function run(cfg: FinetuneConfig) {
  const steps = new Map<number, StepValues>();
  const lines: string[] = [];
  const r = await finetune(cfg, null, {
    log: (s) => lines.push(s),
    onSteps: (s) => s.forEach((v) => steps.set(v.step, v)),
  });
  assert.equal(r.status, "done");
  return { steps, lines, ckpt: r.checkpoint! };
}

Deno.test("--no-replay parses to replay: false; replay is on by default", () => {
  assert.equal(parseFinetuneArgs(["--no-replay"]).overrides.replay, false);
  assert.equal(BASE_CONFIG.replay, true);
});

Deno.test("fine-tuning: replayed steps equal --no-replay bit for bit (both stages)", async () => {
  const eager = await run({ ...base, name: "eager", replay: false });
  const replay = await run({ ...base, name: "replay" });
  assert.ok(replay.lines.includes("stage 1: 2 of 5 steps replayed"), replay.lines.join("\n"));
  assert.ok(replay.lines.includes("stage 2: 4 of 7 steps replayed"), replay.lines.join("\n"));
  assert.ok(!eager.lines.some((l) => /replayed/.test(l)), "--no-replay replayed");
  assert.equal(eager.steps.size, 12);
  assert.ok("combo" in eager.steps.get(12)!.losses, "stage 2 ran");
  for (let step = 1; step <= 12; step++) {
    const want = eager.steps.get(step)!, got = replay.steps.get(step)!;
    assert.deepEqual(Object.keys(got.losses), Object.keys(want.losses));
    for (const [k, v] of [...Object.entries(want.losses), ...Object.entries(want.gradNorm)]) {
      const g = got.losses[k] ?? got.gradNorm[k];
      assert.equal(g, v, `step ${step} ${k}: replay ${g}, eager ${v}`);
    }
  }
  for (const file of ["world_action.safetensors", "optim_world_action.safetensors"]) {
    const [a, b] = await Promise.all(
      [eager.ckpt, replay.ckpt].map((c) => readSafetensors(path.join(c, file))),
    );
    assert.ok(a.tensors.size > 10, `${file}: ${a.tensors.size} tensors`);
    for (const [name, t] of a.tensors) {
      assert.deepEqual(b.tensors.get(name)!.toFloat32(), t.toFloat32(), `${file}: ${name}`);
    }
    if (file.startsWith("optim")) assert.equal(b.metadata?.step, a.metadata?.step);
  }
});
