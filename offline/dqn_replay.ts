/**
 * Reading DQN-Replay (Agarwal et al. 2020) as published: `<Game>/<run>/replay_logs/` holding,
 * per checkpoint i, gzip'd `.npy` arrays `$store$_{observation,action,reward,terminal}_ckpt.i.gz`
 * and `add_count_ckpt.i.gz`. Each checkpoint is a snapshot of Dopamine's circular buffer of N
 * rows, so this module also undoes Dopamine's quirks:
 *
 * - the buffer wraps: with add_count A > N the oldest row is at cursor A % N, and the rows
 *   are read in the logical (time) order cursor..N-1, 0..cursor-1; with A < N only A rows exist;
 * - each episode starts with 3 all-zero padding rows (zero frame, action 0, reward 0, not
 *   terminal), which are checked and dropped;
 * - episode ends come from the terminal flags; the rows after the last terminal form an episode
 *   cut at the file edge (kept, flagged truncated; its last row is the "stale" newest slot whose
 *   next observation was never written), and when the buffer wrapped, the rows before the first
 *   terminal belong to an episode whose start was overwritten (dropped: its start is unknown);
 * - actions are indices into the game's minimal action set, mapped to full 18-action ids.
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { DataError, exists } from "./fs_util.ts";
import { FRAME_BYTES, FRAME_SIZE } from "./layout.ts";
import { gzipTrailerSize, NpyGzReader } from "./npy_gz.ts";
import type { EpisodeRecord } from "./writer.ts";

/** Dopamine's zero-padding rows at the start of every episode (stack size 4 - 1). */
export const PADDING_ROWS = 3;

/** The files of one checkpoint of one run. */
export interface ReplayCheckpoint {
  /** Run directory name ("1".."5"). */
  run: string;
  /** Checkpoint index i. */
  ckpt: number;
  /** Paths of the checkpoint's files. */
  files: {
    observation: string;
    action: string;
    reward: string;
    terminal: string;
    addCount: string;
  };
}

/** The checkpoints found in one run. */
export interface ReplayRun {
  /** Run directory name. */
  run: string;
  /** Directory holding the checkpoint files. */
  dir: string;
  /** Complete checkpoints, ascending. */
  checkpoints: ReplayCheckpoint[];
}

function fileOf(dir: string, kind: string, i: number): string {
  return kind === "addCount"
    ? path.join(dir, `add_count_ckpt.${i}.gz`)
    : path.join(dir, `$store$_${kind}_ckpt.${i}.gz`);
}

/** Run directories (numeric names) of a DQN-Replay game directory, ascending. */
export function listRuns(gameDir: string): string[] {
  if (!exists(gameDir)) throw new DataError(`${gameDir}: DQN-Replay game directory does not exist`);
  const runs = fs.readdirSync(gameDir).filter((n) =>
    /^\d+$/.test(n) && fs.statSync(path.join(gameDir, n)).isDirectory()
  ).sort((a, b) => Number(a) - Number(b));
  if (runs.length === 0) throw new DataError(`${gameDir}: no run directories (1..5) found`);
  return runs;
}

/**
 * Find the checkpoints of one run. A checkpoint index counts as present when any of its array
 * files exists; then all five files must exist.
 * @throws DataError naming the first missing file of a partially present checkpoint.
 */
export function scanRun(gameDir: string, run: string): ReplayRun {
  let dir = path.join(gameDir, run, "replay_logs");
  if (!exists(dir)) dir = path.join(gameDir, run);
  const found = new Set<number>();
  for (const name of fs.readdirSync(dir)) {
    const m = /^\$store\$_(observation|action|reward|terminal)_ckpt\.(\d+)\.gz$/.exec(name);
    if (m) found.add(Number(m[2]));
  }
  const checkpoints = [...found].sort((a, b) => a - b).map((i) => {
    const files = {
      observation: fileOf(dir, "observation", i),
      action: fileOf(dir, "action", i),
      reward: fileOf(dir, "reward", i),
      terminal: fileOf(dir, "terminal", i),
      addCount: fileOf(dir, "addCount", i),
    };
    for (const f of Object.values(files)) {
      if (!exists(f)) {
        throw new DataError(`${f}: missing file (other files of checkpoint ${i} exist)`);
      }
    }
    return { run, ckpt: i, files };
  });
  if (checkpoints.length === 0) throw new DataError(`${dir}: no DQN-Replay checkpoint files`);
  return { run, dir, checkpoints };
}

