/**
 * distributed/: launcher detection, the single-process `Comm`, the missing-library error, and,
 * where `mpiexec` is installed, real 2- and 3-rank jobs (collectives, and a rank that dies).
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import {
  chunkRanges,
  detectLauncher,
  DistributedError,
  initDistributed,
  mpiLibraryCandidates,
} from "../distributed/mod.ts";

const WORKER = path.join(import.meta.dirname!, "helpers", "distributed_worker.ts");

Deno.test("distributed: launcher detection from environment variables", () => {
  assert.equal(detectLauncher({}), null);
  assert.deepEqual(detectLauncher({ PMI_RANK: "1", PMI_SIZE: "8" }), {
    launcher: "PMI",
    rank: 1,
    size: 8,
  });
  assert.equal(detectLauncher({ PMI_RANK: "0", PMI_SIZE: "1" }), null, "mpiexec -n 1");
  assert.deepEqual(detectLauncher({ OMPI_COMM_WORLD_RANK: "3", OMPI_COMM_WORLD_SIZE: "4" }), {
    launcher: "Open MPI",
    rank: 3,
    size: 4,
  });
  // A Slurm batch script (not srun) has SLURM_PROCID=0 and SLURM_NTASKS: a single process.
  assert.equal(detectLauncher({ SLURM_PROCID: "0", SLURM_NTASKS: "8" }), null);
  assert.deepEqual(
    detectLauncher({ SLURM_PROCID: "2", SLURM_STEP_ID: "0", SLURM_STEP_NUM_TASKS: "4" }),
    { launcher: "Slurm", rank: 2, size: 4 },
  );
  assert.deepEqual(detectLauncher({ PMIX_RANK: "0" }), { launcher: "PMIx", rank: 0, size: null });
});

Deno.test("distributed: chunkRanges splits at maxCount", () => {
  assert.deepEqual(chunkRanges(0, 4), []);
  assert.deepEqual(chunkRanges(10, 4), [[0, 4], [4, 4], [8, 2]]);
  assert.deepEqual(chunkRanges(109_000_000), [[0, 109_000_000]]);
  assert.deepEqual(chunkRanges(2 ** 32, 2 ** 31 - 1).length, 3);
  assert.throws(() => chunkRanges(5, 2 ** 31));
});

Deno.test("distributed: a plain run is rank 0 of 1 and loads no MPI library", async () => {
  // JOWA_MPI_LIB points nowhere: any attempt to load a library would throw.
  const comm = initDistributed({ env: { JOWA_MPI_LIB: "/nonexistent/libmpi.so" } });
  assert.equal(comm.rank, 0);
  assert.equal(comm.size, 1);
  assert.equal(comm.backend, "single");
  const g = Float32Array.from([1, -2.5, 3]);
  assert.equal(await comm.allreduceSum(g), g);
  assert.deepEqual(Array.from(g), [1, -2.5, 3]);
  assert.deepEqual(Array.from(await comm.allreduceMean(g)), [1, -2.5, 3]);
  const u = Uint8Array.from([7, 8]);
  assert.equal(await comm.broadcast(u), u);
  assert.deepEqual(await comm.broadcastBytes(u), u);
  assert.deepEqual(await comm.gatherBytes(u), [u]);
  assert.deepEqual(await comm.gatherJson({ a: 1 }), [{ a: 1 }]);
  await comm.barrier();
  await assert.rejects(async () => await comm.broadcast(u, 1), RangeError);
  await comm.finalize();
  // A Slurm batch script outside srun is a plain run too.
  const batch = initDistributed({
    env: { SLURM_PROCID: "0", SLURM_NTASKS: "4", JOWA_MPI_LIB: "/x" },
  });
  assert.equal(batch.size, 1);
});

Deno.test("distributed: launched but no MPI library -> one clear error line", () => {
  const env = { PMI_RANK: "0", PMI_SIZE: "2", JOWA_MPI_LIB: "/nonexistent/libmpi.so.12" };
  assert.deepEqual(mpiLibraryCandidates(env), ["/nonexistent/libmpi.so.12"]);
  let err: unknown;
  try {
    initDistributed({ env });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof DistributedError, String(err));
  assert.ok(!err.message.includes("\n"), err.message);
  assert.match(err.message, /JOWA_MPI_LIB=\/nonexistent\/libmpi\.so\.12/);
  assert.match(err.message, /apt-get install mpich/);
  // Without JOWA_MPI_LIB the usual sonames are tried, MPICH's first.
  assert.equal(mpiLibraryCandidates({ PMI_RANK: "0", PMI_SIZE: "2" })[0], "libmpi.so.12");
});

async function hasMpiexec(): Promise<boolean> {
  try {
    return (await new Deno.Command("mpiexec", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .output()).success;
  } catch {
    return false;
  }
}
const MPIEXEC = await hasMpiexec();
if (!MPIEXEC) {
  console.log(
    "distributed_test: mpiexec not found; skipping the multi-rank tests (apt-get install mpich)",
  );
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

async function mpiexec(
  n: number,
  scenario: string,
  env: Record<string, string> = {},
): Promise<Run> {
  const t0 = performance.now();
  const out = await new Deno.Command("mpiexec", {
    args: ["-n", String(n), Deno.execPath(), "run", "-A", WORKER, scenario],
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(90_000),
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    seconds: (performance.now() - t0) / 1000,
  };
}

function results(run: Run): Record<string, unknown>[] {
  const lines = run.stdout.split("\n").filter((l) => l.startsWith("RESULT "));
  return lines.map((l) => JSON.parse(l.slice(7))).sort((a, b) => a.rank - b.rank);
}

for (const n of [2, 3]) {
  Deno.test({
    name: `distributed: mpiexec -n ${n}: allreduce, broadcast, gather, barrier`,
    ignore: !MPIEXEC,
    fn: async () => {
      const run = await mpiexec(n, "collectives");
      assert.equal(run.code, 0, run.stderr);
      const rs = results(run);
      assert.equal(rs.length, n, run.stdout);
      const rankSum = (n * (n - 1)) / 2;
      for (const r of rs) {
        assert.equal(r.size, n);
        assert.equal(r.backend, "mpi");
        // Rank r contributed r*100 + i (23 elements, sent in chunks of 7).
        assert.deepEqual(r.sum, Array.from({ length: 23 }, (_, i) => rankSum * 100 + n * i));
        assert.deepEqual(r.mean, [rankSum / n, (2 * rankSum) / n]);
        assert.deepEqual(r.bcastF32, [1.5, -2, 30000001024]);
        assert.deepEqual(r.bcastU8, Array.from({ length: 20 }, (_, i) => i * 3));
        assert.equal(r.bcastBytes, "hello from root, longer than seven");
        // Rank 1 waits 300 ms before the barrier: everybody waited for it.
        assert.ok((r.barrierWaitMs as number) >= 200, `barrier wait ${r.barrierWaitMs} ms`);
      }
      assert.deepEqual(
        rs[0].gathered,
        Array.from({ length: n }, (_, k) => Array.from({ length: k * 5 }, (_, i) => k * 16 + i)),
      );
      for (const r of rs.slice(1)) assert.equal(r.gathered, null);
      assert.deepEqual(
        rs[n - 1].json,
        Array.from({ length: n }, (_, k) => ({ rank: k, text: "x".repeat(k * 3) })),
      );
    },
  });
}

const FAILURES: [string, Record<string, string>, RegExp][] = [
  ["exit", {}, /rank 1\/2 exited \(code 3\) before finalize\(\); aborting all ranks/],
  ["early-exit-0", {}, /rank 1\/2 exited \(code 0\) before finalize\(\); aborting all ranks/],
  ["kill", {}, /BAD TERMINATION|Killed \(signal 9\)/],
  [
    "hang",
    { JOWA_MPI_TIMEOUT_S: "3" },
    /rank 0\/2: allreduceSum\(1048576 f32\) did not complete within 3 s \(JOWA_MPI_TIMEOUT_S\)/,
  ],
];
for (const [scenario, env, message] of FAILURES) {
  Deno.test({
    name: `distributed: mpiexec -n 2: rank 1 ${scenario} -> job stops with a clear error`,
    ignore: !MPIEXEC,
    fn: async () => {
      const run = await mpiexec(2, scenario, env);
      assert.notEqual(run.code, 0, run.stdout + run.stderr);
      assert.ok(run.seconds < 30, `took ${run.seconds} s`);
      assert.match(run.stdout, /rank 0: entering allreduce/);
      assert.doesNotMatch(run.stdout, /UNEXPECTED/);
      assert.match(run.stderr + run.stdout, message);
    },
  });
}
