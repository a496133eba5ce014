/**
 * Data-path benchmark: DQN-Replay conversion throughput (MB/s) and sampler throughput
 * (batches/s at B=512, L=8) from a store on local disk. Run with --help.
 * @module
 */
import { parseArgs } from "node:util";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import process from "node:process";
import { encodeNpyHeader, type NpyDtype } from "../offline/npy.ts";
import { convertGame } from "../offline/converter.ts";
import { openSampler } from "../offline/sampler.ts";
import { minimalActionsOf } from "../atari/mod.ts";

const HELP = `Usage: deno run -A bench/data_bench.ts [options]

Writes a synthetic DQN-Replay game (Atari-like frames, Dopamine layout) to a temp dir,
converts it, then samples batches from the store.

  --rows N         rows per checkpoint file (default 20000; real files have 1000000)
  --ckpts N        checkpoints (default 2)
  --batches N      batches timed per sampler setting (default 40)
  --batch-size B   (default 512)
  --segment L      (default 8)
  --dir DIR        work directory (default: a temp dir, removed afterwards)
  -h, --help       this text`;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rows: { type: "string", default: "20000" },
    ckpts: { type: "string", default: "2" },
    batches: { type: "string", default: "40" },
    "batch-size": { type: "string", default: "512" },
    segment: { type: "string", default: "8" },
    dir: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const N = Number(values.rows), CK = Number(values.ckpts), NB = Number(values.batches);
const B = Number(values["batch-size"]), L = Number(values.segment);

async function writeNpyGz(file: string, dtype: NpyDtype, shape: number[], data: Uint8Array) {
  const gz = zlib.createGzip({ level: 6 });
  const out = fs.createWriteStream(file);
  const done = new Promise<void>((res, rej) => {
    out.on("finish", () => res());
    out.on("error", rej);
  });
  gz.pipe(out);
  gz.write(encodeNpyHeader(dtype, shape));
  for (let o = 0; o < data.byteLength; o += 1 << 22) gz.write(data.subarray(o, o + (1 << 22)));
  gz.end();
  await done;
}

/** Atari-like frames: fixed background, a few moving sprites, a score strip. */
function frame(dst: Uint8Array, t: number) {
  for (let y = 0; y < 84; y++) {
    const bg = y < 10 ? 0 : 40 + ((y >> 3) & 3) * 20;
    dst.fill(bg, y * 84, y * 84 + 84);
  }
  for (let s = 0; s < 4; s++) {
    const x = (t * (s + 1) * 3 + s * 17) % 76, y = 12 + ((t * (s + 2) + s * 13) % 64);
    for (let dy = 0; dy < 6; dy++) dst.fill(200 - s * 30, (y + dy) * 84 + x, (y + dy) * 84 + x + 6);
  }
  dst[2 * 84 + (t % 80)] = 255;
  // Some pixel noise so gzip does not compress far better than on real frames.
  let x = ((t + 1) * 2654435761) >>> 0;
  for (let i = 0; i < 300; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    dst[(x >>> 0) % 7056] = x & 255;
  }
}

const dir = values.dir ?? Deno.makeTempDirSync({ prefix: "jowa_data_bench_" });
const runDir = path.join(dir, "src", "Pong", "1", "replay_logs");
fs.mkdirSync(runDir, { recursive: true });
let compressed = 0;
console.error(`writing synthetic DQN-Replay: ${CK} checkpoints x ${N} rows ...`);
for (let c = 0; c < CK; c++) {
  const obs = new Uint8Array(N * 7056), act = new Int32Array(N), rew = new Float32Array(N);
  const term = new Uint8Array(N);
  let t = 0, T = 0;
  for (let r = 0; r < N; r++) {
    if (t < 3) { // padding rows
      t++;
      if (t === 3) T = 400 + ((r * 7919) % 1500);
      continue;
    }
    frame(obs.subarray(r * 7056, (r + 1) * 7056), r);
    act[r] = r % 6;
    rew[r] = r % 50 === 0 ? 1 : 0;
    if (++t - 3 === T) {
      term[r] = 1;
      t = 0;
    }
  }
  const f = (k: string) => path.join(runDir, `$store$_${k}_ckpt.${c}.gz`);
  await writeNpyGz(f("observation"), "uint8", [N, 84, 84], obs);
  await writeNpyGz(f("action"), "int32", [N], new Uint8Array(act.buffer));
  await writeNpyGz(f("reward"), "float32", [N], new Uint8Array(rew.buffer));
  await writeNpyGz(f("terminal"), "uint8", [N], term);
  const ac = new BigInt64Array([BigInt(N * (c + 1))]);
  await writeNpyGz(
    path.join(runDir, `add_count_ckpt.${c}.gz`),
    "int64",
    [],
    new Uint8Array(ac.buffer),
  );
  compressed += fs.statSync(f("observation")).size;
}

