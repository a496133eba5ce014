/**
 * `deno task finetune` end to end at tiny sizes: a tiny checkpoint made here
 * (tests/helpers/eval_tiny_checkpoint.ts), Pong frames collected with a scripted policy,
 * stage 1 (real data, CQL) then stage 2 (planning synthesis, 2 real + 1 synthetic, COMBO),
 * periodic evaluation on the real game with planning and a tiny episode cap, the best snapshot
 * written; a run interrupted in stage 2 and resumed computes the same losses as an
 * uninterrupted one; and bad inputs fail with one clear error each, writing nothing.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { initRuntime } from "../kernels/core/runtime.ts";
import { collect } from "../offline/collector.ts";
import { worldActionConfig } from "../models/world_action/configs.ts";
import { WorldActionModel } from "../models/world_action/model.ts";
import { saveModule, saveWorldActionModel } from "../checkpoint/model_checkpoint.ts";
import { TINY_TOKENIZER, Tokenizer } from "../models/tokenizer/model.ts";
import { readTrainState } from "../checkpoint/train_checkpoint.ts";
import { BASE_CONFIG, type FinetuneConfig, parseFinetuneArgs } from "../train/finetune_options.ts";
import { finetune } from "../train/finetuner.ts";
import type { StepValues } from "../train/loss_readback.ts";
import { writeTinyCheckpoint } from "./helpers/eval_tiny_checkpoint.ts";

await initRuntime();
const tmp = Deno.makeTempDirSync({ prefix: "finetune_e2e_" });
const ckpt = await writeTinyCheckpoint(path.join(tmp, "ckpt"), 2);
let k = 0;
// Scripted: the paddle sweeps up and down (RIGHT 3 / LEFT 4 in the full action set).
const sweep = ({ games }: { games: string[] }) => games.map(() => (k++ % 8 < 4 ? 3 : 4));
await collect({
  out: path.join(tmp, "data"),
  games: ["Pong"],
  steps: 120,
  envsPerGame: 1,
  seed: 3,
  policy: sweep,
  epsilon: 0,
  maxEpisodeFrames: 200,
});
const data = path.join(tmp, "data");

const base: FinetuneConfig = {
  ...BASE_CONFIG,
  checkpoint: ckpt,
  game: "Pong",
  data,
  name: "full",
  runsDir: path.join(tmp, "runs"),
  batch: 3,
  syntheticBatch: 1,
  segmentLength: 4,
  steps: 6,
  realSteps: 3,
  bufferCapacity: 16,
  tokenizerBatch: 2,
  targetEvery: 2,
  evalEvery: 3,
  evalEpisodes: 1,
  evalMaxFrames: 24,
  logEvery: 1,
  ckptEvery: 100,
  workers: 0,
  seed: 1,
};
const quiet = { log: () => {} };

async function run(cfg: FinetuneConfig, resume: string | null, into: Map<number, StepValues>) {
  return await finetune(cfg, resume, {
    ...quiet,
    onSteps: (s) => s.forEach((v) => into.set(v.step, v)),
  });
}

Deno.test("tiny fine-tune: both stages, periodic evaluation, best snapshot, report", async () => {
  const full = new Map<number, StepValues>();
  const r = await run({ ...base }, null, full);
  assert.equal(r.status, "done");
  assert.equal(full.size, 6);
  assert.ok("cql" in full.get(3)!.losses && !("combo" in full.get(3)!.losses), "stage 1: CQL");
  assert.ok("combo" in full.get(4)!.losses && !("cql" in full.get(4)!.losses), "stage 2: COMBO");
  assert.ok("tok_recon" in full.get(5)!.losses, "the tokenizer trains");
  for (const v of full.values()) {
    for (const [name, x] of Object.entries(v.losses)) assert.ok(Number.isFinite(x), name);
  }
  const root = path.join(base.runsDir, "full");
  const evals = fs.readFileSync(path.join(root, "evals.jsonl"), "utf8").trim().split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(evals.map((e) => e.step), [3, 6]);
  assert.ok(r.best && evals.some((e) => e.step === r.best!.step));
  assert.equal(r.best!.meanReturn, Math.max(...evals.map((e) => e.meanReturn)));
  // The best snapshot: weights deno task eval can load, results in its format.
  for (
    const f of ["world_action.safetensors", "tokenizer.safetensors", "results.md", "best.json"]
  ) {
    assert.ok(fs.existsSync(path.join(root, "best", f)), f);
  }
  const res = JSON.parse(fs.readFileSync(path.join(root, "best", "results.json"), "utf8"));
  assert.equal(res.games[0].game, "Pong");
  assert.equal(typeof res.results.games[0].dqnNormalized, "number");
  assert.ok(fs.existsSync(path.join(root, "evals", "step-000003", "results.json")));
  const html = fs.readFileSync(path.join(root, "report.html"), "utf8");
  assert.match(html, /Synthetic segments \(decoded tokens\)/);
  assert.match(html, /Evaluations on the real game/);
  // The synthetic buffer travels in the stage-2 checkpoint.
  assert.ok(fs.existsSync(path.join(r.checkpoint!, "synthetic_buffer.bin")));

  // Interrupted in stage 2 (after synthesis filled the buffer), resumed to the end.
  const parts = new Map<number, StepValues>();
  const cfg = { ...base, name: "parts" };
  const r1 = await run({ ...cfg, stopAt: 4 }, null, parts);
  assert.equal(r1.status, "interrupted");
  assert.equal(readTrainState(r1.checkpoint!).stage, 2);
  const r2 = await run(cfg, path.join(base.runsDir, "parts"), parts);
  assert.equal(r2.status, "done");
  for (let step = 1; step <= 6; step++) {
    const got = parts.get(step)!, want = full.get(step)!;
    assert.deepEqual(Object.keys(got.losses), Object.keys(want.losses));
    for (const [key, v] of [...Object.entries(want.losses), ...Object.entries(want.gradNorm)]) {
      const g = got.losses[key] ?? got.gradNorm[key];
      assert.ok(Math.abs(g - v) <= 1e-5 * Math.abs(v) + 1e-7, `step ${step} ${key}: ${g} vs ${v}`);
    }
  }
});

Deno.test("tiny fine-tune for 100 steps: stable, both evaluations, the world loss falls", async () => {
  // The short run above checks every piece; this one checks that they hold over a longer run:
  // 100 steps, 30 on real data then 70 with synthesis and COMBO (about 3 min on lavapipe).
  // Measured: the world loss falls 2.5% in 100 steps, steadily (15% in 240).
  const seen = new Map<number, StepValues>();
  const r = await run(
    { ...base, name: "long", steps: 100, realSteps: 30, evalEvery: 50, logEvery: 10 },
    null,
    seen,
  );
  assert.equal(r.status, "done");
  for (const v of seen.values()) {
    for (const [name, x] of Object.entries(v.losses)) assert.ok(Number.isFinite(x), name);
  }
  const evals = fs.readFileSync(path.join(base.runsDir, "long", "evals.jsonl"), "utf8").trim()
    .split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(evals.map((e) => e.step), [50, 100]);
  assert.ok(r.best && fs.existsSync(path.join(base.runsDir, "long", "best", "best.json")));
  // The world loss (next tokens, rewards, ends on 120 frames of Pong) falls as it trains.
  // Means over the first and last 10 steps (one step's noise is about 0.1%).
  const world = (from: number) => {
    let sum = 0;
    for (let s = from; s < from + 10; s++) sum += seen.get(s)!.losses.world;
    return sum / 10;
  };
  assert.ok(world(91) < 0.985 * world(1), `world loss ${world(1)} -> ${world(91)}`);
});

Deno.test("bad inputs: one clear error each, nothing written", async () => {
  // A checkpoint whose world-action config holds fewer timesteps than the segments.
  const short = path.join(tmp, "short");
  fs.mkdirSync(short);
  await saveWorldActionModel(
    path.join(short, "world_action.safetensors"),
    new WorldActionModel(
      worldActionConfig("tiny", { obsVocab: TINY_TOKENIZER.vocab, timesteps: 2 }),
    ),
  );
  const tok = new Tokenizer(TINY_TOKENIZER);
  await saveModule(path.join(short, "tokenizer.safetensors"), tok, { config: tok.cfg });
  const cases: [Partial<FinetuneConfig>, RegExp][] = [
    [{ checkpoint: short }, /--checkpoint .*holds 2 timesteps, fewer than --segment-length 4/],
    [{ game: "MsPacman", data: path.join(data, "Pong") }, /holds Pong, not --game MsPacman/],
    [{ game: "MsPacman" }, /--data .*no store of MsPacman/],
    [{ game: "Nope" }, /--game: unknown game 'Nope'/],
    [
      { batch: 40 },
      /120 transitions, fewer than one batch \(--batch 40 x --segment-length 4 = 160\)/,
    ],
  ];
  for (const [over, msg] of cases) {
    const name = `bad-${Math.random().toString(36).slice(2)}`;
    await assert.rejects(finetune({ ...base, ...over, name }, null, quiet), (e: Error) => {
      assert.match(e.message, msg);
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    });
    assert.ok(!fs.existsSync(path.join(base.runsDir, name)), `${name}: nothing written`);
  }
  assert.throws(() => parseFinetuneArgs(["--game", "Nope"]), /--game: unknown game 'Nope'/);
  // The CLI: exit status 2, one line, nothing written.
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "train/finetune.ts",
      "--checkpoint",
      ckpt,
      "--game",
      "MsPacman",
      "--data",
      path.join(data, "Pong"),
      "--runs-dir",
      path.join(tmp, "cli-runs"),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr).trim();
  assert.equal(out.code, 2, err);
  assert.match(err, /^error: --data .*holds Pong, not --game MsPacman$/);
  assert.ok(!fs.existsSync(path.join(tmp, "cli-runs")));
});
