/**
 * Readers of complete per-game stores and of dataset roots (`<root>/<Game>/` per game).
 * Observations stay on disk and are read by row range (pread); the small per-step arrays
 * (actions, rewards, terminals: 6 bytes a row) are loaded into memory for fast sampling.
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { DataError, exists, preadExact } from "./fs_util.ts";
import {
  FILES,
  META_FILES,
  type ObsSpec,
  obsSpec,
  STORE_FORMAT,
  STORE_VERSION,
  type StoreForm,
  type StoreManifest,
} from "./layout.ts";

/** One episode read back from a store. */
export interface StoredEpisode {
  /** Observations: frames [T,84,84] uint8 or tokens [T,36] uint16. */
  obs: Uint8Array | Uint16Array;
  /** [T] full action ids. */
  actions: Uint8Array;
  /** [T] raw rewards. */
  rewards: Float32Array;
  /** [T] terminal flags. */
  terminals: Uint8Array;
  /** Whether the episode was cut rather than ended. */
  truncated: boolean;
}

/** A complete per-game store opened for reading. */
export interface GameStore {
  /** Store directory. */
  readonly dir: string;
  /** The parsed manifest. */
  readonly manifest: StoreManifest;
  /** Observation layout. */
  readonly spec: ObsSpec;
  /** Game name. */
  readonly game: string;
  /** Task-embedding row. */
  readonly taskId: number;
  /** Episode count E. */
  readonly numEpisodes: number;
  /** Row count N. */
  readonly numRows: number;
  /** [E+1] episode row offsets. */
  readonly offsets: Float64Array;
  /** [E] 1 where the episode is truncated. */
  readonly truncated: Uint8Array;
  /** [N] full action ids. */
  readonly actions: Uint8Array;
  /** [N] raw rewards. */
  readonly rewards: Float32Array;
  /** [N] terminal flags. */
  readonly terminals: Uint8Array;
  /** Copy observation rows [row, row+n) (never across chunks: stay within one episode). */
  readObsRows(row: number, n: number, dst: Uint8Array, dstOffset: number): void;
  /** Read a whole episode. */
  readEpisode(e: number): StoredEpisode;
  /** Recompute every file's CRC-32 and compare with the manifest; throws DataError on mismatch. */
  verify(): void;
  /** Close open file handles. */
  close(): void;
}

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** Also check CRC-32 of every file (reads the whole store; default false). */
  verify?: boolean;
}

/**
 * Open a complete store. Checks the manifest, every file's presence and size, and the episode
 * table's consistency.
 * @throws DataError naming the file when the store is missing, incomplete or inconsistent.
 */
export function openStore(dir: string, opts: OpenStoreOptions = {}): GameStore {
  const store = new Store(dir, readManifest(dir));
  if (opts.verify) store.verify();
  return store;
}

/**
 * Read and check the manifest of a complete store without loading any data.
 * @throws DataError when the store is missing or incomplete.
 */
export function readManifest(dir: string): StoreManifest {
  const mpath = path.join(dir, FILES.manifest);
  if (!exists(mpath)) {
    const why = exists(path.join(dir, FILES.journal))
      ? "store is incomplete (an interrupted writer left journal.json; resume or redo it)"
      : "no store here";
    throw new DataError(`${mpath}: missing: ${why}`);
  }
  let m: StoreManifest;
  try {
    m = JSON.parse(fs.readFileSync(mpath, "utf8"));
  } catch (e) {
    throw new DataError(`${mpath}: unreadable manifest (${(e as Error).message})`);
  }
  if (m.format !== STORE_FORMAT || m.version !== STORE_VERSION) {
    throw new DataError(`${mpath}: not a ${STORE_FORMAT} v${STORE_VERSION} manifest`);
  }
  return m;
}

class Store implements GameStore {
  readonly dir: string;
  readonly manifest: StoreManifest;
  readonly spec: ObsSpec;
  readonly offsets: Float64Array;
  readonly truncated: Uint8Array;
  readonly actions: Uint8Array;
  readonly rewards: Float32Array;
  readonly terminals: Uint8Array;
  readonly chunkStarts: Float64Array;
  readonly fds: number[];

  constructor(dir: string, m: StoreManifest) {
    this.dir = dir;
    this.manifest = m;
    this.spec = obsSpec(m.form as StoreForm);
    const N = m.transitions, E = m.episodes;
    const expect: Record<string, number> = {
      [FILES.actions]: N,
      [FILES.rewards]: 4 * N,
      [FILES.terminals]: N,
      [FILES.offsets]: 8 * (E + 1),
      [FILES.truncated]: E,
    };
    const data: Record<string, Uint8Array> = {};
    for (const f of META_FILES) {
      const p = path.join(dir, f);
      if (!exists(p)) throw new DataError(`${p}: missing file of a complete store`);
      const buf = new Uint8Array(fs.readFileSync(p));
      if (buf.byteLength !== expect[f] || buf.byteLength !== m.files[f]?.bytes) {
        throw new DataError(`${p}: ${buf.byteLength} bytes, manifest implies ${expect[f]}`);
      }
      data[f] = buf;
    }
    this.actions = data[FILES.actions];
    this.rewards = new Float32Array(data[FILES.rewards].buffer, 0, N);
    this.terminals = data[FILES.terminals];
    this.truncated = data[FILES.truncated];
    const off64 = new BigInt64Array(data[FILES.offsets].buffer, 0, E + 1);
    this.offsets = Float64Array.from(off64, Number);
    const opath = path.join(dir, FILES.offsets);
    for (let e = 0; e < E; e++) {
      if (!(this.offsets[e + 1] > this.offsets[e])) {
        throw new DataError(`${opath}: episode ${e} has no rows`);
      }
    }
    if (this.offsets[0] !== 0 || this.offsets[E] !== N) {
      throw new DataError(`${opath}: offsets do not span ${N} rows`);
    }
    let row = 0;
    this.chunkStarts = new Float64Array(m.chunks.length + 1);
    m.chunks.forEach((c, i) => {
      const p = path.join(dir, c.file);
      if (c.firstRow !== row) throw new DataError(`${mpath(dir)}: chunk ${c.file} out of order`);
      if (!exists(p)) throw new DataError(`${p}: missing chunk of a complete store`);
      const size = fs.statSync(p).size;
      if (size !== c.rows * this.spec.rowBytes) {
        throw new DataError(`${p}: ${size} bytes, expected ${c.rows * this.spec.rowBytes}`);
      }
      this.chunkStarts[i] = row;
      row += c.rows;
    });
    this.chunkStarts[m.chunks.length] = row;
    if (row !== N) throw new DataError(`${mpath(dir)}: chunks hold ${row} rows, not ${N}`);
    this.fds = m.chunks.map(() => -1);
  }

