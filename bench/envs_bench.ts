/**
 * Benchmark: agent steps per second through the ALE bridge for N = 1, 16, 64 with 1 and 2
 * bridge processes, beside a plain Python loop over ale-py doing the same preprocessing
 * in one process (bench/envs_plain_loop.py).
 *
 * Two rates per row: wall-clock steps/s, and steps per CPU-second (CPU time of the bridge
 * processes plus the Deno process), which is what "per core" means and which stays
 * meaningful when other programs share the machine.
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { AtariVectorEnv } from "../envs/vector_env.ts";
import { ensurePython } from "../envs/python_env.ts";
import { mulberry32, randomValidAction } from "../envs/policies.ts";
import { romId } from "../atari/mod.ts";

const HELP = `Usage: deno run -A bench/envs_bench.ts [--game Pong] [--seconds 3] [--envs 1,16,64]
        [--procs 1,2] [--repeat 3] [--quick]

--repeat R: interleave R runs of each side and keep the best (default 3).
--quick: 1 second per measurement, N = 16 only, one run.

Agent steps/s (N environments x steps / time) through the bridge, and a plain
single-process Python loop over ale-py with the same preprocessing.
Columns: wall steps/s; steps per CPU-second (bridges + Deno); the plain loop's
steps per CPU-second; the ratio bridge / plain per CPU-second ("per core").`;

function parse() {
  try {
    return parseArgs({
      options: {
        game: { type: "string", default: "Pong" },
        seconds: { type: "string", default: "3" },
        envs: { type: "string", default: "1,16,64" },
        procs: { type: "string", default: "1,2" },
        repeat: { type: "string", default: "3" },
        quick: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    console.error(`envs_bench: ${(e as Error).message}`);
    Deno.exit(2);
  }
}
const values = parse();
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
if (values.quick) {
  values.seconds = "1";
  values.envs = "16";
  values.repeat = "1";
}
const seconds = Number(values.seconds);
const repeat = Number(values.repeat);
const sizes = values.envs.split(",").map(Number);
const procCounts = values.procs.split(",").map(Number);
if (![seconds, repeat, ...sizes, ...procCounts].every((x) => Number.isFinite(x) && x > 0)) {
  console.error("envs_bench: --seconds, --repeat, --envs and --procs must be positive numbers");
  Deno.exit(1);
}

const TICK = 100; // Linux USER_HZ: /proc/<pid>/stat times are in 1/100 s

/** CPU seconds used so far by the given child pids plus this Deno process. */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
  }
  const self = process.cpuUsage();
  return ticks / TICK + (self.user + self.system) / 1e6;
}

async function bridge(n: number, procs: number): Promise<{ wall: number; cpu: number }> {
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
  const c0 = cpuSeconds(env.pids);
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    await env.step(act());
    steps++;
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(env.pids) - c0;
  return { wall: (n * steps) / wall, cpu: (n * steps) / cpu };
}

async function plain(n: number): Promise<{ wall: number; cpu: number }> {
  const python = await ensurePython();
  const steps = Math.max(20, Math.round((seconds * 1500) / n)); // about `seconds`
  const script = new URL("./envs_plain_loop.py", import.meta.url).pathname;
  const r = await new Deno.Command(python, {
    args: [script, romId(values.game), String(n), String(steps)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (r.code !== 0) throw new Error(new TextDecoder().decode(r.stderr));
  const o = JSON.parse(new TextDecoder().decode(r.stdout));
  return { wall: o.sps, cpu: o.cpu_sps };
}

const cpuName = Deno.readTextFileSync("/proc/cpuinfo").match(/model name\s*:\s*(.*)/)?.[1];
const load = Deno.loadavg()[0].toFixed(2);
console.log(
  `envs bench: ${values.game}, ${navigator.hardwareConcurrency} cores (${cpuName}), load ${load}`,
);
const head = ["N", "procs", "wall st/s", "st/CPU-s", "plain wall", "plain/CPU-s", "per core"];
const widths = [4, 5, 10, 9, 10, 11, 8];
const row = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join(" ");
console.log(row(head));
/** Best of `repeat` runs: the least disturbed by other programs on the machine. */
function best(runs: { wall: number; cpu: number }[]) {
  return { wall: Math.max(...runs.map((r) => r.wall)), cpu: Math.max(...runs.map((r) => r.cpu)) };
}

for (const n of sizes) {
  for (const p of procCounts.filter((p) => p <= n)) {
    const plainRuns = [], bridgeRuns = [];
    for (let r = 0; r < repeat; r++) { // interleaved, so both see the same disturbances
      plainRuns.push(await plain(n));
      bridgeRuns.push(await bridge(n, p));
    }
    const base = best(plainRuns), b = best(bridgeRuns);
    console.log(row([
      String(n),
      String(p),
      b.wall.toFixed(0),
      b.cpu.toFixed(0),
      base.wall.toFixed(0),
      base.cpu.toFixed(0),
      `${((b.cpu / base.cpu) * 100).toFixed(0)}%`,
    ]));
  }
}
console.log(
  `per core = bridge steps per CPU-second / plain loop steps per CPU-second; best of ${repeat}`,
);
