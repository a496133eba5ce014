/**
 * Benchmark: agent steps per second through the ALE bridge for N = 1, 16, 64 with 1 and 2
 * bridge processes, beside a plain Python loop over ale-py doing the same preprocessing
 * in one process (bench/envs_plain_loop.py).
 * @module
 */
import { parseArgs } from "node:util";
import { AtariVectorEnv } from "../envs/vector_env.ts";
import { ensurePython } from "../envs/python_env.ts";
import { mulberry32, randomValidAction } from "../envs/policies.ts";
import { romId } from "../envs/games.ts";

const HELP = `Usage: deno run -A bench/envs_bench.ts [--game Pong] [--seconds 3] [--envs 1,16,64]
        [--procs 1,2]

Measures agent steps/s (N environments x steps / wall time) through the bridge and a plain
single-process Python loop with the same preprocessing.`;

const { values } = parseArgs({
  options: {
    game: { type: "string", default: "Pong" },
    seconds: { type: "string", default: "3" },
    envs: { type: "string", default: "1,16,64" },
    procs: { type: "string", default: "1,2" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const seconds = Number(values.seconds);
const sizes = values.envs.split(",").map(Number);
const procCounts = values.procs.split(",").map(Number);
if (![seconds, ...sizes, ...procCounts].every((x) => Number.isFinite(x) && x > 0)) {
  console.error("envs_bench: --seconds, --envs and --procs must be positive numbers");
  Deno.exit(1);
}

async function bridge(n: number, procs: number): Promise<number> {
  await using env = await AtariVectorEnv.create({
    game: values.game,
    numEnvs: n,
    numProcesses: procs,
    autoReset: true,
  });
  await env.reset(Array.from({ length: n }, (_, i) => i));
  const rand = mulberry32(1);
  const act = () =>
    Array.from({ length: n }, (_, i) => randomValidAction(env.validActionMasks, i, rand));
  for (let i = 0; i < 10; i++) await env.step(act());
  let steps = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    await env.step(act());
    steps++;
  }
  return (n * steps) / ((performance.now() - t0) / 1000);
}

async function plain(n: number): Promise<number> {
  const python = await ensurePython();
  // Calibrate the step count to roughly `seconds` from the 1-env rate.
  const steps = Math.max(20, Math.round((seconds * 1500) / n));
  const script = new URL("./envs_plain_loop.py", import.meta.url).pathname;
  const r = await new Deno.Command(python, {
    args: [script, romId(values.game), String(n), String(steps)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (r.code !== 0) throw new Error(new TextDecoder().decode(r.stderr));
  return JSON.parse(new TextDecoder().decode(r.stdout)).sps;
}

const cpu = Deno.readTextFileSync("/proc/cpuinfo").match(/model name\s*:\s*(.*)/)?.[1] ?? "?";
console.log(`envs bench: ${values.game}, ${navigator.hardwareConcurrency} cores (${cpu})`);
console.log(
  `${"N".padStart(4)} ${"procs".padStart(5)} ${"steps/s".padStart(9)} ` +
    `${"per core".padStart(9)} ${"plain loop".padStart(10)} ${"per-core ratio".padStart(14)}`,
);
for (const n of sizes) {
  const base = await plain(n);
  for (const p of procCounts.filter((p) => p <= n)) {
    const sps = await bridge(n, p);
    const perCore = sps / p;
    console.log(
      `${String(n).padStart(4)} ${String(p).padStart(5)} ${sps.toFixed(0).padStart(9)} ` +
        `${perCore.toFixed(0).padStart(9)} ${base.toFixed(0).padStart(10)} ` +
        `${((perCore / base) * 100).toFixed(0).padStart(13)}%`,
    );
  }
}
console.log("plain loop = one Python process, no IPC; ratio = bridge per process / plain loop");