  get game(): string {
    return this.manifest.game;
  }
  get taskId(): number {
    return this.manifest.taskId;
  }
  get numEpisodes(): number {
    return this.manifest.episodes;
  }
  get numRows(): number {
    return this.manifest.transitions;
  }

  chunkOf(row: number): number {
    // Largest i with chunkStarts[i] <= row.
    let lo = 0, hi = this.manifest.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.chunkStarts[mid] <= row) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  readObsRows(row: number, n: number, dst: Uint8Array, dstOffset: number): void {
    if (n <= 0) return;
    const c = this.chunkOf(row);
    if (row + n > this.chunkStarts[c + 1]) throw new RangeError(`rows ${row}+${n} span two chunks`);
    if (this.fds[c] < 0) {
      this.fds[c] = fs.openSync(path.join(this.dir, this.manifest.chunks[c].file), "r");
    }
    const rb = this.spec.rowBytes;
    preadExact(
      this.fds[c],
      dst,
      dstOffset,
      n * rb,
      (row - this.chunkStarts[c]) * rb,
      this.manifest.chunks[c].file,
    );
  }

  readEpisode(e: number): StoredEpisode {
    if (e < 0 || e >= this.numEpisodes) throw new RangeError(`episode ${e} out of range`);
    const a = this.offsets[e], b = this.offsets[e + 1], T = b - a;
    const bytes = new Uint8Array(T * this.spec.rowBytes);
    this.readObsRows(a, T, bytes, 0);
    return {
      obs: this.spec.form === "frames" ? bytes : new Uint16Array(bytes.buffer),
      actions: this.actions.slice(a, b),
      rewards: this.rewards.slice(a, b),
      terminals: this.terminals.slice(a, b),
      truncated: this.truncated[e] === 1,
    };
  }

  verify(): void {
    for (const f of META_FILES) {
      const p = path.join(this.dir, f);
      const crc = hex(zlib.crc32(fs.readFileSync(p)));
      if (crc !== this.manifest.files[f].crc32) throw new DataError(`${p}: checksum mismatch`);
    }
    for (const c of this.manifest.chunks) {
      const p = path.join(this.dir, c.file);
      if (hex(crcFile(p)) !== c.crc32) throw new DataError(`${p}: checksum mismatch`);
    }
  }

  close(): void {
    this.fds.forEach((fd, i) => {
      if (fd >= 0) fs.closeSync(fd);
      this.fds[i] = -1;
    });
  }
}

function mpath(dir: string): string {
  return path.join(dir, FILES.manifest);
}

function hex(crc: number): string {
  return (crc >>> 0).toString(16).padStart(8, "0");
}

function crcFile(p: string): number {
  const fd = fs.openSync(p, "r");
  const buf = new Uint8Array(8 << 20);
  let crc = 0, pos = 0;
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.byteLength, pos);
      if (n === 0) break;
      crc = zlib.crc32(buf.subarray(0, n), crc);
      pos += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return crc;
}

/** Options of {@link openDataset}. */
export interface OpenDatasetOptions extends OpenStoreOptions {
  /** Only these games (default: every subdirectory holding a store). */
  games?: string[];
}

/**
 * Open every per-game store under a dataset root (`<root>/<Game>/`), sorted by game name.
 * @throws DataError when a subdirectory holds an incomplete store, when stores mix forms,
 *   or when a requested game is missing.
 */
export function openDataset(root: string, opts: OpenDatasetOptions = {}): GameStore[] {
  const stores = datasetStoreDirs(root, opts.games).map((d) => openStore(d, opts));
  const forms = new Set(stores.map((s) => s.spec.form));
  if (forms.size > 1) throw new DataError(`${root}: stores mix frame and token forms`);
  return stores;
}

/**
 * Store directories of a dataset root (every subdirectory holding a store, complete or not,
 * sorted by name), or of the requested games.
 * @throws DataError when the root does not exist or holds no stores.
 */
export function datasetStoreDirs(root: string, games?: string[]): string[] {
  if (!exists(root)) throw new DataError(`${root}: dataset root does not exist`);
  const names = games ?? fs.readdirSync(root).filter((n) => {
    const d = path.join(root, n);
    // Dot directories are a writer's overwrite in progress, not stores.
    return !n.startsWith(".") && fs.statSync(d).isDirectory() &&
      (exists(path.join(d, FILES.manifest)) || exists(path.join(d, FILES.journal)));
  }).sort();
  if (names.length === 0) throw new DataError(`${root}: no game stores found`);
  return names.map((n) => path.join(root, n));
}
