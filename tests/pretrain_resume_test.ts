/**
 * Checkpoint/resume and the non-finite guard of the pretraining loop (train/pretrainer.ts),
 * on tiny synthetic token stores (no tokenizer: stage 1 is the world part alone).
 *
 * Resume equivalence: a resumed run reloads the exact f32 weights, target head, AdamW moments
 * and step, and the sampler position, and dropout seeds come from the global step, so it runs
 * the same commands on the same values. Every kernel is deterministic (the embedding
 * gradient sums each row in position order after a GPU sort, kernels/ops/gather.ts, instead
 * of float atomics whose order varied run to run), so losses and grad norms must be equal
 * exactly: any difference means the resumed run computes something else.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { initRuntime } from "../kernels/core/runtime.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { loadWorldActionModel } from "../checkpoint/model_checkpoint.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import type { PretrainConfig } from "../train/pretrain_options.ts";
import { pretrain } from "../train/pretrainer.ts";
import type { StepValues } from "../train/loss_readback.ts";
import { RunDir } from "../checkpoint/run_dir.ts";
import { readTrainState } from "../checkpoint/train_checkpoint.ts";
import { tinyPretrainRun } from "./helpers/pretrain_stores.ts";

await initRuntime();
const { tmp, base } = await tinyPretrainRun("pretrain_resume_", {
  stage1Steps: 2,
  stage2Steps: 4,
  targetEvery: 2,
  logEvery: 1,
  seed: 3,
});
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));
const quiet = { log: () => {} };

async function run(cfg: PretrainConfig, resume: string | null, into: Map<number, StepValues>) {
  return await pretrain(cfg, resume, {
    ...quiet,
    onSteps: (s) => s.forEach((v) => into.set(v.step, v)),
  });
}

Deno.test("resumed runs compute the same losses as an uninterrupted run, bit for bit", async () => {
  const full = new Map<number, StepValues>();
  const a = await run({ ...base, name: "full" }, null, full);
  assert.equal(a.status, "done");
  assert.equal(full.size, 6);

  // Interrupted in stage 1 (resume crosses the stage switch), then in stage 2 after a target
  // copy (resume restores the stage-2 optimizer and the target head), then to the end.
  const parts = new Map<number, StepValues>();
  const r1 = await run({ ...base, name: "parts", stopAt: 1 }, null, parts);
  assert.equal(r1.status, "interrupted");
  assert.equal(readTrainState(r1.checkpoint!).step, 1);
  const dir = path.join(base.runsDir, "parts");
  const r2 = await run({ ...base, name: "parts", stopAt: 4 }, dir, parts);
  assert.equal(r2.status, "interrupted");
  assert.equal(readTrainState(r2.checkpoint!).stage, 2);
  const r3 = await run({ ...base, name: "parts" }, dir, parts);
  assert.equal(r3.status, "done");
  for (let step = 1; step <= 6; step++) {
    const got = parts.get(step)!, want = full.get(step)!;
    assert.deepEqual(Object.keys(got.losses), Object.keys(want.losses));
    for (const [k, v] of [...Object.entries(want.losses), ...Object.entries(want.gradNorm)]) {
      const g = got.losses[k] ?? got.gradNorm[k];
      assert.equal(g, v, `step ${step} ${k}: ${g} vs ${v}`);
    }
  }
  assert.ok(Number.isFinite(full.get(6)!.losses.td), "stage 2 has the TD part");
  // metrics.jsonl reads as one run: one line per step, steps 1..6 in order.
  const lines = fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n");
  assert.deepEqual(lines.map((l) => JSON.parse(l).step), [1, 2, 3, 4, 5, 6]);
});

Deno.test("a non-finite loss stops the run, names the part and step, keeps the last good checkpoint", async () => {
  const cfg = { ...base, name: "nan", logEvery: 2, ckptEvery: 2, injectNanAt: 3 };
  const r = await pretrain(cfg, null, quiet);
  assert.equal(r.status, "nonfinite");
  assert.equal(r.nonFinite!.step, 3);
  assert.equal(r.nonFinite!.part, "obs"); // first specific part, not the sums
  const run = new RunDir(path.join(base.runsDir, "nan"));
  const diag = JSON.parse(fs.readFileSync(run.nonfinite, "utf8"));
  assert.match(diag.message, /non-finite obs loss at step 3 \(stage 2\)/);
  // Step 4's checkpoint was never written; step 2's is intact, complete and finite.
  assert.deepEqual(run.completeCheckpoints().map((d) => path.basename(d)), ["step-000002"]);
  assert.equal(JSON.parse(fs.readFileSync(run.latest, "utf8")).step, 2);
  assert.equal(diag.lastGoodCheckpoint, run.checkpoint(2));
  const model = new WorldActionModel(
    worldActionConfig("tiny", { obsVocab: 16, timesteps: 2, seed: 3 }),
  );
  await loadWorldActionModel(path.join(run.checkpoint(2), "world_action.safetensors"), model);
  for (const [name, v] of await model.stateDict()) {
    assert.ok(v.data.every(Number.isFinite), `${name} is finite`);
  }
  // Resuming (without the injected fault) continues from step 2 to the end.
  const again = await pretrain({ ...cfg, injectNanAt: 0 }, run.root, quiet);
  assert.equal(again.status, "done");
  assert.equal(again.step, 6);
});
