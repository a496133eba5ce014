/**
 * What the data-parallel training tests (tests/distributed_pretrain_test.ts,
 * tests/distributed_finetune_test.ts) share: launching a worker alone or under
 * `mpiexec -n N`, reading its `STEP <json>` lines, the seed that makes a sharded batch average
 * like the whole one, and the 1e-5 comparisons of losses, gradient norms and weights.
 *
 * @module
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { openStore, SegmentSampler } from "../../offline/mod.ts";
import { readSafetensors } from "../../models/safetensors/mod.ts";

const ROOT = path.resolve(import.meta.dirname!, "..", "..");

/** Whether `mpiexec` runs here (the multi-rank tests are ignored without it). */
export async function hasMpiexec(): Promise<boolean> {
  try {
    return (await new Deno.Command("mpiexec", { args: ["--version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

/** A finished worker: exit code, output, and wall time. */
export interface WorkerRun {
  code: number;
  out: string;
  err: string;
  seconds: number;
}

/**
 * `deno run -A [denoFlags] <worker> ...args` from the repository root: one process when
 * `ranks` is 1, else under `mpiexec -n ranks` (400 s at most).
 */
export async function launchWorker(
  worker: string,
  ranks: number,
  args: readonly string[],
  env: Record<string, string> = {},
  denoFlags: readonly string[] = [],
): Promise<WorkerRun> {
  const argv = [Deno.execPath(), "run", "-A", ...denoFlags, worker, ...args];
  const t0 = performance.now();
  const o = await new Deno.Command(ranks > 1 ? "mpiexec" : argv[0], {
    args: ranks > 1 ? ["-n", String(ranks), ...argv] : argv.slice(1),
    cwd: ROOT,
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: "/tmp/xdg", ...env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(400_000),
  }).output();
  const dec = new TextDecoder();
  return {
    code: o.code,
    out: dec.decode(o.stdout),
    err: dec.decode(o.stderr),
    seconds: (performance.now() - t0) / 1000,
  };
}

/** One step read back by a worker (`STEP <json>`). */
export interface StepLine {
  losses: Record<string, number>;
  gradNorm: Record<string, number>;
}

/** The `STEP <json>` lines of a worker's output, by step. */
export function stepLines(out: string): Map<number, StepLine> {
  const m = new Map<number, StepLine>();
  for (const l of out.split("\n")) {
    if (l.startsWith("STEP ")) {
      const v = JSON.parse(l.slice(5));
      m.set(v.step, v);
    }
  }
  return m;
}

/** Equal within 1e-5 relative (1e-7 absolute near zero). */
export const close = (a: number, b: number): boolean =>
  Math.abs(a - b) <= 1e-5 * Math.max(Math.abs(a), Math.abs(b)) + 1e-7;

/** Steps 1..`steps` of both runs: the same loss parts, every loss and norm {@link close}. */
export function assertSameSteps(
  one: Map<number, StepLine>,
  two: Map<number, StepLine>,
  steps: number,
): void {
  assert.equal(one.size, steps);
  assert.equal(two.size, steps);
  for (let s = 1; s <= steps; s++) {
    const x = one.get(s)!, y = two.get(s)!;
    assert.deepEqual(Object.keys(y.losses), Object.keys(x.losses));
    for (const [k, v] of [...Object.entries(x.losses), ...Object.entries(x.gradNorm)]) {
      const w = y.losses[k] ?? y.gradNorm[k];
      assert.ok(close(v, w), `step ${s} ${k}: 1 rank ${v}, 2 ranks ${w}`);
    }
  }
}

/**
 * A seed whose first 6 batches of both stages' streams (seed + stage) hold only segments
 * inside an episode with no terminal: then every shard has the same number of valid targets,
 * and the average of per-rank masked means (DDP's, and the authors') is the global mean.
 */
export function interiorSeed(
  dirs: readonly string[],
  batchSize: (stage: 1 | 2) => number,
  segmentLength: number,
): number {
  const stores = dirs.map((d) => openStore(d));
  for (let seed = 0; seed < 200; seed++) {
    const ok = ([1, 2] as const).every((stage) => {
      const s = new SegmentSampler(stores, {
        batchSize: batchSize(stage),
        segmentLength,
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

/**
 * The tensors of two safetensors files element-wise within 1e-5 of the first file's largest
 * value, not of each element: elements whose exact gradient is 0 (the attention key biases,
 * which softmax ignores) are moved by AdamW's normalized steps of rounding noise alone,
 * however the batch is split.
 */
export async function assertWeightsClose(fileOne: string, fileTwo: string): Promise<void> {
  const [wa, wb] = [await readSafetensors(fileOne), await readSafetensors(fileTwo)];
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
}
