/**
 * `deno task convert`: DQN-Replay directory -> per-game stores under a dataset root.
 * Run with --help for usage.
 * @module
 */
import { parseArgs } from "node:util";
import * as fs from "node:fs";
import * as path from "node:path";
import { DataError, exists } from "./fs_util.ts";
import { convertGame } from "./converter.ts";
import { gameOfTaskId, MINIMAL_ACTIONS, minimalActionsOf, taskIdOf } from "../atari/mod.ts";
import { fmtBytes, StepProgress } from "../util/progress.ts";
import { runCli } from "../util/cli.ts";
import { ensureWritableDir, OutputDirError } from "../util/writable.ts";

const HELP = `Convert DQN-Replay (gzip'd .npy checkpoints) into JOWA per-game stores.

Usage: deno task convert --src DIR --out DIR [options]

  --src DIR          DQN-Replay root holding <Game>/<run>/replay_logs/, or one game's directory
  --out DIR          dataset root; each game's store is written to <out>/<Game>/
  --games A,B        games to convert (default: every known game found under --src)
  --runs N           number of runs chosen at random (seeded) per game (default 2)
  --run-ids 1,2      explicit runs instead of --runs
  --fraction F       fraction of the runs' transitions kept, as whole episodes (default 0.1)
  --transitions N    keep N transitions (whole episodes) instead of a fraction; fine-tuning
                     sets: --ckpts 40-50 --transitions 5000
  --seed S           seed of the run and episode choice (default 0)
  --ckpts A-B        only checkpoints A..B inclusive (e.g. 40-50 for the last 20%)
  --minimal-actions  full action ids of the minimal set, for a game not in the built-in table
  --overwrite        replace complete stores (default: skip them)
  --restart          ignore an interrupted conversion and start that game over (default: resume)
  --quiet            no progress bar
  -h, --help         this text

Interrupted conversions resume from the last finished checkpoint file when rerun with the
same options. A store is complete only once <out>/<Game>/manifest.json exists. --overwrite
builds the new store beside the old one (<out>/.<Game>.overwrite) and replaces the old one only
once the new one is complete: bad input or Ctrl-C leaves the old store as it was.

Files of another game or run mixed into a run directory ARE detected when
  - a file's action indices reach beyond this game's minimal action set (e.g. a file of an
    18-action game among Pong's 6-action files), or
  - a checkpoint's add_count is not above the one of the run's previous checkpoint.
They are NOT detected when the other game's minimal action set is no larger than this game's
AND its add_count continues the run's sequence: observations, rewards and episode statistics
are not compared, so such a file is converted as this game. Convert each game from its own
DQN-Replay directory.`;

function fail(msg: string, code = 1): never {
  console.error(`convert: ${msg}`);
  Deno.exit(code);
}