/** An episode inside one checkpoint, in logical (time-ordered) row positions. */
export interface EpisodeSpan {
  /** Logical position of its first real (non-padding) row. */
  start: number;
  /** Number of rows. */
  length: number;
  /** Cut at the file edge rather than ended by a terminal flag. */
  truncated: boolean;
}

/** Pass-1 result for one checkpoint: its layout and episodes. */
export interface CheckpointIndex {
  /** Rows of the arrays (buffer capacity). */
  capacity: number;
  /** Dopamine's add_count. */
  addCount: number;
  /** Physical row of logical position 0. */
  cursor: number;
  /** Valid rows: min(addCount, capacity). */
  validRows: number;
  /** Episodes in time order. */
  episodes: EpisodeSpan[];
  /** Rows before the first terminal of a wrapped buffer (episode start overwritten). */
  droppedHeadRows: number;
  /** Uncompressed bytes of the observation array. */
  observationBytes: number;
}

async function readSmall(
  file: string,
  dtypes: string[],
  shape: (s: number[]) => boolean,
  what: string,
): Promise<{ data: Uint8Array; dtype: string; shape: number[] }> {
  const r = await NpyGzReader.open(file);
  const h = r.header;
  if (!dtypes.includes(h.dtype) || !shape(h.shape)) {
    r.close();
    throw new DataError(
      `${file}: expected ${what}, got ${h.dtype} with shape (${h.shape.join(", ")})`,
    );
  }
  checkTrailer(file, h.headerBytes + h.dataBytes);
  const data = await r.readAll();
  return { data, dtype: h.dtype, shape: h.shape };
}

function checkTrailer(file: string, uncompressed: number): void {
  const isize = gzipTrailerSize(file);
  if (isize !== uncompressed % 0x100000000) {
    throw new DataError(
      `${file}: truncated or corrupt gzip (trailer size ${isize} != ${uncompressed} mod 2^32)`,
    );
  }
}

/** The per-step arrays of a checkpoint, read whole (small: 9 bytes a row). */
export interface StepArrays {
  /** Minimal-set action indices. */
  actions: Int32Array;
  /** Clipped rewards. */
  rewards: Float32Array;
  /** Terminal flags. */
  terminals: Uint8Array;
  /** add_count. */
  addCount: number;
}

/**
 * Read and validate a checkpoint's actions, rewards, terminals and add_count, and the header of
 * its observation file (dtype uint8, shape (N,84,84), same N, intact gzip trailer).
 * @throws DataError naming the offending file.
 */
