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
import { openStore, SegmentSampler } from "../offline/mod.ts";
import { readSafetensors } from "../models/safetensors/mod.ts";
import { finetuneFixture, tinyFinetuneConfig } from "./helpers/finetune_fixture.ts";
import { initRuntime } from "../kernels/core/runtime.ts";

const ROOT = path.resolve(import.meta.dirname!, "..");
const WORKER = path.join(ROOT, "tests", "helpers", "distributed_finetune_worker.ts");
const tmp = Deno.makeTempDirSync({ prefix: "jowa_dp_ft_" });
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

async function hasMpiexec(): Promise<boolean> {
  try {
    return (await new Deno.Command("mpiexec", { args: ["--version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}
const MPIEXEC = await hasMpiexec();

async function launch(ranks: number, cfg: FinetuneConfig, env: Record<string, string> = {}) {
  const args = [Deno.execPath(), "run", "-A", "--no-check", WORKER, JSON.stringify(cfg)];
  const o = await new Deno.Command(ranks > 1 ? "mpiexec" : args[0], {
    args: ranks > 1 ? ["-n", String(ranks), ...args] : args.slice(1),
    cwd: ROOT,
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: "/tmp/xdg", ...env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(400_000),
  }).output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
}

function steps(out: string) {
  const m = new Map<number, { losses: Record<string, number>; gradNorm: Record<string, number> }>();
  for (const l of out.split("\n")) {
    if (l.startsWith("STEP ")) {
      const v = JSON.parse(l.slice(5));
      m.set(v.step, v);
    }
  }
  return m;
}

const close = (a: number, b: number) =>
  Math.abs(a - b) <= 1e-5 * Math.max(Math.abs(a), Math.abs(b)) + 1e-7;

/** A seed whose first 6 batches of both stages hold interior segments only. */
function interiorSeed(data: string, cfg: FinetuneConfig): number {
  const stores = [openStore(path.join(data, "Pong"))];
  for (let seed = 0; seed < 200; seed++) {
    const ok = [1, 2].every((stage) => {
      const B = stage === 1 ? cfg.batch : cfg.batch - cfg.syntheticBatch;
      const s = new SegmentSampler(stores, {
        batchSize: B,
        segmentLength: cfg.segmentLength,
        seed: seed + stage,
      });
      return Array.from({ length: 6 }, (_, k) => s.sampleBatch(k)).every((b) =>
        b.mask.every((m) => m === 1) && b.terminals.every((t) => t === 0)
      );
    });
    if (ok) return seed;
  }
  throw new Error("no seed with interior segments only");
}

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
    const seed = interiorSeed(data, base);
    const one = await launch(1, { ...base, seed, name: "one" }, {
      JOWA_MPI_LIB: "/nonexistent/libmpi.so",
    });
    assert.equal(one.code, 0, one.err);
    const two = await launch(2, { ...base, seed, name: "two" });
    assert.equal(two.code, 0, two.err);
    assert.match(two.out, /RESULT \{"status":"done","step":6\}/);
    const [a, b] = [steps(one.out), steps(two.out)];
    assert.equal(a.size, 6);
    assert.equal(b.size, 6);
    assert.ok("combo" in a.get(6)!.losses, "stage 2 ran");
    for (let s = 1; s <= 6; s++) {
      const x = a.get(s)!, y = b.get(s)!;
      assert.deepEqual(Object.keys(y.losses), Object.keys(x.losses));
      for (const [k, v] of [...Object.entries(x.losses), ...Object.entries(x.gradNorm)]) {
        const w = y.losses[k] ?? y.gradNorm[k];
        assert.ok(close(v, w), `step ${s} ${k}: 1 rank ${v}, 2 ranks ${w}`);
      }
    }
    const weights = (name: string) =>
      readSafetensors(
        path.join(base.runsDir, name, "checkpoints", "step-000006", "world_action.safetensors"),
      );
    const [wa, wb] = [await weights("one"), await weights("two")];
    // Within 1e-5 of the largest weight (see tests/distributed_pretrain_test.ts: elements with
    // an exact zero gradient move by AdamW-normalized rounding noise).
    let scale = 0, worst = 0, where = "";
    for (const t of wa.tensors.values()) {
      for (const x of t.toFloat32()) scale = Math.max(scale, Math.abs(x));
    }
    for (const [n, t] of wa.tensors) {
      const u = wb.tensors.get(n)!.toFloat32(), v = t.toFloat32();
      for (let i = 0; i < v.length; i++) {
        const d = Math.abs(u[i] - v[i]);
        if (d > worst) [worst, where] = [d, `${n}[${i}]`];
      }
    }
    assert.ok(worst <= 1e-5 * scale, `weights differ by ${worst} at ${where} (scale ${scale})`);

    // A synthetic batch that does not split over the ranks: one line, before any step.
    const bad = await launch(2, { ...base, seed, name: "bad", syntheticBatch: 1 });
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /--synthetic-batch 1 must be multiples of the 2 ranks/);
  },
});
