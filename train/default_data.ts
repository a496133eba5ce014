/**
 * The dataset of a run without `--data`: a small one collected from the emulator (uniform
 * random policy over each game's valid actions) into `<run>/data/<Game>/`. Collection is
 * skipped for games whose store is already complete with the requested steps and seed (a
 * resumed run, or one started over after failing before its first checkpoint).
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { collect } from "../offline/collector.ts";
import { readManifest } from "../offline/store.ts";

/**
 * Why the store in `dir` cannot stand for this collection (null: it can): it must be complete
 * and hold `steps` rows collected with `seed`. "" for a missing store (new: nothing to say).
 */
export function collectedStoreProblem(dir: string, steps: number, seed: number): string | null {
  if (!fs.existsSync(dir)) return "";
  if (!fs.existsSync(path.join(dir, "manifest.json"))) return "its store is incomplete";
  let m;
  try {
    m = readManifest(dir);
  } catch (e) {
    return (e as Error).message.split("\n")[0];
  }
  const src = m.source as { kind?: unknown; seed?: unknown };
  if (src.kind !== "emulator" || src.seed !== seed || m.transitions !== steps) {
    return `its store holds ${m.transitions} rows (${src.kind}, seed ${src.seed}), ` +
      `not ${steps} collected with seed ${seed}`;
  }
  return null;
}

/** Collect `steps` transitions per game into `<root>/<Game>`; returns the dataset root. */
export async function ensureCollected(
  root: string,
  games: string[],
  steps: number,
  seed: number,
  log: (s: string) => void,
): Promise<string> {
  const missing = games.filter((g) => {
    const why = collectedStoreProblem(path.join(root, g), steps, seed);
    if (why) log(`recollecting ${g}: ${why}`);
    return why !== null;
  });
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