export async function readStepArrays(
  cp: ReplayCheckpoint,
  numMinimal: number,
  game: string,
): Promise<StepArrays & { observationBytes: number }> {
  const f = cp.files;
  const obs = await NpyGzReader.open(f.observation);
  const oh = obs.header;
  obs.close();
  if (
    oh.dtype !== "uint8" || oh.shape.length !== 3 || oh.shape[1] !== FRAME_SIZE ||
    oh.shape[2] !== FRAME_SIZE
  ) {
    throw new DataError(
      `${f.observation}: expected uint8 (N, 84, 84), got ${oh.dtype} (${oh.shape.join(", ")})`,
    );
  }
  checkTrailer(f.observation, oh.headerBytes + oh.dataBytes);
  const N = oh.shape[0];
  const vec = (s: number[]) => s.length === 1 && s[0] === N;
  const a = await readSmall(f.action, ["int32"], vec, `int32 (${N},)`);
  const r = await readSmall(f.reward, ["float32"], vec, `float32 (${N},)`);
  const t = await readSmall(f.terminal, ["uint8", "bool"], vec, `uint8 (${N},)`);
  const c = await readSmall(
    f.addCount,
    ["int64", "uint64", "int32"],
    (s) => s.length === 0 || (s.length === 1 && s[0] === 1),
    "an integer scalar",
  );
  const addCount = c.dtype === "int32"
    ? new Int32Array(c.data.buffer)[0]
    : Number(new BigInt64Array(c.data.buffer)[0]);
  if (!(addCount >= 0)) throw new DataError(`${f.addCount}: negative add_count ${addCount}`);
  const actions = new Int32Array(a.data.buffer);
  const valid = Math.min(addCount, N);
  for (let i = 0; i < valid; i++) {
    const k = actions[i];
    if (k < 0 || k >= numMinimal) {
      throw new DataError(
        `${f.action}: action index ${k} at row ${i} is outside ${game}'s ${numMinimal}-action ` +
          `minimal set (file from another game?)`,
      );
    }
  }
  const terminals = t.data;
  for (let i = 0; i < valid; i++) {
    if (terminals[i] > 1) {
      throw new DataError(`${f.terminal}: terminal flag ${terminals[i]} at row ${i}`);
    }
  }
  return {
    actions,
    rewards: new Float32Array(r.data.buffer),
    terminals,
    addCount,
    observationBytes: oh.dataBytes,
  };
}

/**
 * Split a checkpoint into episodes (pass 1), checking the padding rows' actions and rewards.
 * @throws DataError when the terminal flags and padding rows do not line up.
 */
export function indexEpisodes(
  cp: ReplayCheckpoint,
  s: StepArrays,
  capacity: number,
): CheckpointIndex {
  const wrapped = s.addCount > capacity;
  const cursor = wrapped ? s.addCount % capacity : 0;
  const V = Math.min(s.addCount, capacity);
  const phys = (p: number) => (cursor + p) % capacity;
  const episodes: EpisodeSpan[] = [];
  let droppedHeadRows = 0;
  let segStart = 0; // logical start of the current segment (padding included)
  let clean = !wrapped; // whether the segment begins at a true episode start
  const takeSegment = (end: number, terminal: boolean) => {
    // Segment [segStart, end] inclusive.
    if (!clean) {
      droppedHeadRows = end - segStart + 1;
      return;
    }
    const first = segStart + PADDING_ROWS;
    for (let p = segStart; p < Math.min(first, end + 1); p++) {
      const r = phys(p);
      if (s.actions[r] !== 0 || s.rewards[r] !== 0 || s.terminals[r] !== 0) {
        throw new DataError(
          `${cp.files.terminal}: row ${r} should be an episode-start padding row ` +
            `(action 0, reward 0, not terminal)`,
        );
      }
    }
    if (first > end) {
      if (terminal) {
        throw new DataError(
          `${cp.files.terminal}: terminal flag inside padding at row ${phys(end)}`,
        );
      }
      return; // cut inside the padding: nothing to keep
    }
    episodes.push({ start: first, length: end - first + 1, truncated: !terminal });
  };
  for (let p = 0; p < V; p++) {
    if (s.terminals[phys(p)] === 1) {
      takeSegment(p, true);
      segStart = p + 1;
      clean = true;
    }
  }
  if (segStart < V) takeSegment(V - 1, false);
  return {
    capacity,
    addCount: s.addCount,
    cursor,
    validRows: V,
    episodes,
    droppedHeadRows,
    observationBytes: capacity * FRAME_BYTES,
  };
}

/** Index one checkpoint: validate its files and find its episodes. */
export async function indexCheckpoint(
  cp: ReplayCheckpoint,
  numMinimal: number,
  game: string,
): Promise<CheckpointIndex> {
  const s = await readStepArrays(cp, numMinimal, game);
  return indexEpisodes(cp, s, s.actions.length);
}

