/**
 * Data-parallel fine-tuning (train/finetuner.ts under mpiexec): 2 ranks with per-rank batch B
 * train like 1 process with batch 2B through both stages: stage 1 (real data, CQL) and stage 2
 * (each rank synthesizes from its real shard, rank 0 gathers the segments into the one replay
 * buffer, samples the global synthetic batch and broadcasts it; COMBO). Same losses, gradient
 * norms and weights after 6 steps within 1e-5 relative. Dropout is off (its masks depend on
 * the rank) and the seed is chosen so that every real segment lies inside an episode: the
 * average of per-rank masked means equals the global mean only when every shard has the same
 * number of valid targets (tests/distributed_pretrain_test.ts). A batch that does not split
 * over the ranks is refused with one line.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import type { FinetuneConfig } from "../train/finetune_options.ts";
import { finetuneFixture, tinyFinetuneConfig } from "./helpers/finetune_fixture.ts";
import { initRuntime } from "../kernels/core/runtime.ts";
import {
  assertSameSteps,
  assertWeightsClose,
  hasMpiexec,
  interiorSeed,
  launchWorker,
  stepLines,
} from "./helpers/data_parallel_runs.ts";

const ROOT = path.resolve(import.meta.dirname!, "..");
const WORKER = path.join(ROOT, "tests", "helpers", "distributed_finetune_worker.ts");
const tmp = Deno.makeTempDirSync({ prefix: "jowa_dp_ft_" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

const MPIEXEC = await hasMpiexec();

const launch = (ranks: number, cfg: FinetuneConfig, env: Record<string, string> = {}) =>
  launchWorker(WORKER, ranks, [JSON.stringify(cfg)], env, ["--no-check"]);

Deno.test({
  name: "data-parallel fine-tuning: 2 ranks x batch 2 = 1 process x batch 4 (both stages; 1e-5)",
  ignore: !MPIEXEC,
  fn: async () => {
    await initRuntime(); // the fixture's models
    const fixture = await finetuneFixture(tmp, { dropout: 0 });
    const { data } = fixture;
    const base = tinyFinetuneConfig(fixture, path.join(tmp, "runs"), {
      batch: 4,
      syntheticBatch: 2,
      steps: 6,
      realSteps: 3,
      targetEvery: 2,
      logEvery: 1,
    });
    const seed = interiorSeed(
      [path.join(data, "Pong")],
      (stage) => stage === 1 ? base.batch : base.batch - base.syntheticBatch,
      base.segmentLength,
    );
    const one = await launch(1, { ...base, seed, name: "one" }, {
      JOWA_MPI_LIB: "/nonexistent/libmpi.so",
    });
    assert.equal(one.code, 0, one.err);
    const two = await launch(2, { ...base, seed, name: "two" });
    assert.equal(two.code, 0, two.err);
    assert.match(two.out, /RESULT \{"status":"done","step":6\}/);
    const [a, b] = [stepLines(one.out), stepLines(two.out)];
    assertSameSteps(a, b, 6);
    assert.ok("combo" in a.get(6)!.losses, "stage 2 ran");
    const weights = (name: string) =>
      path.join(base.runsDir, name, "checkpoints", "step-000006", "world_action.safetensors");
    await assertWeightsClose(weights("one"), weights("two"));

    // A synthetic batch that does not split over the ranks: one line, before any step.
    const bad = await launch(2, { ...base, seed, name: "bad", syntheticBatch: 1 });
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /--synthetic-batch 1 must be multiples of the 2 ranks/);
  },
});
