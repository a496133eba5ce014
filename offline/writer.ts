/**
 * Store writer: appends episodes to a per-game store (frames or tokenizer ids) with atomic
 * commits. The store only looks complete (has `manifest.json`) after {@link StoreWriter.close}.
 * An interrupted writer leaves `journal.json`; reopening with `resume: true` continues from the
 * last commit, otherwise the partial store is wiped and restarted. Overwriting a complete store
 * builds the new one beside it (`.<name>.overwrite`) and swaps the two by renames only once the
 * new one is complete, so a failed or interrupted overwrite never loses the old store.
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import {
  atomicWriteFile,
  bytesOf,
  DataError,
  exists,
  fsyncDir,
  removeIfExists,
  writeAll,
} from "./fs_util.ts";
import {
  type ChunkInfo,
  chunkName,
  type FileInfo,
  FILES,
  META_FILES,
  type ObsSpec,
  obsSpec,
  STORE_FORMAT,
  STORE_VERSION,
  type StoreForm,
  type StoreJournal,
  type StoreManifest,
} from "./layout.ts";
import { taskIdOf } from "../atari/mod.ts";

/** row t is the observation at which actions[t] was taken, then rewards[t] and terminals[t]. */
export interface EpisodeRecord {
  /** [T, 84, 84] grayscale uint8. */
  frames: Uint8Array;
  /** [T] FULL 18-action ids (0..17). */
  actions: Uint8Array;
  /** [T] raw, unclipped rewards. */
  rewards: Float32Array;
  /** [T] 1 where the game ended after step t (at most the last row). */
  terminals: Uint8Array;
  /** true when cut (time limit, file edge, Ctrl-C) rather than ended. */
  truncated: boolean;
}

/** An episode in token form: each frame as its 36 tokenizer ids. */
export interface TokenEpisodeRecord {
  /** [T, 36] uint16 tokenizer ids. */
  tokens: Uint16Array;
  /** [T] FULL 18-action ids (0..17). */
  actions: Uint8Array;
  /** [T] raw rewards. */
  rewards: Float32Array;
  /** [T] 1 where the game ended after step t (at most the last row). */
  terminals: Uint8Array;
  /** true when cut rather than ended. */
  truncated: boolean;
}

/** Options of {@link openStoreWriter}. */
export interface StoreWriterOptions {
  /** e.g. "Pong" (scores.json key spelling). */
  game: string;
  /** The game's valid full action ids, ALE order. */
  minimalActions: number[];
  /** Provenance for the manifest. */
  source: Record<string, unknown>;
  /** Continue an interrupted store from its journal instead of restarting it (default false). */
  resume?: boolean;
  /**
   * Replace an already complete store (default false: that is an error). The old store stays
   * in place, untouched, until the new one is complete.
   */
  overwrite?: boolean;
  /** Target observation bytes per chunk file (default 64 MiB); chunks hold whole episodes. */
  chunkBytes?: number;
  /**
   * Journal every full chunk (default true), so an interrupted writer resumes with all of
   * them. False: only {@link StoreWriterControl.commit} journals, for callers (the converter)
   * whose resume position must match the committed episodes exactly.
   */
  autoCommit?: boolean;
}

/** Writer of a frame store (the contract used by emulator collection). */
export interface StoreWriter {
  /** Append one episode (buffered; durable after the next commit or close). */
  addEpisode(ep: EpisodeRecord): Promise<void>;
  /** finalize manifest atomically; only then the store looks complete */
  close(): Promise<void>;
}

/** Extra controls shared by both writer forms (used by the converter for resumable runs). */
export interface StoreWriterControl {
  /** Make everything added so far durable and record `state` with it in the journal. */
  commit(state?: unknown): Promise<void>;
  /** The state saved with the last commit of a resumed store (undefined on a fresh store). */
  readonly resumeState: unknown;
  /** Episodes added so far (committed or buffered). */
  readonly episodes: number;
  /** Rows added so far. */
  readonly transitions: number;
  /** Merge keys into the manifest's `source` (e.g. final statistics) before close. */
  updateSource(extra: Record<string, unknown>): void;
  /** Drop the writer without finalizing (the store stays incomplete, resumable). */
  abort(): void;
  /** Drop the writer and delete everything it wrote (used when the input proves bad). */
  discard(): void;
}

