/**
 * Data-parallel pretraining (train/data_parallel.ts, train/pretrainer.ts under mpiexec):
 *
 * - 2 ranks with per-rank batch B train like 1 process with batch 2B: same losses, gradient
 *   norms and weights after 10 steps (stage 1, the switch and stage 2 with target copies),
 *   within 1e-5 relative. Dropout is off (its masks depend on the rank) and the data is
 *   chosen so that every segment lies inside an episode: the average of per-rank masked means
 *   (DDP's, and the authors') equals the global mean only when every shard has the same number
 *   of valid targets.
 * - Killing a rank mid-run stops the other within a bounded time; the last complete
 *   checkpoint is intact and a run resumes from it on a different number of ranks.
 * - Under a launcher without an MPI library: one clear error naming what to install; the
 *   single-process reference run above ran with JOWA_MPI_LIB=/nonexistent, untouched by it.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import type { PretrainConfig } from "../train/pretrain_options.ts";
import { openStore, SegmentSampler } from "../offline/mod.ts";
import { buckets, rankStepSeed, shardRows } from "../train/data_parallel.ts";
import { readSafetensors } from "../models/safetensors/mod.ts";
import { RunDir } from "../checkpoint/run_dir.ts";
import { readTrainState } from "../checkpoint/train_checkpoint.ts";
import { stepSeed } from "../util/rng.ts";
import { tinyPretrainRun } from "./helpers/pretrain_stores.ts";
import {
  assertSameSteps,
  assertWeightsClose,
  hasMpiexec,
  interiorSeed,
  launchWorker,
  stepLines,
  type WorkerRun,
} from "./helpers/data_parallel_runs.ts";

const ROOT = path.resolve(import.meta.dirname!, "..");
const WORKER = path.join(ROOT, "tests", "helpers", "distributed_pretrain_worker.ts");
const { tmp, base } = await tinyPretrainRun("jowa_dp_", {
  stage1Steps: 4,
  stage2Steps: 6,
  targetEvery: 2,
  logEvery: 1,
  ckptEvery: 5,
  progress: false,
  modelDropout: 0,
}, { episodes: 2, steps: 60 });
globalThis.addEventListener("unload", () => fs.rmSync(tmp, { recursive: true, force: true }));
const data = base.data!;
const dirs = ["Pong", "Phoenix"].map((g) => path.join(data, g));

Deno.test("data parallel: shard rows, buckets and per-rank dropout seeds", () => {
  assert.deepEqual(shardRows(8, 1, 2), [4, 8]);
  assert.throws(() => shardRows(6, 0, 4), /--batch 6 must be a multiple of the 4 ranks/);
  assert.deepEqual(buckets([3, 3, 5, 1, 9, 1], 6), [[0, 1], [2, 3], [4], [5]]);
  assert.equal(rankStepSeed(7, 3, 0), stepSeed(7, 3));
  assert.notEqual(rankStepSeed(7, 3, 1), stepSeed(7, 3));
});

Deno.test("sampler shards: the shards of a batch, concatenated, are the unsharded batch", () => {
  const opts = { batchSize: 6, segmentLength: 3, seed: 9 };
  const full = new SegmentSampler(dirs.map((d) => openStore(d)), opts);
  const shards = [0, 1, 2].map((index) =>
    new SegmentSampler(dirs.map((d) => openStore(d)), { ...opts, shard: { index, count: 3 } })
  );
  for (const k of [0, 5]) {
    const want = full.sampleBatch(k);
    const got = shards.map((s) => s.sampleBatch(k));
    assert.ok(got.every((g) => g.batchSize === 2));
    for (const key of ["tokens", "actions", "rewards", "mask", "taskIds", "starts"] as const) {
      const cat = got.flatMap((g) => Array.from(g[key] as ArrayLike<number>));
      assert.deepEqual(cat, Array.from(want[key] as ArrayLike<number>), `batch ${k} ${key}`);
    }
  }
  assert.throws(
    () =>
      new SegmentSampler(dirs.map((d) => openStore(d)), { ...opts, shard: { index: 0, count: 4 } }),
    /does not split into 4 shards/,
  );
});

const MPIEXEC = await hasMpiexec();

const launch = (
  ranks: number,
  cfg: PretrainConfig,
  resume: string | null = null,
  env: Record<string, string> = {},
): Promise<WorkerRun> =>
  launchWorker(WORKER, ranks, [JSON.stringify(cfg), ...(resume ? [resume] : [])], env);

Deno.test({
  name: "data parallel: 2 ranks x batch 2 = 1 process x batch 4 (losses, norms, weights; 1e-5)",
  ignore: !MPIEXEC,
  fn: async () => {
    const seed = interiorSeed(dirs, () => base.batch, base.segmentLength);
    const one = await launch(1, { ...base, seed, name: "one" }, null, {
      JOWA_MPI_LIB: "/nonexistent/libmpi.so",
    });
    assert.equal(one.code, 0, one.err);
    const two = await launch(2, { ...base, seed, name: "two" });
    assert.equal(two.code, 0, two.err);
    const [a, b] = [stepLines(one.out), stepLines(two.out)];
    assertSameSteps(a, b, 10);
    assert.ok(Number.isFinite(a.get(10)!.losses.td), "stage 2 ran");
    // Both runs replayed their captured steps (2 ranks: forward and backward only,
    // train/captured_grads.ts; calls 1-3 of a stage run eagerly or record) and fell back never.
    for (const run of [one, two]) {
      assert.ok(run.out.includes("LOG stage 1: 1 of 4 steps replayed"), run.out);
      assert.ok(run.out.includes("LOG stage 2: 3 of 6 steps replayed"), run.out);
      assert.ok(!run.out.includes("eagerly"), run.out);
    }
    const weights = (name: string) =>
      path.join(
        new RunDir(path.join(base.runsDir, name)).checkpoint(10),
        "world_action.safetensors",
      );
    await assertWeightsClose(weights("one"), weights("two"));
    // Only rank 0 wrote: one metrics line per step.
    const lines = fs.readFileSync(path.join(base.runsDir, "two", "metrics.jsonl"), "utf8").trim()
      .split("\n");
    assert.equal(lines.length, 10);
  },
});

Deno.test({
  name: "data parallel: a killed rank stops the job; the last checkpoint resumes on 1 rank",
  ignore: !MPIEXEC,
  fn: async () => {
    const cfg = { ...base, name: "kill", stage1Steps: 0, stage2Steps: 40, ckptEvery: 3 };
    const run = await launch(2, cfg, null, { JOWA_TEST_KILL_RANK: "1", JOWA_TEST_KILL_AT: "7" });
    assert.notEqual(run.code, 0, run.out);
    assert.ok(run.seconds < 300, `took ${run.seconds} s`);
    assert.match(run.err + run.out, /BAD TERMINATION|Killed \(signal 9\)/);
    assert.doesNotMatch(run.out, /RESULT/);
    const dir = new RunDir(path.join(base.runsDir, "kill"));
    const last = dir.latestCheckpoint()!;
    const step = readTrainState(last).step;
    assert.ok(step === 6 || step === 9, `last complete checkpoint at step ${step}`);
    for (const c of dir.completeCheckpoints()) {
      const f = await readSafetensors(path.join(c, "world_action.safetensors"));
      for (const t of f.tensors.values()) assert.ok(t.toFloat32().every(Number.isFinite));
    }
    // Resumed on one process (a different number of ranks): runs on to the end.
    const again = await launch(1, { ...cfg, stage2Steps: 12 }, dir.root);
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /RESULT \{"status":"done","step":12\}/);
    assert.equal(stepLines(again.out).get(step + 1) !== undefined, true);
  },
});

Deno.test("data parallel: launched without an MPI library -> one line naming what to install", async () => {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "train/pretrain.ts", "--runs-dir", path.join(tmp, "nompi"), "--data", data],
    cwd: ROOT,
    env: {
      NO_COLOR: "1",
      XDG_RUNTIME_DIR: "/tmp/xdg",
      PMI_RANK: "0",
      PMI_SIZE: "2",
      JOWA_MPI_LIB: "/nonexistent/libmpi.so.12",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(o.stderr).trim();
  assert.equal(o.code, 1, err);
  assert.match(err, /apt-get install mpich/);
  assert.match(err, /JOWA_MPI_LIB=\/nonexistent\/libmpi\.so\.12/);
  assert.equal(err.split("\n").length, 1, err);
  assert.ok(!fs.existsSync(path.join(tmp, "nompi")), "nothing written");
});
