/**
 * One process of the data-parallel pretraining tests (tests/distributed_pretrain_test.ts):
 * `deno run -A distributed_pretrain_worker.ts '<PretrainConfig json>' [resume dir]`, alone or
 * under `mpiexec -n N`. Rank 0 prints `STEP <json>` for every step read back and `LOG <line>`
 * for the trainer's lines about replayed steps. With
 * `JOWA_TEST_KILL_RANK`/`JOWA_TEST_KILL_AT`, that rank kills itself (SIGKILL) once step
 * `KILL_AT` has been read back.
 * @module
 */
import { initDistributed } from "../../distributed/mod.ts";
import { initRuntime } from "../../kernels/core/runtime.ts";
import { pretrain } from "../../train/pretrainer.ts";
import type { PretrainConfig } from "../../train/pretrain_options.ts";

const cfg = JSON.parse(Deno.args[0]) as PretrainConfig;
const resume = Deno.args[1] ?? null;
const killRank = Number(Deno.env.get("JOWA_TEST_KILL_RANK") ?? -1);
const killAt = Number(Deno.env.get("JOWA_TEST_KILL_AT") ?? 0);
await initRuntime();
const comm = initDistributed();
const r = await pretrain(cfg, resume, {
  comm,
  // Replay counts and fallbacks ("stage 2: 3 of 6 steps replayed"), for the test to check.
  log: (line: string) => {
    if (comm.rank === 0 && /replayed|eagerly/.test(line)) console.log(`LOG ${line}`);
  },
  onSteps: (steps) => {
    for (const s of steps) {
      if (comm.rank === 0) console.log(`STEP ${JSON.stringify(s)}`);
      if (comm.rank === killRank && s.step >= killAt) Deno.kill(Deno.pid, "SIGKILL");
    }
  },
});
if (comm.rank === 0) console.log(`RESULT ${JSON.stringify({ status: r.status, step: r.step })}`);
await comm.finalize();