/** Frame store writer with resume controls. */
export type FrameStoreWriter = StoreWriter & StoreWriterControl;

/** Token store writer (stage-2 form). */
export interface TokenStoreWriter extends StoreWriterControl {
  /** Append one episode of tokens. */
  addEpisode(ep: TokenEpisodeRecord): Promise<void>;
  /** Finalize the manifest atomically. */
  close(): Promise<void>;
}

const DEFAULT_CHUNK_BYTES = 64 << 20;

/**
 * Open a writer for a frame store in `dir` (created if needed).
 * @throws DataError when `dir` already holds a complete store (unless `overwrite`) or a
 *   store of another game/form (on resume).
 */
export function openStoreWriter(dir: string, opts: StoreWriterOptions): Promise<FrameStoreWriter> {
  const w = new Writer(dir, opts, obsSpec("frames"));
  return Promise.resolve(writerApi(w, (ep: EpisodeRecord) => w.add(ep.frames, ep, "frames")));
}

/** Open a writer for a token store (each row = 36 uint16 tokenizer ids) in `dir`. */
export function openTokenStoreWriter(
  dir: string,
  opts: StoreWriterOptions,
): Promise<TokenStoreWriter> {
  const w = new Writer(dir, opts, obsSpec("tokens"));
  return Promise.resolve(
    writerApi(w, (ep: TokenEpisodeRecord) => w.add(bytesOf(ep.tokens), ep, "tokens")),
  );
}

/**
 * The public face of `w` with `addEpisode` for one store form. The counters are getters, so
 * they stay live (never spread this object: that would copy their current values).
 */
function writerApi<E>(
  w: Writer,
  addEpisode: (ep: E) => Promise<void>,
): StoreWriterControl & { addEpisode(ep: E): Promise<void>; close(): Promise<void> } {
  return {
    addEpisode,
    close: () => w.close(),
    commit: (s?: unknown) => w.commit(s),
    get resumeState() {
      return w.resumeState;
    },
    get episodes() {
      return w.episodes;
    },
    get transitions() {
      return w.transitions;
    },
    updateSource: (x: Record<string, unknown>) => w.updateSource(x),
    abort: () => w.abort(),
    discard: () => w.discard(),
  };
}

interface StepArrays {
  actions: Uint8Array;
  rewards: Float32Array;
  terminals: Uint8Array;
  truncated: boolean;
}

/** Sibling directory in which an overwrite builds the new store (hidden from dataset scans). */
export function overwriteDir(dir: string): string {
  return path.join(path.dirname(dir), `.${path.basename(dir)}.overwrite`);
}

/** Where the old store sits for a moment while an overwrite swaps the new one in. */
function replacedDir(dir: string): string {
  return path.join(path.dirname(dir), `.${path.basename(dir)}.replaced`);
}

/**
 * Finish or undo a swap that a crash cut between its two renames: the new store goes in
 * when it is complete, else the old one comes back.
 */
function recoverSwap(dir: string): void {
  const work = overwriteDir(dir), old = replacedDir(dir);
  if (!exists(old)) return;
  if (!exists(dir)) {
    fs.renameSync(exists(path.join(work, FILES.manifest)) ? work : old, dir);
    fsyncDir(path.dirname(dir));
  }
  removeIfExists(old);
}

