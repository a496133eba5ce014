/**
 * Multi-game segment sampling (synchronous core). Batch k is a pure function of
 * (seed, k, the stores): resuming a stream needs only the batch counter, and any number of
 * workers can build batches out of order.
 *
 * Per item: a game (balanced by default: each game gets floor(B/G) or ceil(B/G) items, the
 * extra items rotating over games from batch to batch), then a row uniform over the game's
 * rows, giving an episode and a start position; the segment is the next L rows, cut at the
 * episode's end and padded (zeros, mask 0) past it.
 * @module
 */
import { DataError } from "./fs_util.ts";
import type { GameStore } from "./store.ts";
import { Rng } from "../util/rng.ts";
import { FRAME_BYTES, type StoreForm, TOKENS_PER_FRAME } from "./layout.ts";

/** How batch items are spread over games. */
export type GameWeighting = "balanced" | "proportional" | Record<string, number>;

/** Options of the sampler. */
export interface SegmentSamplerOptions {
  /** Segments per batch (default 512). */
  batchSize?: number;
  /** Timesteps per segment L (default 8). */
  segmentLength?: number;
  /** Seed of the stream (default 0). */
  seed?: number;
  /**
   * "balanced" (default): equal items per game; "proportional": games drawn in proportion to
   * their rows; or explicit relative weights per game name.
   */
  weighting?: GameWeighting;
}

/**
 * Rows `[index * B / count, (index + 1) * B / count)` of every batch of a stream of batch size
 * B: one rank's share in data-parallel training. The shards of the `count` ranks, concatenated
 * in index order, are exactly the unsharded batch.
 */
export interface BatchShard {
  index: number;
  count: number;
}

/**
 * One batch as flat typed arrays ready for GPU upload. Row-major: item b, step t of frames is
 * `frames[((b * L + t) * 84 + y) * 84 + x]`.
 */
export interface SegmentBatch {
  /** Batch number in the stream. */
  index: number;
  /** B. */
  batchSize: number;
  /** L. */
  segmentLength: number;
  /** Observation form. */
  form: StoreForm;
  /** [B, L, 84, 84] uint8 (frame stores only). */
  frames?: Uint8Array;
  /** [B, L, 36] uint16 tokenizer ids (token stores only). */
  tokens?: Uint16Array;
  /** [B, L] full action ids (0 where masked). */
  actions: Int32Array;
  /** [B, L] raw rewards. */
  rewards: Float32Array;
  /** [B, L] terminal flags. */
  terminals: Uint8Array;
  /** [B, L] 1 for real steps, 0 for padding past the episode's end. */
  mask: Uint8Array;
  /** [B] task-embedding row of each item's game. */
  taskIds: Int32Array;
  /** [B] index of each item's game in the sampler's store list. */
  gameIndex: Int32Array;
  /** [B] row (in its game's store) of each item's first step. */
  starts: Float64Array;
}

/** Identifies the data a stream was drawn from, to refuse restoring onto other data. */
export function datasetFingerprint(
  stores: { game: string; transitions: number; episodes: number; offsetsCrc: string }[],
): string {
  return stores.map((s) => `${s.game}:${s.transitions}:${s.episodes}:${s.offsetsCrc}`).join("|");
}

/** Synchronous sampler over opened stores. */
export class SegmentSampler {
  /** The stores, in the order of {@link SegmentBatch.gameIndex}. */
  readonly stores: GameStore[];
  /** B. */
  readonly batchSize: number;
  /** L. */
  readonly segmentLength: number;
  /** Seed. */
  readonly seed: number;
  /** Observation form of all stores. */
  readonly form: StoreForm;
  /** This sampler's share of each batch (null: all of it). */
  readonly shard: BatchShard | null;
  readonly #cumWeights: Float64Array | null;

