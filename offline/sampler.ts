/**
 * The training-side sampler: multi-game segment batches from a dataset root or a list of
 * stores, built ahead of the consumer by worker threads so training never waits on disk, and
 * resumable: {@link Sampler.state} goes into a training checkpoint, and passing it back as
 * `state` continues the identical stream.
 *
 * Call {@link Sampler.close} when done: live workers keep the process running.
 * @module
 */
import * as path from "node:path";
import { DataError } from "./fs_util.ts";
import { FILES, type StoreForm } from "./layout.ts";
import { datasetStoreDirs, openStore, readManifest } from "./store.ts";
import {
  type BatchShard,
  datasetFingerprint,
  type GameWeighting,
  type SegmentBatch,
  SegmentSampler,
  type SegmentSamplerOptions,
} from "./segment_sampler.ts";
import type { WorkerReply, WorkerRequest } from "./sampler_worker.ts";

/** Everything needed to continue a stream exactly (JSON-serializable). */
export interface SamplerState {
  /** State format version. */
  version: 1;
  /** Seed of the stream. */
  seed: number;
  /** B. */
  batchSize: number;
  /** L. */
  segmentLength: number;
  /** Game weighting. */
  weighting: GameWeighting;
  /** Number of batches already delivered (= index of the next one). */
  nextBatch: number;
  /** Identity of the data (games, sizes, episode-offset checksums). */
  fingerprint: string;
}

/** Options of {@link openSampler}. */
export interface SamplerOptions extends SegmentSamplerOptions {
  /** With a dataset root: only these games (default all stores found). */
  games?: string[];
  /** Worker threads building batches (default 1; 0 = build in the calling thread on demand). */
  workers?: number;
  /** Batches requested ahead of the consumer (default 4). */
  prefetch?: number;
  /** Continue the stream saved by {@link Sampler.state}. */
  state?: SamplerState;
  /**
   * Deliver only this share of each batch (data-parallel ranks). Not part of the state: the
   * stream and its position are the unsharded batches', so a run resumes on any number of ranks.
   */
  shard?: BatchShard;
}

/** A resumable stream of batches. */
export interface Sampler {
  /** Game names, in the order of `SegmentBatch.gameIndex`. */
  readonly games: string[];
  /** Task id of each game. */
  readonly taskIds: number[];
  /** Observation form (frames or tokens). */
  readonly form: StoreForm;
  /** The next batch of the stream. */
  next(): Promise<SegmentBatch>;
  /**
   * Position after the batches handed out by next() so far: save it with a training checkpoint.
   */
  state(): SamplerState;
  /** Stop the workers. */
  close(): void;
}

/**
 * Open a sampler over a dataset root (`<root>/<Game>/` stores; all games found, or
 * `opts.games`) or over an explicit list of store directories.
 * @throws DataError for missing/incomplete stores, mixed forms, or a state from other data.
 */
export async function openSampler(
  source: string | string[],
  opts: SamplerOptions = {},
): Promise<Sampler> {
  const dirs = typeof source === "string" ? datasetStoreDirs(source, opts.games) : source;
  const manifests = dirs.map((d) => readManifest(d));
  const forms = new Set(manifests.map((m) => m.form));
  if (forms.size > 1) throw new DataError(`${dirs.join(", ")}: stores mix frame and token forms`);
  const fingerprint = datasetFingerprint(manifests.map((m) => ({
    game: m.game,
    transitions: m.transitions,
    episodes: m.episodes,
    offsetsCrc: m.files[FILES.offsets].crc32,
  })));
  let cfg: Required<SegmentSamplerOptions> = {
    batchSize: opts.batchSize ?? 512,
    segmentLength: opts.segmentLength ?? 8,
    seed: opts.seed ?? 0,
    weighting: opts.weighting ?? "balanced",
  };
  let start = 0;
  if (opts.state) {
    const s = opts.state;
    if (s.version !== 1 || s.fingerprint !== fingerprint) {
      throw new DataError(`${dirs.join(", ")}: sampler state was saved for other data`);
    }
    for (const key of ["batchSize", "segmentLength", "seed", "weighting"] as const) {
      const given = opts[key];
      if (given !== undefined && JSON.stringify(given) !== JSON.stringify(s[key])) {
        throw new RangeError(`sampler: ${key} differs from the saved state's`);
      }
    }
    cfg = {
      batchSize: s.batchSize,
      segmentLength: s.segmentLength,
      seed: s.seed,
      weighting: s.weighting,
    };
    start = s.nextBatch;
  }
  const workers = opts.workers ?? 1;
  const base = {
    games: manifests.map((m) => m.game),
    taskIds: manifests.map((m) => m.taskId),
    form: manifests[0].form,
  };
  const stateAt = (k: number): SamplerState => ({ version: 1, ...cfg, nextBatch: k, fingerprint });
  if (workers <= 0) {
    const inline = new SegmentSampler(dirs.map((d) => openStore(d)), { ...cfg, shard: opts.shard });
    let k = start;
    return {
      ...base,
      next: () => Promise.resolve(inline.sampleBatch(k++)),
      state: () => stateAt(k),
      close: () => inline.stores.forEach((s) => s.close()),
    };
  }
  const pool = await WorkerPool.start(
    dirs,
    { ...cfg, shard: opts.shard },
    workers,
    opts.prefetch ?? 4,
    start,
  );
  return {
    ...base,
    next: () => pool.next(),
    state: () => stateAt(pool.delivered),
    close: () => pool.close(),
  };
}

