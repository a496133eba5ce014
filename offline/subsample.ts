/**
 * The paper's "low-data regime" subsampling: a seeded choice of runs (default 2 of 5) and of
 * whole episodes until a fraction (default 10%) of the transitions of those runs is reached.
 *
 * Unlike the public JOWA code, episodes are drawn WITHOUT replacement (a seeded shuffle, then
 * the shortest prefix reaching the target), so no episode is stored twice.
 * @module
 */
import { Rng } from "../util/rng.ts";

/** An episode of the source data, addressed by run, checkpoint and logical start row. */
export interface EpisodeRef {
  /** Run directory name. */
  run: string;
  /** Checkpoint index. */
  ckpt: number;
  /** Logical position of its first row in the checkpoint. */
  start: number;
  /** Rows. */
  length: number;
  /** Cut at a file edge. */
  truncated: boolean;
}

/**
 * Choose `count` runs out of `available`, seeded; returned in ascending run order.
 * @throws RangeError when fewer than `count` runs exist.
 */
export function chooseRuns(available: string[], count: number, seed: number): string[] {
  if (count > available.length) {
    throw new RangeError(`asked for ${count} runs, only ${available.length} exist`);
  }
  const order = new Rng(seed, 0x52554e53).shuffle([...available]);
  return order.slice(0, count).sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
}

/** Result of {@link selectEpisodes}. */
export interface Selection {
  /** Chosen episodes, sorted by (run, ckpt, start) for streaming. */
  episodes: EpisodeRef[];
  /** Rows of the chosen episodes. */
  transitions: number;
  /** ceil(fraction * total rows). */
  target: number;
  /** Rows of all candidate episodes. */
  totalTransitions: number;
}

/**
 * Shuffle the episodes with `seed` and keep the shortest prefix whose rows reach
 * `fraction` of the total (fraction 1 keeps everything), or `maxTransitions` rows when given
 * (e.g. 5000 for the fine-tuning sets).
 */
export function selectEpisodes(
  all: EpisodeRef[],
  fraction: number,
  seed: number,
  maxTransitions?: number,
): Selection {
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`fraction ${fraction} not in (0, 1]`);
  const total = all.reduce((s, e) => s + e.length, 0);
  const target = maxTransitions !== undefined
    ? Math.min(total, maxTransitions)
    : Math.ceil(fraction * total);
  const order = new Rng(seed, 0x45505353).shuffle(all.map((_, i) => i));
  const keep: number[] = [];
  let rows = 0;
  for (const i of order) {
    if (rows >= target) break;
    keep.push(i);
    rows += all[i].length;
  }
  keep.sort((a, b) => a - b); // input order is (run, ckpt, start)
  return {
    episodes: keep.map((i) => all[i]),
    transitions: rows,
    target,
    totalTransitions: total,
  };
}