class Writer {
  /** Directory being written (the store itself, or its overwrite sibling). */
  readonly dir: string;
  /** The store's final directory. */
  readonly target: string;
  readonly spec: ObsSpec;
  readonly game: string;
  readonly minimal: number[];
  readonly valid = new Uint8Array(18);
  readonly chunkBytes: number;
  readonly autoCommit: boolean;
  source: Record<string, unknown>;
  resumeState: unknown = undefined;
  chunks: ChunkInfo[] = [];
  committedBytes: Record<string, number> = {};
  episodes = 0;
  transitions = 0;
  truncatedEpisodes = 0;
  committedEpisodes = 0;
  committedTransitions = 0;
  committedTruncated = 0;
  // Pending (not yet committed) data of the chunk being filled.
  pendObs: Uint8Array[] = [];
  pendObsBytes = 0;
  pendMeta: Uint8Array[][] = META_FILES.map(() => []);
  closed = false;

  constructor(dir: string, opts: StoreWriterOptions, spec: ObsSpec) {
    this.spec = spec;
    this.game = opts.game;
    taskIdOf(opts.game); // validates the name early
    this.minimal = [...opts.minimalActions];
    for (const a of this.minimal) {
      if (!Number.isInteger(a) || a < 0 || a > 17) {
        throw new RangeError(`minimalActions: ${a} is not a full action id 0..17`);
      }
      this.valid[a] = 1;
    }
    this.source = { ...opts.source };
    this.chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.autoCommit = opts.autoCommit ?? true;
    this.target = dir;
    recoverSwap(dir);
    const manifest = path.join(dir, FILES.manifest);
    if (exists(manifest)) {
      if (!opts.overwrite) {
        throw new DataError(`${manifest}: store is already complete (use overwrite to replace)`);
      }
      // Build beside the complete store; close() swaps it in only once the new one is complete.
      this.dir = overwriteDir(dir);
    } else {
      this.dir = dir;
      removeIfExists(overwriteDir(dir)); // a stale overwrite of a store that is gone
    }
    fs.mkdirSync(path.join(this.dir, FILES.obsDir), { recursive: true });
    const journal = path.join(this.dir, FILES.journal);
    if (opts.resume && exists(journal)) this.resumeFrom(journal);
    else this.wipe();
  }

  /** Remove every file a store writer owns, then start an empty journal. */
  wipe(): void {
    removeIfExists(path.join(this.dir, FILES.journal));
    removeIfExists(path.join(this.dir, `${FILES.journal}.tmp`));
    removeIfExists(path.join(this.dir, `${FILES.manifest}.tmp`));
    removeIfExists(path.join(this.dir, FILES.obsDir));
    for (const f of META_FILES) removeIfExists(path.join(this.dir, f));
    fs.mkdirSync(path.join(this.dir, FILES.obsDir), { recursive: true });
    for (const f of META_FILES) {
      fs.writeFileSync(path.join(this.dir, f), new Uint8Array(0));
      this.committedBytes[f] = 0;
    }
    // Offsets file starts with the 0 of episode 0.
    this.appendFile(FILES.offsets, bytesOf(new BigInt64Array([0n])));
    this.committedBytes[FILES.offsets] = 8;
    this.writeJournal();
  }

  resumeFrom(journalPath: string): void {
    let j: StoreJournal;
    try {
      j = JSON.parse(fs.readFileSync(journalPath, "utf8"));
    } catch (e) {
      throw new DataError(`${journalPath}: unreadable journal (${(e as Error).message})`);
    }
    if (j.format !== STORE_FORMAT || j.form !== this.spec.form || j.game !== this.game) {
      throw new DataError(
        `${journalPath}: journal is for ${j.game} (${j.form}), not ${this.game} (${this.spec.form})`,
      );
    }
    // Cut every file back to the last commit; drop chunks written after it.
    for (const f of META_FILES) {
      const p = path.join(this.dir, f);
      const want = j.bytes[f];
      if (!exists(p) || fs.statSync(p).size < want) {
        throw new DataError(`${p}: shorter than its journal says; cannot resume`);
      }
      fs.truncateSync(p, want);
    }
    const keep = new Set(j.chunks.map((c) => path.basename(c.file)));
    for (const name of fs.readdirSync(path.join(this.dir, FILES.obsDir))) {
      if (!keep.has(name)) fs.rmSync(path.join(this.dir, FILES.obsDir, name));
    }
    for (const c of j.chunks) {
      const p = path.join(this.dir, c.file);
      if (!exists(p) || fs.statSync(p).size !== c.rows * this.spec.rowBytes) {
        throw new DataError(`${p}: missing or wrong size; cannot resume`);
      }
    }
    this.chunks = j.chunks;
    this.committedBytes = { ...j.bytes };
    this.episodes = this.committedEpisodes = j.episodes;
    this.transitions = this.committedTransitions = j.transitions;
    this.truncatedEpisodes = this.committedTruncated = j.truncatedEpisodes;
    this.resumeState = j.state;
  }