function num(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n)) fail(`--${name}: not a number: ${v}`, 2);
  return n;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        src: { type: "string" },
        out: { type: "string" },
        games: { type: "string" },
        runs: { type: "string" },
        "run-ids": { type: "string" },
        fraction: { type: "string" },
        transitions: { type: "string" },
        seed: { type: "string" },
        ckpts: { type: "string" },
        "minimal-actions": { type: "string" },
        overwrite: { type: "boolean" },
        restart: { type: "boolean" },
        quiet: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    fail(`${(e as Error).message} (see --help)`, 2);
  }
  if (values.help) {
    console.log(HELP);
    return;
  }
  if (!values.src || !values.out) fail("--src and --out are required (see --help)", 2);
  const src = values.src;
  if (!exists(src)) fail(`${src}: does not exist`);
  const fraction = num(values.fraction, "fraction", 0.1);
  if (!(fraction > 0 && fraction <= 1)) fail(`--fraction must be in (0, 1], got ${fraction}`, 2);
  const numRuns = num(values.runs, "runs", 2);
  let transitions: number | undefined;
  if (values.transitions !== undefined) {
    if (values.fraction !== undefined) fail("give --fraction or --transitions, not both", 2);
    transitions = num(values.transitions, "transitions", 0);
    if (!(Number.isInteger(transitions) && transitions > 0)) {
      fail(`--transitions must be a positive integer, got ${values.transitions}`, 2);
    }
  }
  if (!(Number.isInteger(numRuns) && numRuns > 0)) fail(`--runs must be a positive integer`, 2);
  const seed = num(values.seed, "seed", 0);
  let ckptRange: [number, number] | undefined;
  if (values.ckpts) {
    const m = /^(\d+)-(\d+)$/.exec(values.ckpts);
    if (!m) fail(`--ckpts must look like 40-50, got ${values.ckpts}`, 2);
    ckptRange = [Number(m[1]), Number(m[2])];
  }
  const isGameDir = (d: string) =>
    fs.readdirSync(d).some((n) => /^\d+$/.test(n) && fs.statSync(path.join(d, n)).isDirectory());
  // Which (game, directory) pairs to convert.
  let jobs: { game: string; dir: string }[];
  const requested = values.games?.split(",").map((s) => s.trim()).filter(Boolean);
  for (const g of requested ?? []) {
    try {
      taskIdOf(g);
    } catch (e) {
      fail(`--games: ${(e as Error).message}`, 2);
    }
  }
  if (isGameDir(src)) {
    const game = requested?.[0] ?? path.basename(path.resolve(src));
    if (requested && requested.length > 1) fail("--src is one game's directory; give one game", 2);
    const base = path.basename(path.resolve(src));
    let baseGame: string | null = null;
    try {
      baseGame = gameOfTaskId(taskIdOf(base));
    } catch {
      // directory not named after a game: trust --games
    }
    if (baseGame && baseGame !== gameOfTaskId(taskIdOf(game))) {
      fail(`${src}: directory is named ${base} but --games says ${game}`);
    }
    jobs = [{ game, dir: src }];
  } else {
    const games = requested ??
      Object.keys(MINIMAL_ACTIONS).filter((g) => exists(path.join(src, g)));
    if (games.length === 0) fail(`${src}: no known game directories found (use --games)`);
    jobs = games.map((game) => ({ game, dir: path.join(src, game) }));
  }
  // Before pass 1 (which reads every input file): an unwritable --out fails now, in one line.
  ensureWritableDir(values.out, `--out ${values.out}`);
  for (const { game, dir } of jobs) {
    let minimal: number[];
    if (values["minimal-actions"]) {
      minimal = values["minimal-actions"].split(",").map(Number);
      if (minimal.some((a) => !Number.isInteger(a) || a < 0 || a > 17)) {
        fail(`--minimal-actions: need full action ids 0..17`, 2);
      }
    } else {
      try {
        minimal = minimalActionsOf(game);
      } catch (e) {
        fail(`${dir}: ${(e as Error).message}`, 2);
      }
    }
    const bar = new StepProgress({
      label: `${game} copy`.padEnd(20),
      total: 0,
      unit: "",
      format: fmtBytes,
      enabled: !values.quiet,
    });
    const ibar = new StepProgress({
      label: `${game} check`.padEnd(20),
      total: 0,
      unit: "items",
      enabled: !values.quiet,
    });
    let last = [0, 0];
    const t0 = performance.now();
    const r = await convertGame({
      src: dir,
      out: path.join(values.out, game),
      game,
      minimalActions: minimal,
      runs: values["run-ids"]?.split(",").map((s) => s.trim()),
      numRuns,
      fraction,
      transitions,
      seed,
      ckptRange,
      overwrite: values.overwrite,
      restart: values.restart,
      onIndex: (d, t) => {
        ibar.total = t;
        ibar.update(d);
        if (d >= t) ibar.finish();
      },
      onProgress: (d, t) => {
        last = [d, t];
        bar.total = t;
        bar.update(d);
      },
    });
    if (r.skipped) {
      console.error(`${game}: complete store exists at ${r.out}, skipped (--overwrite replaces)`);
      continue;
    }
    bar.total = last[1];
    bar.update(last[0]);
    bar.finish();
    const secs = (performance.now() - t0) / 1000;
    console.error(
      `${game}: ${r.episodes} episodes, ${r.transitions} transitions -> ${r.out}` +
        `${r.resumed ? " (resumed)" : ""}; streamed ${fmtBytes(r.streamedBytes)} in ` +
        `${secs.toFixed(1)} s`,
    );
  }
}

if (import.meta.main) {
  // Commits are atomic, so stopping anywhere is safe; say how to continue.
  Deno.addSignalListener("SIGINT", () => {
    console.error("\nconvert: interrupted; rerun the same command to resume");
    Deno.exit(130);
  });
  // User errors: one readable line naming the file, no stack trace.
  await runCli(async () => {
    await main();
    return 0;
  }, { prefix: "convert: ", userErrors: [DataError, OutputDirError] });
}
