/**
 * The host side of a data-parallel gradient exchange (train/data_parallel.ts) on this adapter:
 * reading every gradient back (one readAll) and uploading the averaged values, for a gradient
 * of JOWA-40M's size (17.4M floats, in tensors of the 40M model's shapes' order of size). The
 * all-reduce between them is bench/mpi_bench.ts's. Run with --help.
 * @module
 */
import { parseArgs } from "node:util";
import { initRuntime } from "../kernels/core/runtime.ts";
import { describeAdapter } from "../kernels/core/device.ts";
import { readAll, type Tensor, tensor } from "../kernels/core/tensor.ts";
import { DataParallel } from "../train/data_parallel.ts";
import { initDistributed } from "../distributed/mod.ts";

const HELP = `Usage: deno run -A bench/dp_exchange_bench.ts [--floats N] [--runs N]

Times readAll of N gradient floats (default 17400000, JOWA-40M) split over tensors of 1M
floats and smaller, and the upload of averaged values back (DataParallel.averageGradients in
a single process: the all-reduce is the identity), on the WebGPU adapter.`;
const { values } = parseArgs({
  args: Deno.args,
  options: {
    floats: { type: "string", default: "17400000" },
    runs: { type: "string", default: "3" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const rt = await initRuntime();
const total = Number(values.floats), runs = Math.max(1, Number(values.runs));
// Shapes like a transformer's: a few 1M-float matrices, the rest in 256k pieces, some biases.
const sizes: number[] = [];
for (let left = total; left > 0;) {
  const n = Math.min(left, sizes.length % 5 === 4 ? 512 : sizes.length < 8 ? 1 << 20 : 1 << 18);
  sizes.push(n);
  left -= n;
}
const params: Tensor[] = sizes.map((n) => tensor(new Float32Array(n), [n]));
const dp = new DataParallel(initDistributed());
const rows: { readback: number; upload: number }[] = [];
for (let r = -1; r < runs; r++) {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = tensor(new Float32Array(p.size).fill(r + 2), p.shape);
  }
  await rt.sync();
  await dp.averageGradients(params, {}, false);
  const t0 = performance.now();
  await rt.sync(); // the uploads queued by averageGradients land
  const upload = dp.last.reduceAndUpload + (performance.now() - t0);
  if (r >= 0) rows.push({ readback: dp.last.readback, upload });
}
const check = (await readAll([params[0].grad!]))[0][0];
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const mb = (total * 4) / 1e6;
const rb = med(rows.map((r) => r.readback)), up = med(rows.map((r) => r.upload));
console.log(
  `dp_exchange_bench: ${describeAdapter(rt.ctx)}; ${total} floats in ${sizes.length} tensors`,
);
console.log(
  `readback ${rb.toFixed(0)} ms (${(mb / rb).toFixed(2)} GB/s), upload ${up.toFixed(0)} ms ` +
    `(${(mb / up).toFixed(2)} GB/s), median of ${runs}; values ${
      check === runs + 1 ? "ok" : "WRONG"
    }`,
);
