/**
 * One process of the data-parallel fine-tuning test (tests/distributed_finetune_test.ts):
 * `deno run -A distributed_finetune_worker.ts '<FinetuneConfig json>'`, alone or under
 * `mpiexec -n N`. Rank 0 prints `STEP <json>` for every step read back, then `RESULT <json>`.
 * @module
 */
import { initDistributed } from "../../distributed/mod.ts";
import { initRuntime } from "../../kernels/core/runtime.ts";
import { finetune } from "../../train/finetuner.ts";
import type { FinetuneConfig } from "../../train/finetune_options.ts";

const cfg = JSON.parse(Deno.args[0]) as FinetuneConfig;
await initRuntime();
const comm = initDistributed();
const r = await finetune(cfg, null, {
  comm,
  log: () => {},
  onSteps: (steps) => {
    if (comm.rank === 0) { for (const s of steps) console.log(`STEP ${JSON.stringify(s)}`); }
  },
});
if (comm.rank === 0) console.log(`RESULT ${JSON.stringify({ status: r.status, step: r.step })}`);
await comm.finalize();