/**
 * Stream a checkpoint's observations once and yield the requested episodes (full action ids)
 * in the order their last row appears in the file (physical order: for a wrapped buffer the
 * newest episodes come first; holding them back for time order could need gigabytes). Also
 * checks that every padding row's frame is all zero.
 * @param spans episodes to extract (from {@link indexCheckpoint} of the same checkpoint).
 * @param onBytes progress callback with uncompressed observation bytes consumed.
 */
export async function* readEpisodes(
  cp: ReplayCheckpoint,
  idx: CheckpointIndex,
  spans: EpisodeSpan[],
  minimalActions: number[],
  game: string,
  onBytes?: (n: number) => void,
): AsyncGenerator<EpisodeRecord> {
  const s = await readStepArrays(cp, minimalActions.length, game);
  const N = idx.capacity;
  if (s.actions.length !== N || s.addCount !== idx.addCount) {
    throw new DataError(`${cp.files.action}: changed since it was indexed`);
  }
  const phys = (p: number) => (idx.cursor + p) % N;
  // owner[r] = e+1 for rows of requested episode e, -1 for padding rows, 0 otherwise.
  const owner = new Int32Array(N);
  for (const ep of idx.episodes) {
    for (let p = Math.max(0, ep.start - PADDING_ROWS); p < ep.start; p++) owner[phys(p)] = -1;
  }
  spans.forEach((ep, e) => {
    for (let p = ep.start; p < ep.start + ep.length; p++) owner[phys(p)] = e + 1;
  });
  const bufs: (Uint8Array | null)[] = spans.map(() => null);
  const filled = new Int32Array(spans.length);
  const reader = await NpyGzReader.open(cp.files.observation);
  const BLOCK = 512;
  const block = new Uint8Array(BLOCK * FRAME_BYTES);
  try {
    for (let r0 = 0; r0 < N; r0 += BLOCK) {
      const n = Math.min(BLOCK, N - r0);
      const view = block.subarray(0, n * FRAME_BYTES);
      await reader.readInto(view);
      onBytes?.(view.byteLength);
      const done: number[] = [];
      for (let i = 0; i < n; i++) {
        const r = r0 + i, o = owner[r];
        if (o === 0) continue;
        const frame = view.subarray(i * FRAME_BYTES, (i + 1) * FRAME_BYTES);
        if (o === -1) {
          for (let k = 0; k < FRAME_BYTES; k++) {
            if (frame[k] !== 0) {
              throw new DataError(
                `${cp.files.observation}: row ${r} should be an all-zero padding frame`,
              );
            }
          }
          continue;
        }
        const e = o - 1, ep = spans[e];
        const buf = bufs[e] ??= new Uint8Array(ep.length * FRAME_BYTES);
        const t = (r - phys(ep.start) + N) % N;
        buf.set(frame, t * FRAME_BYTES);
        if (++filled[e] === ep.length) done.push(e);
      }
      for (const e of done) {
        yield makeRecord(spans[e], bufs[e]!, s, phys, minimalActions);
        bufs[e] = null;
      }
    }
    await reader.finish();
  } finally {
    reader.close();
  }
}

function makeRecord(
  ep: EpisodeSpan,
  frames: Uint8Array,
  s: StepArrays,
  phys: (p: number) => number,
  minimal: number[],
): EpisodeRecord {
  const T = ep.length;
  const actions = new Uint8Array(T), rewards = new Float32Array(T), terminals = new Uint8Array(T);
  for (let t = 0; t < T; t++) {
    const r = phys(ep.start + t);
    actions[t] = minimal[s.actions[r]];
    rewards[t] = s.rewards[r];
    terminals[t] = s.terminals[r];
  }
  return { frames, actions, rewards, terminals, truncated: ep.truncated };
}
