/**
 * `deno task collect`: collect emulator transitions with a uniform-random behaviour
 * policy into per-game stores. Ctrl-C stops early and still leaves valid stores.
 * The library function is {@link collect} (re-exported here).
 * @module
 */
import { parseArgs } from "node:util";
import { collect, type CollectSummary } from "./collector.ts";
import { StepProgress } from "../util/progress.ts";
import { onInterrupt } from "../util/interrupt.ts";
import { EnvError } from "../envs/python_env.ts";
import { BridgeError } from "../envs/bridge_process.ts";
import { DataError } from "./fs_util.ts";
import { runCli } from "../util/cli.ts";
import { ensureWritableDir, OutputDirError } from "../util/writable.ts";

export { collect };
export type { CollectOptions, CollectSummary } from "./collector.ts";

const HELP = `Collect Atari transitions with a uniform-random policy over valid actions.

Usage: deno task collect [options]

Options:
  --out DIR                 dataset root; game G goes to DIR/G/ (default data/collect)
  --games LIST              comma-separated games, e.g. Pong,MsPacman or ALE ids (default Pong)
  --steps N                 transitions per game (default 10000)
  --envs N                  parallel environments per game (default 8)
  --procs N                 bridge processes (default 1; use the CPU cores you have)
  --seed N                  base seed for resets and actions (default 0)
  --frame-skip N            frames per step (default 4)
  --noop-max N              random no-op frames after reset, 0 = off (default 0)
  --sticky P                sticky-action probability (default 0)
  --max-episode-frames N    time limit in frames, 0 = none (default 108000)
  --rom-dir DIR             load <rom>.bin from DIR instead of ale-py's ROMs (or ALE_ROMS_DIR)
  --overwrite               replace complete stores already in --out
  --restart                 start interrupted stores over (default: resume them)
  -h, --help                show this help

Preprocessing follows the JOWA evaluation protocol: grayscale 84x84 (area), max over the
last two frames, terminal on game over, no sticky actions.

Ctrl-C stops and closes the stores (complete, shorter); a second Ctrl-C more than a second
later exits at once, leaving them incomplete. A fault (e.g. a crashed emulator) leaves the
stores incomplete too: rerunning the same command resumes incomplete stores up to --steps.`;

function int(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new EnvError(`--${name} must be an integer >= 0`);
  return n;
}

function printSummary(s: CollectSummary): void {
  console.log(
    `${"game".padEnd(16)} ${"episodes".padStart(8)} ${"rows".padStart(9)} ` +
      `${"done eps".padStart(8)} ${"mean return".padStart(11)}  dir`,
  );
  for (const g of s.games) {
    const mean = g.returns.length ? g.returns.reduce((a, b) => a + b, 0) / g.returns.length : NaN;
    console.log(
      `${g.game.padEnd(16)} ${String(g.episodes).padStart(8)} ${
        String(g.transitions).padStart(9)
      } ` +
        `${String(g.returns.length).padStart(8)} ${mean.toFixed(1).padStart(11)}  ${g.dir}`,
    );
  }
  if (s.interrupted) console.log("interrupted: stores hold what was collected so far");
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      out: { type: "string", default: "data/collect" },
      games: { type: "string", default: "Pong" },
      steps: { type: "string" },
      envs: { type: "string" },
      procs: { type: "string" },
      seed: { type: "string" },
      "frame-skip": { type: "string" },
      "noop-max": { type: "string" },
      sticky: { type: "string" },
      "max-episode-frames": { type: "string" },
      "rom-dir": { type: "string" },
      overwrite: { type: "boolean", default: false },
      restart: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const games = values.games.split(",").map((g) => g.trim()).filter((g) => g);
  const steps = int("steps", values.steps, 10_000);
  const sticky = values.sticky === undefined ? 0 : Number(values.sticky);
  ensureWritableDir(values.out, `--out ${values.out}`); // before any emulator starts
  const bar = new StepProgress({ label: "collect", total: steps * games.length });
  const ac = new AbortController();
  // One terminal Ctrl-C may arrive twice (deno task forwards it): only a later one is "again".
  const removeSigint = onInterrupt(() => {
    console.error("\nstopping: finishing the stores (Ctrl-C again to abort hard)");
    ac.abort();
  });
  try {
    const summary = await collect({
      out: values.out,
      games,
      steps,
      envsPerGame: int("envs", values.envs, 8),
      numProcesses: int("procs", values.procs, 1),
      seed: int("seed", values.seed, 0),
      frameSkip: int("frame-skip", values["frame-skip"], 4),
      noopMax: int("noop-max", values["noop-max"], 0),
      stickyActionProb: sticky,
      maxEpisodeFrames: int("max-episode-frames", values["max-episode-frames"], 108_000),
      romDir: values["rom-dir"],
      overwrite: values.overwrite,
      restart: values.restart,
      signal: ac.signal,
      onProgress: (d) => bar.update(d),
    });
    bar.update(summary.games.reduce((n, g) => n + g.transitions, 0));
    bar.finish();
    printSummary(summary);
    return summary.interrupted ? 130 : 0;
  } finally {
    removeSigint();
  }
}

if (import.meta.main) {
  // User-facing errors print one line (below the progress bar); anything else keeps its stack.
  await runCli(() => main(Deno.args), {
    prefix: "\ncollect: ",
    userErrors: [EnvError, BridgeError, DataError, OutputDirError],
  });
}
