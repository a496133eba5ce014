/**
 * Data-parallel training over a `Comm` (distributed/): every rank holds the whole model, runs
 * forward and backward on its shard of the global batch (`BatchShard`), and the gradients are
 * averaged across ranks before the clip and the AdamW step, so all ranks apply the same update
 * and stay identical (as PyTorch DDP).
 *
 * The gradient exchange of a step: one readback of every gradient (one submit, one map), then
 * the all-reduce in buckets of about `bucketBytes`, all queued at once on the communicator
 * (its collectives run one at a time off the JS thread), and each bucket's gradients uploaded
 * as soon as its reduction resolves, while later buckets are still in flight: the upload of
 * bucket k overlaps the reduction of bucket k+1. WebGPU gives no way to read a buffer back
 * before the whole backward pass has been submitted, so readback does not overlap backward.
 *
 * The step's loss scalars and a stop flag (Ctrl-C on any rank) travel in the last bucket: every
 * rank logs the same mean losses, sees the same non-finite value and stops at the same step.
 * @module
 */
import type { Comm } from "../distributed/mod.ts";
import { readAll, type Tensor, tensor } from "../kernels/core/tensor.ts";
import { assignValues } from "../kernels/nn/module.ts";
import { stepSeed } from "../util/rng.ts";

/** Default bucket size: 25 MiB of f32, PyTorch DDP's default. */
export const DEFAULT_BUCKET_BYTES = 25 * 2 ** 20;

/** Rows `[lo, hi)` of a global batch that `rank` of `size` trains on. */
export function shardRows(batch: number, rank: number, size: number): [number, number] {
  if (!(Number.isInteger(batch) && batch % size === 0)) {
    throw new RangeError(`--batch ${batch} must be a multiple of the ${size} ranks`);
  }
  const per = batch / size;
  return [rank * per, (rank + 1) * per];
}

/**
 * Dropout seed of a step on a rank: rank 0's is the single-process one, the others' are
 * decorrelated from it (each rank's rows get their own masks).
 */
export function rankStepSeed(seed: number, step: number, rank: number): number {
  const s = stepSeed(seed, step);
  return rank === 0 ? s : stepSeed(s ^ Math.imul(rank, 0x9e3779b1), step);
}

/** Consecutive groups of `sizes` whose sums stay under `limit` (a larger item stands alone). */
export function buckets(sizes: readonly number[], limit: number): number[][] {
  const out: number[][] = [];
  let cur: number[] = [], n = 0;
  sizes.forEach((s, i) => {
    if (cur.length && n + s > limit) {
      out.push(cur);
      cur = [];
      n = 0;
    }
    cur.push(i);
    n += s;
  });
  if (cur.length) out.push(cur);
  return out;
}

/** Timings of the last gradient exchange (milliseconds). */
export interface ExchangeTimes {
  readback: number;
  /** From the first all-reduce queued to the last gradient uploaded. */
  reduceAndUpload: number;
  floats: number;
}

/** The data-parallel side of a trainer: gradient averaging and parameter broadcast. */
export class DataParallel {
  readonly bucketFloats: number;
  /** Timings of the last {@link DataParallel.averageGradients}. */
  last: ExchangeTimes = { readback: 0, reduceAndUpload: 0, floats: 0 };

  constructor(readonly comm: Comm, opts: { bucketBytes?: number } = {}) {
    this.bucketFloats = Math.max(1, Math.floor((opts.bucketBytes ?? DEFAULT_BUCKET_BYTES) / 4));
  }

  get rank(): number {
    return this.comm.rank;
  }
  get size(): number {
    return this.comm.size;
  }

  /**
   * Average the gradients of `params` (those that have one: the same on every rank) and the
   * values of `scalars` (one-element tensors, replaced in place by tensors of the means) over
   * the ranks. `stop` is this rank's stop request; resolves to whether any rank asked to stop.
   */
  async averageGradients(
    params: readonly Tensor[],
    scalars: Record<string, Tensor>,
    stop: boolean,
  ): Promise<boolean> {
    const withGrad = params.filter((p) => p.grad);
    const names = Object.keys(scalars);
    const t0 = performance.now();
    const read = await readAll([...withGrad.map((p) => p.grad!), ...names.map((k) => scalars[k])]);
    const t1 = performance.now();
    const grads = read.slice(0, withGrad.length) as Float32Array[];
    const extra = new Float32Array(names.length + 1);
    names.forEach((_, i) => (extra[i] = read[withGrad.length + i][0]));
    extra[names.length] = stop ? 1 : 0;
    const groups = buckets(grads.map((g) => g.length), this.bucketFloats);
    // Queue every bucket now; the communicator runs them in order off the JS thread.
    const pending = groups.map((idx) => {
      const flat = idx.length === 1 ? grads[idx[0]] : concat(idx.map((i) => grads[i]));
      return { idx, flat, done: this.comm.allreduceMean(flat) };
    });
    const extraDone = this.comm.allreduceMean(extra);
    for (const { idx, flat, done } of pending) {
      await done;
      let off = 0;
      for (const i of idx) {
        const p = withGrad[i], n = grads[i].length;
        const g = tensor(flat.subarray(off, off + n), p.grad!.shape);
        off += n;
        p.grad!.dispose();
        p.grad = g;
      }
    }
    await extraDone;
    names.forEach((k, i) => {
      scalars[k].dispose();
      scalars[k] = tensor([extra[i]], scalars[k].shape);
    });
    this.last = {
      readback: t1 - t0,
      reduceAndUpload: performance.now() - t1,
      floats: grads.reduce((a, g) => a + g.length, 0),
    };
    return extra[names.length] > 0;
  }

  /** Copy rank 0's values of `tensors` (f32) into every rank's, in buckets. */
  async broadcastTensors(tensors: readonly Tensor[]): Promise<void> {
    if (this.size === 1 || tensors.length === 0) return;
    const root = this.rank === 0;
    const values = root
      ? await readAll(tensors) as Float32Array[]
      : tensors.map((t) => new Float32Array(t.size));
    for (const idx of buckets(values.map((v) => v.length), this.bucketFloats)) {
      const flat = idx.length === 1 ? values[idx[0]] : concat(idx.map((i) => values[i]));
      await this.comm.broadcast(flat, 0);
      if (root) continue;
      let off = 0;
      for (const i of idx) {
        assignValues(tensors[i], flat.subarray(off, off + values[i].length));
        off += values[i].length;
      }
    }
  }

  /** Rank 0's JSON value on every rank. */
  async broadcastJson<T>(value: T | null): Promise<T> {
    const bytes = this.rank === 0 ? new TextEncoder().encode(JSON.stringify(value)) : null;
    return JSON.parse(new TextDecoder().decode(await this.comm.broadcastBytes(bytes, 0))) as T;
  }
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