  /**
   * Sample over `stores` (all of one form).
   * @throws DataError when stores are empty, of mixed forms, or weights are invalid.
   */
  constructor(stores: GameStore[], opts: SegmentSamplerOptions & { shard?: BatchShard } = {}) {
    if (stores.length === 0) throw new DataError("sampler: no stores");
    this.stores = stores;
    this.batchSize = opts.batchSize ?? 512;
    this.segmentLength = opts.segmentLength ?? 8;
    this.seed = opts.seed ?? 0;
    if (!(this.batchSize >= 1 && this.segmentLength >= 1)) {
      throw new RangeError("sampler: batchSize and segmentLength must be >= 1");
    }
    const sh = opts.shard;
    if (sh && !(sh.count >= 1 && sh.index >= 0 && sh.index < sh.count)) {
      throw new RangeError(`sampler: shard ${sh.index} of ${sh.count}`);
    }
    if (sh && this.batchSize % sh.count !== 0) {
      throw new RangeError(
        `sampler: batch ${this.batchSize} does not split into ${sh.count} shards`,
      );
    }
    this.shard = sh && sh.count > 1 ? { index: sh.index, count: sh.count } : null;
    this.form = stores[0].spec.form;
    for (const s of stores) {
      if (s.spec.form !== this.form) throw new DataError(`${s.dir}: stores mix forms`);
      if (s.numRows === 0) throw new DataError(`${s.dir}: store has no transitions`);
    }
    const w = opts.weighting ?? "balanced";
    if (w === "balanced") this.#cumWeights = null;
    else {
      const raw = stores.map((s) => (w === "proportional" ? s.numRows : w[s.game] ?? 0));
      if (raw.some((x) => !(x >= 0)) || !raw.some((x) => x > 0)) {
        throw new RangeError("sampler: weights must be >= 0 with at least one > 0");
      }
      const total = raw.reduce((a, b) => a + b, 0);
      let acc = 0;
      this.#cumWeights = Float64Array.from(raw, (x) => (acc += x / total));
    }
  }

  /** Game index of each item of batch k (deterministic). */
  #assignGames(k: number, rng: Rng): Int32Array {
    const B = this.batchSize, G = this.stores.length;
    const out = new Int32Array(B);
    if (this.#cumWeights) {
      const cw = this.#cumWeights;
      for (let b = 0; b < B; b++) {
        const u = rng.float();
        let g = 0;
        while (g < G - 1 && u >= cw[g]) g++;
        out[b] = g;
      }
      return out;
    }
    // Balanced: the item at overall position k*B + b goes to game (k*B + b) mod G.
    const base = (k * B) % G;
    for (let b = 0; b < B; b++) out[b] = (base + b) % G;
    out.sort(); // group by game: better disk locality, same multiset
    return out;
  }

  /**
   * Build batch `k` of the stream (pure function of seed, k and the stores), or this sampler's
   * shard of it: every item's row is drawn (the stream stays the unsharded one), only the
   * shard's are read.
   */
  sampleBatch(k: number): SegmentBatch {
    const L = this.segmentLength;
    const rng = new Rng(this.seed, k);
    const allGames = this.#assignGames(k, rng);
    const B = this.shard ? this.batchSize / this.shard.count : this.batchSize;
    const first = this.shard ? this.shard.index * B : 0;
    const gameIndex = allGames.slice(first, first + B);
    const rowBytes = this.form === "frames" ? FRAME_BYTES : TOKENS_PER_FRAME * 2;
    const obs = new Uint8Array(B * L * rowBytes);
    const actions = new Int32Array(B * L);
    const rewards = new Float32Array(B * L);
    const terminals = new Uint8Array(B * L);
    const mask = new Uint8Array(B * L);
    const taskIds = new Int32Array(B);
    const starts = new Float64Array(B);
    for (let item = 0; item < first + B; item++) {
      const s = this.stores[allGames[item]];
      const row = rng.int(s.numRows);
      if (item < first) continue; // another shard's item: its draw keeps the stream aligned
      const b = item - first;
      const off = s.offsets;
      // Episode e with off[e] <= row < off[e+1].
      let lo = 0, hi = s.numEpisodes - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (off[mid] <= row) lo = mid;
        else hi = mid - 1;
      }
      const n = Math.min(L, off[lo + 1] - row);
      taskIds[b] = s.taskId;
      starts[b] = row;
      s.readObsRows(row, n, obs, b * L * rowBytes);
      for (let t = 0; t < n; t++) {
        const i = b * L + t;
        actions[i] = s.actions[row + t];
        rewards[i] = s.rewards[row + t];
        terminals[i] = s.terminals[row + t];
        mask[i] = 1;
      }
    }
    const batch: SegmentBatch = {
      index: k,
      batchSize: B,
      segmentLength: L,
      form: this.form,
      actions,
      rewards,
      terminals,
      mask,
      taskIds,
      gameIndex,
      starts,
    };
    if (this.form === "frames") batch.frames = obs;
    else batch.tokens = new Uint16Array(obs.buffer);
    return batch;
  }
}