interface Pending {
  promise: Promise<SegmentBatch>;
  resolve: (b: SegmentBatch) => void;
  reject: (e: Error) => void;
}

class WorkerPool {
  workers: Worker[];
  pending = new Map<number, Pending>();
  requested: number;
  delivered: number;
  prefetch: number;
  closed = false;

  private constructor(workers: Worker[], prefetch: number, start: number) {
    this.workers = workers;
    this.prefetch = Math.max(1, prefetch);
    this.requested = this.delivered = start;
  }

  static async start(
    dirs: string[],
    cfg: SegmentSamplerOptions & { shard?: BatchShard },
    n: number,
    prefetch: number,
    start: number,
  ): Promise<WorkerPool> {
    const url = new URL("./sampler_worker.ts", import.meta.url).href;
    const workers = Array.from({ length: n }, () => new Worker(url, { type: "module" }));
    const pool = new WorkerPool(workers, prefetch, start);
    try {
      await Promise.all(workers.map((w) =>
        new Promise<void>((resolve, reject) => {
          w.onmessage = (e: MessageEvent<WorkerReply>) => {
            if (e.data.type === "ready") resolve();
            else if (e.data.type === "error") reject(new DataError(e.data.message));
          };
          w.onerror = (e) => {
            e.preventDefault();
            reject(new Error(`sampler worker failed: ${e.message}`));
          };
          const init: WorkerRequest = {
            type: "init",
            dirs: dirs.map((d) => path.resolve(d)),
            opts: cfg,
          };
          w.postMessage(init);
        })
      ));
    } catch (e) {
      pool.close();
      throw e;
    }
    for (const w of workers) {
      w.onmessage = (e: MessageEvent<WorkerReply>) => pool.onReply(e.data);
      w.onerror = (e) => {
        e.preventDefault();
        pool.failAll(new Error(`sampler worker failed: ${e.message}`));
      };
    }
    return pool;
  }

  onReply(m: WorkerReply): void {
    if (m.type === "batch") this.pending.get(m.batch.index)?.resolve(m.batch);
    else if (m.type === "error") {
      const err = new DataError(m.message);
      if (m.k !== undefined) this.pending.get(m.k)?.reject(err);
      else this.failAll(err);
    }
  }

  failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
  }

  fill(): void {
    while (this.requested < this.delivered + this.prefetch) {
      const k = this.requested++;
      let resolve!: (b: SegmentBatch) => void, reject!: (e: Error) => void;
      const promise = new Promise<SegmentBatch>((a, b) => {
        resolve = a;
        reject = b;
      });
      promise.catch(() => {}); // surfaced when the consumer awaits it
      this.pending.set(k, { promise, resolve, reject });
      const req: WorkerRequest = { type: "batch", k };
      this.workers[k % this.workers.length].postMessage(req);
    }
  }

  async next(): Promise<SegmentBatch> {
    if (this.closed) throw new Error("sampler is closed");
    // Claim the index synchronously so overlapping next() calls get consecutive batches.
    const k = this.delivered++;
    this.fill();
    try {
      return await this.pending.get(k)!.promise;
    } finally {
      this.pending.delete(k);
    }
  }

  close(): void {
    this.closed = true;
    for (const w of this.workers) w.terminate();
  }
}