const rawMB = (CK * N * 7056) / 1e6;
console.log("\n## Conversion (DQN-Replay .npy.gz -> store, incl. the validation pass)");
console.log("| fraction | rows kept | obs raw MB | obs gz MB | seconds | raw MB/s | gz MB/s |");
console.log("|---:|---:|---:|---:|---:|---:|---:|");
let transitions = 0;
for (const fraction of [0.1, 1]) {
  const t0 = performance.now();
  const r = await convertGame({
    src: path.join(dir, "src", "Pong"),
    out: path.join(dir, "stores", "Pong"),
    game: "Pong",
    minimalActions: minimalActionsOf("Pong"),
    runs: ["1"],
    fraction,
    overwrite: true,
  });
  const secs = (performance.now() - t0) / 1000;
  transitions = r.transitions;
  console.log(
    `| ${fraction} | ${r.transitions} | ${rawMB.toFixed(0)} | ${(compressed / 1e6).toFixed(1)} | ` +
      `${secs.toFixed(2)} | ${(rawMB / secs).toFixed(0)} | ${
        (compressed / 1e6 / secs).toFixed(1)
      } |`,
  );
}

console.log(
  `\n## Sampler (B=${B}, L=${L}, frames; store of ${transitions} rows, page-cache warm)`,
);
// CPU time per batch (all threads) does not depend on what else loads the machine.
console.log("| workers | prefetch | batches/s | frames MB/s | ms/batch | CPU ms/batch |");
console.log("|---:|---:|---:|---:|---:|---:|");
for (const [workers, prefetch] of [[0, 1], [1, 4], [2, 4]]) {
  const s = await openSampler(path.join(dir, "stores"), {
    batchSize: B,
    segmentLength: L,
    workers,
    prefetch,
    seed: 1,
  });
  for (let i = 0; i < 3; i++) await s.next(); // warm-up
  const t = performance.now(), c0 = process.cpuUsage();
  for (let i = 0; i < NB; i++) await s.next();
  const dt = (performance.now() - t) / 1000, c = process.cpuUsage(c0);
  s.close();
  const bps = NB / dt;
  console.log(
    `| ${workers} | ${workers ? prefetch : "-"} | ${bps.toFixed(1)} | ` +
      `${((bps * B * L * 7056) / 1e6).toFixed(0)} | ${(1000 / bps).toFixed(1)} | ` +
      `${((c.user + c.system) / 1000 / NB).toFixed(1)} |`,
  );
}

// What training sees: a consumer busy `step` ms per batch (GPU work is async, so the thread
// is idle meanwhile) should find the next batch ready.
console.log(`\n## Consumer wait in next() with a simulated training step (workers 1, prefetch 4)`);
console.log("| step ms | batches | mean wait ms | max wait ms |");
console.log("|---:|---:|---:|---:|");
for (const step of [50, 100]) {
  const s = await openSampler(path.join(dir, "stores"), {
    batchSize: B,
    segmentLength: L,
    seed: 2,
  });
  await s.next(); // first batch includes worker start-up
  await new Promise((r) => setTimeout(r, step));
  const waits: number[] = [];
  for (let i = 0; i < Math.min(NB, 20); i++) {
    const t = performance.now();
    await s.next();
    waits.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, step));
  }
  s.close();
  const mean = waits.reduce((a, b) => a + b, 0) / waits.length;
  console.log(
    `| ${step} | ${waits.length} | ${mean.toFixed(2)} | ${Math.max(...waits).toFixed(2)} |`,
  );
}
if (!values.dir) fs.rmSync(dir, { recursive: true, force: true });
