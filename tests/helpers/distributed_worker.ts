/**
 * One rank of the distributed tests, started by `mpiexec -n N deno run -A` from
 * tests/distributed_test.ts. Scenarios (first argument):
 *
 * - `collectives`: allreduce (chunked and not), mean, broadcast, gather of variable-length
 *   payloads, barrier; rank 0 prints `RESULT <json>` with what it received.
 * - `exit` / `kill` / `hang`: rank 1 exits with code 3 / kills itself with SIGKILL / sleeps,
 *   before an all-reduce; rank 0 prints `UNEXPECTED` if its all-reduce ever returns.
 * - `early-exit-0`: rank 1 calls Deno.exit(0) without finalize().
 * @module
 */
import { initDistributed } from "../../distributed/mod.ts";

const scenario = Deno.args[0] ?? "collectives";
const comm = initDistributed({ maxCount: scenario === "collectives" ? 7 : undefined });
const { rank, size } = comm;

if (scenario === "collectives") {
  // Chunked (maxCount 7): 23 elements in 4 calls.
  const a = Float32Array.from({ length: 23 }, (_, i) => rank * 100 + i);
  await comm.allreduceSum(a);
  const m = new Float32Array([rank, 2 * rank]);
  await comm.allreduceMean(m);
  const b = rank === 1 ? Float32Array.from([1.5, -2, 3e10]) : new Float32Array(3);
  await comm.broadcast(b, 1);
  const u = rank === 0 ? Uint8Array.from({ length: 20 }, (_, i) => i * 3) : new Uint8Array(20);
  await comm.broadcast(u);
  const bytes = await comm.broadcastBytes(
    rank === 0 ? new TextEncoder().encode("hello from root, longer than seven") : null,
  );
  // Rank r sends r*5 bytes (rank 0 sends none): exercises empty and multi-round payloads.
  const mine = Uint8Array.from({ length: rank * 5 }, (_, i) => (rank * 16 + i) & 255);
  const gathered = await comm.gatherBytes(mine);
  const json = await comm.gatherJson({ rank, text: "x".repeat(rank * 3) }, size - 1);
  await comm.barrier();
  const t0 = performance.now();
  if (rank === 1) await new Promise((r) => setTimeout(r, 300));
  await comm.barrier();
  const barrierWaitMs = performance.now() - t0;
  const report = {
    rank,
    size,
    backend: comm.backend,
    sum: Array.from(a),
    mean: Array.from(m),
    bcastF32: Array.from(b),
    bcastU8: Array.from(u),
    bcastBytes: new TextDecoder().decode(bytes),
    gathered: gathered && gathered.map((g) => Array.from(g)),
    json,
    barrierWaitMs,
  };
  console.log(`RESULT ${JSON.stringify(report)}`);
  await comm.finalize();
} else {
  await comm.barrier();
  if (rank === 1) {
    // Die "mid-run": once rank 0 is surely inside its all-reduce.
    await new Promise((r) => setTimeout(r, 500));
    if (scenario === "exit") Deno.exit(3);
    if (scenario === "early-exit-0") Deno.exit(0);
    if (scenario === "kill") Deno.kill(Deno.pid, "SIGKILL");
    if (scenario === "hang") await new Promise((r) => setTimeout(r, 120_000));
  }
  console.log(`rank ${rank}: entering allreduce`);
  await comm.allreduceSum(new Float32Array(1 << 20));
  console.log(`UNEXPECTED rank ${rank}: allreduce returned`);
  await comm.finalize();
}
