/**
 * DQN-Replay -> per-game store conversion (library side of `deno task convert`).
 *
 * Pass 1 validates every file of the chosen runs (headers, dtypes, shapes, gzip trailers,
 * action ranges, padding rows) and indexes the episodes; nothing is written before it passes.
 * The seeded selection of runs and episodes is then streamed, checkpoint by checkpoint, into
 * the store; each finished checkpoint is committed with the converter's position, so an
 * interrupted conversion resumes where it stopped. Bad input found while streaming deletes the
 * partial store; only a complete store gets a manifest. An overwrite builds the new store beside
 * the old one and swaps them only when it is complete (see writer.ts), so bad input found late
 * leaves the old store as it was.
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { DataError, exists } from "./fs_util.ts";
import { ensureWritableDir } from "../util/writable.ts";
import { FILES } from "./layout.ts";
import {
  type CheckpointIndex,
  indexCheckpoint,
  listRuns,
  readEpisodes,
  type ReplayCheckpoint,
  scanRun,
} from "./dqn_replay.ts";
import { chooseRuns, type EpisodeRef, selectEpisodes } from "./subsample.ts";
import { openStoreWriter } from "./writer.ts";

/** Options of {@link convertGame}. */
export interface ConvertOptions {
  /** DQN-Replay game directory (holding run directories 1..5). */
  src: string;
  /** Store directory to create (conventionally `<datasetRoot>/<Game>`). */
  out: string;
  /** Game name (scores.json spelling). */
  game: string;
  /** The game's minimal action set as full action ids (scores.json `minimalActions`). */
  minimalActions: number[];
  /** Explicit runs to use (overrides numRuns). */
  runs?: string[];
  /** Number of runs chosen at random (seeded) from those present (default 2). */
  numRuns?: number;
  /** Fraction of the chosen runs' transitions to keep, by whole episodes (default 0.1). */
  fraction?: number;
  /** Keep this many transitions (whole episodes, reaching at least it) instead of a fraction. */
  transitions?: number;
  /** Seed of the run and episode choice (default 0). */
  seed?: number;
  /** Only checkpoints in [first, last] (inclusive). */
  ckptRange?: [number, number];
  /** Replace a complete store (default: skip it). */
  overwrite?: boolean;
  /** Ignore an interrupted conversion's journal and start over (default: resume). */
  restart?: boolean;
  /** Observation bytes per chunk file. */
  chunkBytes?: number;
  /** Progress of pass 1: checkpoints validated and indexed so far, of the total. */
  onIndex?: (done: number, total: number) => void;
  /** Progress: uncompressed observation bytes streamed so far, of the total to stream. */
  onProgress?: (done: number, total: number) => void;
}

/** What {@link convertGame} did. */
export interface ConvertResult {
  /** Game name. */
  game: string;
  /** Store directory. */
  out: string;
  /** True when a complete store was already there and left alone. */
  skipped: boolean;
  /** True when an interrupted conversion was continued. */
  resumed: boolean;
  /** Episodes in the store. */
  episodes: number;
  /** Rows in the store. */
  transitions: number;
  /** Uncompressed observation bytes streamed in this call. */
  streamedBytes: number;
}

interface Unit {
  cp: ReplayCheckpoint;
  idx: CheckpointIndex;
  refs: EpisodeRef[];
}

/**
 * Convert one game of DQN-Replay into a store.
 * @throws DataError naming the offending file for missing, truncated, mistyped or mixed input.
 */
