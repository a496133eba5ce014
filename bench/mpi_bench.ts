/**
 * MPI all-reduce benchmark: time to sum-all-reduce f32 gradient buffers across local ranks
 * (17.4M floats = a JOWA-40M gradient, 109M = JOWA-150M). Run with --help.
 *
 * Not under a launcher, it starts itself with `mpiexec -n RANKS`.
 * @module
 */
import { parseArgs } from "node:util";
import { detectLauncher, initDistributed } from "../distributed/mod.ts";

const HELP = `Usage: deno run -A bench/mpi_bench.ts [options]

All-reduces (sum) f32 buffers across ranks; prints median/min ms, algorithm bandwidth
(buffer bytes / time) and bus bandwidth (x 2(n-1)/n, the bytes each rank moves).
Without a launcher it re-runs itself under \`mpiexec -n RANKS\`.

  --ranks N      ranks when self-launching (default 2)
  --sizes LIST   comma-separated float counts (default 17400000,109000000)
  --runs N       timed runs per size (default 5), after 1 warm-up
  --json FILE    also write the results as JSON (rank 0)
  -h, --help     this text`;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    ranks: { type: "string", default: "2" },
    sizes: { type: "string", default: "17400000,109000000" },
    runs: { type: "string", default: "5" },
    json: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}

if (!detectLauncher(Deno.env.toObject())) {
  const args = [
    "-n",
    values.ranks,
    Deno.execPath(),
    "run",
    "-A",
    import.meta.filename!,
    ...Deno.args,
  ];
  let status: Deno.CommandStatus;
  try {
    status = await new Deno.Command("mpiexec", { args, stdout: "inherit", stderr: "inherit" })
      .spawn()
      .status;
  } catch (e) {
    console.error(`mpi_bench: cannot run mpiexec (${(e as Error).message}); apt-get install mpich`);
    Deno.exit(1);
  }
  Deno.exit(status.code);
}

const comm = initDistributed();
const sizes = values.sizes.split(",").map((s) => Math.round(Number(s)));
const runs = Math.max(1, Number(values.runs));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

interface Row {
  floats: number;
  mb: number;
  medianMs: number;
  minMs: number;
  algGBs: number;
  busGBs: number;
  runsMs: number[];
  correct: boolean;
}
const rows: Row[] = [];
for (const n of sizes) {
  const buf = new Float32Array(n);
  const times: number[] = [];
  let correct = true;
  for (let r = -1; r < runs; r++) {
    buf.fill(comm.rank + 1);
    await comm.barrier();
    const t0 = performance.now();
    await comm.allreduceSum(buf);
    const ms = performance.now() - t0;
    const want = (comm.size * (comm.size + 1)) / 2;
    correct &&= buf[0] === want && buf[n >> 1] === want && buf[n - 1] === want;
    if (r >= 0) times.push(ms);
  }
  // A run lasts as long as its slowest rank.
  const all = await comm.gatherJson(times);
  const allCorrect = await comm.gatherJson(correct);
  if (all && allCorrect) {
    const slowest = times.map((_, i) => Math.max(...all.map((t) => t[i])));
    const med = median(slowest), bytes = n * 4;
    const alg = bytes / (med / 1000) / 1e9;
    rows.push({
      floats: n,
      mb: bytes / 1e6,
      medianMs: med,
      minMs: Math.min(...slowest),
      algGBs: alg,
      busGBs: (alg * 2 * (comm.size - 1)) / comm.size,
      runsMs: slowest,
      correct: allCorrect.every(Boolean),
    });
  }
}

if (comm.rank === 0) {
  const copy = new Float32Array(sizes[sizes.length - 1]), src = new Float32Array(copy.length);
  copy.set(src); // first touch of the pages, not timed
  const t0 = performance.now();
  copy.set(src);
  const memcpyGBs = (copy.length * 4) / ((performance.now() - t0) / 1000) / 1e9;
  console.log(`mpi_bench: ${comm.description}; ${navigator.hardwareConcurrency} CPUs`);
  console.log(`floats        MB   median ms   min ms   alg GB/s   bus GB/s  ok`);
  for (const r of rows) {
    console.log(
      `${String(r.floats).padStart(11)} ${r.mb.toFixed(0).padStart(6)} ${
        r.medianMs.toFixed(1).padStart(11)
      } ` +
        `${r.minMs.toFixed(1).padStart(8)} ${r.algGBs.toFixed(2).padStart(10)} ${
          r.busGBs.toFixed(2).padStart(10)
        }  ` +
        `${r.correct ? "yes" : "NO"}`,
    );
  }
  console.log(
    `(for scale: one ${(copy.length * 4 / 1e6).toFixed(0)} MB memcpy in this process: ${
      memcpyGBs.toFixed(2)
    } GB/s)`,
  );
  if (values.json) {
    const out = {
      ranks: comm.size,
      library: comm.description,
      cpus: navigator.hardwareConcurrency,
      runs,
      memcpyGBs,
      results: rows,
    };
    await Deno.writeTextFile(values.json, JSON.stringify(out, null, 2) + "\n");
  }
}
await comm.finalize();
if (rows.some((r) => !r.correct)) Deno.exit(1);
