/**
 * Pretraining with the captured step replayed (the default) equals `--no-replay` (every step
 * eager) bit for bit: the same losses at every step and the same weights, target head and
 * AdamW moments at the end, on tiny token stores through both stages (dropout on, so the
 * replayed dropout seeds must follow the step). Losses are read back every 3 steps, so a
 * replay's outputs must have been copied before the next replay overwrites them. The log
 * says how many steps each stage replayed: the test fails if nothing was replayed.
 *
 * Bit-exact because every kernel is deterministic (the embedding gradient's scatter-add sorts
 * its rows, kernels/ops/gather.ts) and a replay runs the recorded commands of the eager step.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { initRuntime } from "../kernels/core/runtime.ts";
import {
  DEFAULT_CONFIG,
  parsePretrainArgs,
  type PretrainConfig,
} from "../train/pretrain_options.ts";
import { pretrain } from "../train/pretrainer.ts";
import type { StepValues } from "../train/loss_readback.ts";
import { readSafetensors } from "../models/safetensors/mod.ts";
import { tinyPretrainRun } from "./helpers/pretrain_stores.ts";

await initRuntime();
const { tmp, base } = await tinyPretrainRun("pretrain_replay_", {
  stage1Steps: 6,
  stage2Steps: 7,
  targetEvery: 3,
  logEvery: 3,
  seed: 4,
});
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

async function run(cfg: PretrainConfig) {
  const steps = new Map<number, StepValues>();
  const lines: string[] = [];
  const r = await pretrain(cfg, null, {
    log: (s) => lines.push(s),
    onSteps: (s) => s.forEach((v) => steps.set(v.step, v)),
  });
  assert.equal(r.status, "done");
  return { steps, lines, ckpt: r.checkpoint! };
}

Deno.test("--no-replay parses to replay: false; replay is on by default", () => {
  assert.equal(parsePretrainArgs(["--no-replay"]).overrides.replay, false);
  assert.equal(DEFAULT_CONFIG.replay, true);
  assert.equal(parsePretrainArgs(["--resume", "x", "--no-replay"]).overrides.replay, false);
});

Deno.test("pretraining: replayed steps equal --no-replay bit for bit (losses, weights, moments)", async () => {
  const eager = await run({ ...base, name: "eager", replay: false });
  const replay = await run({ ...base, name: "replay" });
  // Calls 1-3 of each stage run eagerly or record; the rest replay.
  assert.ok(replay.lines.includes("stage 1: 3 of 6 steps replayed"), replay.lines.join("\n"));
  assert.ok(replay.lines.includes("stage 2: 4 of 7 steps replayed"), replay.lines.join("\n"));
  assert.ok(!eager.lines.some((l) => /replayed/.test(l)), "--no-replay replayed");
  assert.equal(eager.steps.size, 13);
  for (let step = 1; step <= 13; step++) {
    const want = eager.steps.get(step)!, got = replay.steps.get(step)!;
    assert.deepEqual(Object.keys(got.losses), Object.keys(want.losses));
    for (const [k, v] of [...Object.entries(want.losses), ...Object.entries(want.gradNorm)]) {
      const g = got.losses[k] ?? got.gradNorm[k];
      assert.equal(g, v, `step ${step} ${k}: replay ${g}, eager ${v}`);
    }
  }
  assert.ok(Number.isFinite(eager.steps.get(13)!.losses.td), "stage 2 ran");
  for (const file of ["world_action.safetensors", "optim_world_action.safetensors"]) {
    const [a, b] = await Promise.all(
      [eager.ckpt, replay.ckpt].map((c) => readSafetensors(path.join(c, file))),
    );
    assert.deepEqual([...b.tensors.keys()], [...a.tensors.keys()]);
    assert.ok(a.tensors.size > 10, `${file}: ${a.tensors.size} tensors`);
    for (const [name, t] of a.tensors) {
      assert.deepEqual(b.tensors.get(name)!.toFloat32(), t.toFloat32(), `${file}: ${name}`);
    }
  }
  // AdamW's step counter advanced on every replayed step too (it sets bias correction).
  const steps = await Promise.all(
    [eager.ckpt, replay.ckpt].map(async (c) =>
      (await readSafetensors(path.join(c, "optim_world_action.safetensors"))).metadata?.step
    ),
  );
  assert.deepEqual(steps, ["7", "7"]);
});