  add(obs: Uint8Array, ep: StepArrays, form: StoreForm): Promise<void> {
    if (this.closed) throw new Error("store writer is closed");
    const T = ep.actions.length;
    if (T < 1) throw new RangeError("episode has no rows");
    if (obs.byteLength !== T * this.spec.rowBytes) {
      const what = form === "frames" ? "frames must be [T,84,84] uint8" : "tokens must be [T,36]";
      throw new RangeError(`${what}: got ${obs.byteLength} bytes for T=${T}`);
    }
    if (ep.rewards.length !== T || ep.terminals.length !== T) {
      throw new RangeError(`rewards/terminals length must equal actions length ${T}`);
    }
    for (let t = 0; t < T; t++) {
      const a = ep.actions[t];
      if (a > 17 || !this.valid[a]) {
        throw new RangeError(
          `action ${a} at step ${t} is not in ${this.game}'s minimal action set`,
        );
      }
      if (ep.terminals[t] > 1 || (ep.terminals[t] === 1 && t !== T - 1)) {
        throw new RangeError(
          `terminals: only the last row may be 1 (step ${t} is ${ep.terminals[t]})`,
        );
      }
      if (!Number.isFinite(ep.rewards[t])) {
        throw new RangeError(`reward at step ${t} is not finite`);
      }
    }
    if (ep.truncated && ep.terminals[T - 1] === 1) {
      throw new RangeError("an episode cannot be both truncated and terminal");
    }
    // Copy: callers may reuse their buffers after the promise resolves.
    this.pendObs.push(obs.slice());
    this.pendObsBytes += obs.byteLength;
    this.transitions += T;
    this.episodes += 1;
    if (ep.truncated) this.truncatedEpisodes += 1;
    const m = this.pendMeta;
    m[0].push(ep.actions.slice());
    m[1].push(bytesOf(ep.rewards.slice()));
    m[2].push(ep.terminals.slice());
    m[3].push(bytesOf(new BigInt64Array([BigInt(this.transitions)])));
    m[4].push(new Uint8Array([ep.truncated ? 1 : 0]));
    if (this.pendObsBytes >= this.chunkBytes) this.flushChunk();
    return Promise.resolve();
  }

