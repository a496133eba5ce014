/**
 * Worker side of the prefetching sampler: opens the stores itself and builds requested batches
 * (pure functions of their index), transferring the buffers back without copies.
 * @module
 */
import { openStore } from "./store.ts";
import {
  type BatchShard,
  type SegmentBatch,
  SegmentSampler,
  type SegmentSamplerOptions,
} from "./segment_sampler.ts";

/** Messages the main thread sends. */
export type WorkerRequest =
  | { type: "init"; dirs: string[]; opts: SegmentSamplerOptions & { shard?: BatchShard } }
  | { type: "batch"; k: number };

/** Messages the worker sends back. */
export type WorkerReply =
  | { type: "ready" }
  | { type: "batch"; batch: SegmentBatch }
  | { type: "error"; k?: number; message: string };

interface WorkerScope {
  onmessage: ((e: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(m: WorkerReply, transfer?: Transferable[]): void;
}
const scope = self as unknown as WorkerScope;
let sampler: SegmentSampler | null = null;

scope.onmessage = (e) => {
  const m = e.data;
  try {
    if (m.type === "init") {
      sampler = new SegmentSampler(m.dirs.map((d) => openStore(d)), m.opts);
      scope.postMessage({ type: "ready" });
    } else {
      const b = sampler!.sampleBatch(m.k);
      const bufs = [
        (b.frames ?? b.tokens!).buffer,
        b.actions.buffer,
        b.rewards.buffer,
        b.terminals.buffer,
        b.mask.buffer,
        b.taskIds.buffer,
        b.gameIndex.buffer,
        b.starts.buffer,
      ] as ArrayBuffer[];
      scope.postMessage({ type: "batch", batch: b }, bufs);
    }
  } catch (err) {
    const k = m.type === "batch" ? m.k : undefined;
    scope.postMessage({ type: "error", k, message: (err as Error).message });
  }
};