export async function convertGame(opts: ConvertOptions): Promise<ConvertResult> {
  const { src, out, game, minimalActions } = opts;
  const seed = opts.seed ?? 0, fraction = opts.fraction ?? 0.1;
  const base = { game, out, streamedBytes: 0 };
  if (exists(path.join(out, FILES.manifest)) && !opts.overwrite) {
    return { ...base, skipped: true, resumed: false, episodes: 0, transitions: 0 };
  }
  // Fail on an unwritable destination before the (long) validation pass, not after it.
  ensureWritableDir(path.dirname(out));
  if (exists(out) && !fs.statSync(out).isDirectory()) {
    throw new DataError(`${out}: is a file, not a store directory`);
  }
  // ---- pass 1: validate and index (writes nothing) ----
  const available = listRuns(src);
  let runs: string[];
  if (opts.runs) {
    for (const r of opts.runs) {
      if (!available.includes(r)) throw new DataError(`${path.join(src, r)}: run does not exist`);
    }
    runs = [...opts.runs];
  } else {
    runs = chooseRuns(available, Math.min(opts.numRuns ?? 2, available.length), seed);
  }
  const units: Unit[] = [];
  const checkpoints: Record<string, number[]> = {};
  let droppedHeadRows = 0;
  const perRun = runs.map((run) =>
    scanRun(src, run).checkpoints.filter((c) =>
      !opts.ckptRange || (c.ckpt >= opts.ckptRange[0] && c.ckpt <= opts.ckptRange[1])
    )
  );
  const numCkpts = perRun.reduce((a, c) => a + c.length, 0);
  let indexed = 0;
  opts.onIndex?.(0, numCkpts);
  for (const [r, run] of runs.entries()) {
    const cps = perRun[r];
    checkpoints[run] = cps.map((c) => c.ckpt);
    let prev: { add: number; file: string } | null = null;
    for (const cp of cps) {
      const idx = await indexCheckpoint(cp, minimalActions.length, game);
      opts.onIndex?.(++indexed, numCkpts);
      if (prev && idx.addCount <= prev.add) {
        throw new DataError(
          `${cp.files.addCount}: add_count ${idx.addCount} is not above ${prev.add} of ` +
            `${prev.file}: files from another run or game mixed in?`,
        );
      }
      prev = { add: idx.addCount, file: cp.files.addCount };
      droppedHeadRows += idx.droppedHeadRows;
      const refs = idx.episodes.map((e) => ({ run, ckpt: cp.ckpt, ...e }));
      units.push({ cp, idx, refs });
    }
  }
  const all = units.flatMap((u) => u.refs);
  if (all.length === 0) throw new DataError(`${src}: no episodes found in runs ${runs.join(", ")}`);
  const sel = selectEpisodes(all, fraction, seed, opts.transitions);
  const chosen = new Set(sel.episodes);
  const selection = sel.episodes.map((e) => [Number(e.run), e.ckpt, e.start, e.length]);
  const selectionHash = (zlib.crc32(JSON.stringify({ runs, selection, minimalActions })) >>> 0)
    .toString(16);
  const missing: Record<string, number[]> = {};
  const allIdx = Object.values(checkpoints).flat();
  const lo = Math.min(...allIdx), hi = Math.max(...allIdx);
  for (const run of runs) {
    const have = new Set(checkpoints[run]);
    const gaps: number[] = [];
    for (let i = lo; i <= hi; i++) if (!have.has(i)) gaps.push(i);
    missing[run] = gaps;
  }
  // ---- pass 2: stream the chosen episodes into the store ----
  const w = await openStoreWriter(out, {
    game,
    minimalActions,
    source: {
      kind: "dqn-replay",
      path: path.resolve(src),
      runsAvailable: available,
      runs,
      checkpoints,
      missingCheckpoints: missing,
      ckptRange: opts.ckptRange ?? null,
      rewardsClipped: true,
      actionMapping: "DQN-Replay minimal-set index k -> minimalActions[k]",
      subsample: {
        seed,
        fraction: opts.transitions === undefined ? fraction : null,
        transitions: opts.transitions ?? null,
        unit: "whole episodes",
        withReplacement: false,
        targetTransitions: sel.target,
        selectedTransitions: sel.transitions,
        totalTransitions: sel.totalTransitions,
        selectedEpisodes: sel.episodes.length,
        totalEpisodes: all.length,
        selectionHash,
      },
      droppedHeadRows,
      selection,
      selectionColumns: ["run", "ckpt", "logicalStart", "length"],
    },
    resume: !opts.restart,
    overwrite: opts.overwrite,
    chunkBytes: opts.chunkBytes,
    autoCommit: false,
  });
  const state = w.resumeState as { unit: number; selectionHash: string } | undefined;
  if (state && state.selectionHash !== selectionHash) {
    w.abort();
    throw new DataError(
      `${path.join(out, FILES.journal)}: interrupted conversion used other inputs or options; ` +
        `rerun with --restart`,
    );
  }
  const startUnit = state?.unit ?? 0;
  if (!state && w.episodes > 0) {
    w.abort();
    throw new DataError(`${path.join(out, FILES.journal)}: journal without converter state`);
  }
  const todo = units.slice(startUnit).filter((u) => u.refs.some((r) => chosen.has(r)));
  const total = todo.reduce((s, u) => s + u.idx.observationBytes, 0);
  let done = 0;
  opts.onProgress?.(0, total);
  try {
    for (let i = startUnit; i < units.length; i++) {
      const u = units[i];
      const spans = u.refs.filter((r) => chosen.has(r));
      if (spans.length > 0) {
        const eps = readEpisodes(u.cp, u.idx, spans, minimalActions, game, (n) => {
          done += n;
          opts.onProgress?.(done, total);
        });
        for await (const ep of eps) await w.addEpisode(ep);
      }
      await w.commit({ unit: i + 1, selectionHash });
    }
    const result = { episodes: w.episodes, transitions: w.transitions };
    await w.close();
    return { ...base, ...result, skipped: false, resumed: startUnit > 0, streamedBytes: done };
  } catch (e) {
    // Bad input: leave nothing half-written. Anything else (e.g. disk full): keep the journal.
    if (e instanceof DataError) w.discard();
    else w.abort();
    throw e;
  }
}
