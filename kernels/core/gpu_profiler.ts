/**
 * GPU time per kernel, by timestamp queries (benchmarks only; needs the adapter's
 * "timestamp-query" feature). While a profiler is attached to the runtime
 * (`runtime().profiler = new GpuProfiler(device)`), every eager dispatch runs in a compute
 * pass of its own whose beginning and end are timestamped, so the sum over a step is the GPU
 * time of its kernels without the gaps between passes. One pass per dispatch costs host time
 * and GPU idle time: profile a step apart from timing it.
 *
 * @module
 */

/** Queries per query set (WebGPU's maximum count). */
const QUERIES_PER_SET = 4096;

/** GPU time of the dispatches that share a kernel label. */
export interface KernelTime {
  label: string;
  /** Dispatches profiled. */
  count: number;
  /** Sum of their GPU times, milliseconds. */
  ms: number;
}

/** Collects a timestamp pair per dispatch; {@link GpuProfiler.report} reads them back. */
export class GpuProfiler {
  #sets: GPUQuerySet[] = [];
  #labels: string[] = [];

  constructor(readonly device: GPUDevice) {
    if (!device.features.has("timestamp-query")) {
      throw new Error("GPU profiler: the device lacks the timestamp-query feature");
    }
  }

  /** Dispatches profiled so far. */
  get dispatches(): number {
    return this.#labels.length;
  }

  /** The descriptor of the next dispatch's own pass (timestamps at its beginning and end). */
  passFor(label: string): GPUComputePassDescriptor {
    const i = this.#labels.length;
    const slot = (2 * i) % QUERIES_PER_SET;
    if (slot === 0) {
      this.#sets.push(this.device.createQuerySet({ type: "timestamp", count: QUERIES_PER_SET }));
    }
    this.#labels.push(label);
    return {
      timestampWrites: {
        querySet: this.#sets.at(-1)!,
        beginningOfPassWriteIndex: slot,
        endOfPassWriteIndex: slot + 1,
      },
    };
  }

  /**
   * Resolve every query (after the profiled work was submitted) and sum the GPU time per
   * kernel label, largest first. The profiler is empty afterwards.
   */
  async report(): Promise<KernelTime[]> {
    const n = this.#labels.length;
    const times = new Float64Array(n);
    for (let s = 0; s < this.#sets.length; s++) {
      const first = s * (QUERIES_PER_SET / 2);
      const pairs = Math.min(QUERIES_PER_SET / 2, n - first);
      const bytes = pairs * 2 * 8;
      const resolved = this.device.createBuffer({
        size: bytes,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      const staging = this.device.createBuffer({
        size: bytes,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      const enc = this.device.createCommandEncoder();
      enc.resolveQuerySet(this.#sets[s], 0, pairs * 2, resolved, 0);
      enc.copyBufferToBuffer(resolved, 0, staging, 0, bytes);
      this.device.queue.submit([enc.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const ts = new BigUint64Array(staging.getMappedRange().slice(0));
      staging.unmap();
      staging.destroy();
      resolved.destroy();
      for (let p = 0; p < pairs; p++) {
        // Timestamps are nanoseconds; a reordered pair (allowed by the spec) counts as 0.
        const d = Number(ts[2 * p + 1] - ts[2 * p]);
        times[first + p] = d > 0 ? d / 1e6 : 0;
      }
    }
    const byLabel = new Map<string, KernelTime>();
    this.#labels.forEach((label, i) => {
      const k = byLabel.get(label) ?? { label, count: 0, ms: 0 };
      k.count++;
      k.ms += times[i];
      byLabel.set(label, k);
    });
    for (const s of this.#sets) s.destroy();
    this.#sets = [];
    this.#labels = [];
    return [...byLabel.values()].sort((a, b) => b.ms - a.ms);
  }
}
