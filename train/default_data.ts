/**
 * The dataset of a run without `--data`: a small one collected from the emulator (uniform
 * random policy over each game's valid actions) into `<run>/data/<Game>/`. Collection is
 * skipped for games whose store is already complete (a resumed run).
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { collect } from "../offline/collector.ts";

/** Collect `steps` transitions per game into `<root>/<Game>`; returns the dataset root. */
export async function ensureCollected(
  root: string,
  games: string[],
  steps: number,
  seed: number,
  log: (s: string) => void,
): Promise<string> {
  const missing = games.filter((g) => !fs.existsSync(path.join(root, g, "manifest.json")));
  if (missing.length === 0) return root;
  log(`collecting ${steps} uniform-random steps of ${missing.join(", ")} into ${root}`);
  const t0 = performance.now();
  const summary = await collect({
    out: root,
    games: missing,
    steps,
    seed,
    envsPerGame: 8,
    numProcesses: 2,
    overwrite: true,
  });
  const rows = summary.games.map((g) => `${g.game} ${g.transitions} rows/${g.episodes} episodes`);
  log(`collected ${rows.join(", ")} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return root;
}