  appendFile(name: string, data: Uint8Array): void {
    const fd = fs.openSync(path.join(this.dir, name), "a");
    try {
      writeAll(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Write the pending chunk (tmp + rename), append the meta files, then the journal. */
  flushChunk(state?: unknown, saveState = false): void {
    if (this.pendObs.length > 0) {
      const rows = this.transitions - this.committedTransitions;
      const name = chunkName(this.chunks.length);
      const file = path.join(this.dir, name);
      const tmp = `${file}.tmp`;
      const fd = fs.openSync(tmp, "w");
      let crc = 0;
      try {
        for (const piece of this.pendObs) {
          writeAll(fd, piece);
          crc = zlib.crc32(piece, crc);
        }
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, file);
      fsyncDir(path.dirname(file));
      this.chunks.push({ file: name, firstRow: this.committedTransitions, rows, crc32: hex(crc) });
      META_FILES.forEach((f, i) => {
        const pieces = this.pendMeta[i];
        const joined = concat(pieces);
        this.appendFile(f, joined);
        this.committedBytes[f] += joined.byteLength;
      });
      this.pendObs = [];
      this.pendObsBytes = 0;
      this.pendMeta = META_FILES.map(() => []);
      this.committedEpisodes = this.episodes;
      this.committedTransitions = this.transitions;
      this.committedTruncated = this.truncatedEpisodes;
    }
    if (saveState) this.resumeState = state;
    if (saveState || this.autoCommit) this.writeJournal();
  }

  writeJournal(): void {
    const j: StoreJournal = {
      format: STORE_FORMAT,
      form: this.spec.form,
      game: this.game,
      chunks: this.chunks,
      bytes: this.committedBytes,
      episodes: this.committedEpisodes,
      transitions: this.committedTransitions,
      truncatedEpisodes: this.committedTruncated,
      state: this.resumeState,
    };
    atomicWriteFile(path.join(this.dir, FILES.journal), JSON.stringify(j));
  }

  commit(state?: unknown): Promise<void> {
    if (this.closed) throw new Error("store writer is closed");
    this.flushChunk(state, true);
    return Promise.resolve();
  }

  updateSource(extra: Record<string, unknown>): void {
    Object.assign(this.source, extra);
  }

  abort(): void {
    this.closed = true;
  }

  discard(): void {
    this.closed = true;
    if (this.dir !== this.target) {
      removeIfExists(this.dir); // an overwrite's new store: the old one stays as it was
      return;
    }
    removeIfExists(path.join(this.dir, FILES.journal));
    removeIfExists(path.join(this.dir, `${FILES.journal}.tmp`));
    removeIfExists(path.join(this.dir, FILES.obsDir));
    for (const f of META_FILES) removeIfExists(path.join(this.dir, f));
    try {
      fs.rmdirSync(this.dir); // only when nothing else is left in it
    } catch {
      // not empty: leave the caller's other files alone
    }
  }

  close(): Promise<void> {
    if (this.closed) throw new Error("store writer is closed");
    this.flushChunk();
    const files: Record<string, FileInfo> = {};
    for (const f of META_FILES) {
      const data = fs.readFileSync(path.join(this.dir, f));
      if (data.byteLength !== this.committedBytes[f]) {
        throw new DataError(`${path.join(this.dir, f)}: size changed while writing`);
      }
      files[f] = { bytes: data.byteLength, crc32: hex(zlib.crc32(data)) };
    }
    const manifest: StoreManifest = {
      format: STORE_FORMAT,
      version: STORE_VERSION,
      form: this.spec.form,
      obs: { dtype: this.spec.dtype, shape: this.spec.shape },
      game: this.game,
      taskId: taskIdOf(this.game),
      minimalActions: this.minimal,
      episodes: this.episodes,
      transitions: this.transitions,
      truncatedEpisodes: this.truncatedEpisodes,
      chunks: this.chunks,
      files,
      source: this.source,
      createdAt: new Date().toISOString(),
    };
    // Manifest first (the store becomes complete), then the journal goes away.
    atomicWriteFile(path.join(this.dir, FILES.manifest), JSON.stringify(manifest, null, 1));
    removeIfExists(path.join(this.dir, FILES.journal));
    fsyncDir(this.dir);
    if (this.dir !== this.target) {
      // Swap: old store aside, new one in, old one gone (recoverSwap finishes a cut swap).
      const old = replacedDir(this.target);
      removeIfExists(old);
      fs.renameSync(this.target, old);
      fs.renameSync(this.dir, this.target);
      fsyncDir(path.dirname(this.target));
      removeIfExists(old);
    }
    this.closed = true;
    return Promise.resolve();
  }
}

function hex(crc: number): string {
  return (crc >>> 0).toString(16).padStart(8, "0");
}

function concat(pieces: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of pieces) n += p.byteLength;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of pieces) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}
