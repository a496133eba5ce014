/**
 * The command recorder: every dispatch of a step goes into one encoder and one open compute
 * pass; pipelines are cached by WGSL source, bind groups by the buffers they bind. Nothing is
 * submitted until `flush()` (or a readback), and shader errors are checked before submitting.
 *
 * @module
 */
import { gpu, type GpuContext } from "./device.ts";
import { BufferPool, type PooledBuffer } from "./buffer_pool.ts";
import type { ReplayProgram, Trace, TraceUpload } from "./trace.ts";
import type { GpuProfiler } from "./gpu_profiler.ts";

/** A compute kernel: complete WGSL with entry point `main`, and how many workgroups to run. */
export interface Kernel {
  code: string;
  /** Names the op in error messages. */
  label: string;
  workgroups: readonly [number, number, number] | readonly number[];
}

/** Raised when WGSL fails to compile or validate; names the op whose shader failed. */
export class ShaderError extends Error {
  override name = "ShaderError";
}

interface CachedPipeline {
  id: number;
  pipeline: GPUComputePipeline;
  label: string;
}

/**
 * Engine counters since start (for `bench/overhead_bench.ts` and tests): every WebGPU call
 * the runtime makes that costs host time. Subtract two snapshots to count one step.
 */
export interface RuntimeCounters {
  /** dispatchWorkgroups calls. */
  dispatches: number;
  /** Compute passes begun. */
  passes: number;
  /** queue.submit calls (in dry-run mode: command buffers that would have been submitted). */
  submits: number;
  /** queue.writeBuffer calls. */
  uploads: number;
  /** Bind groups created (cache misses). */
  bindGroupsCreated: number;
  /** Compute pipelines compiled (cache misses). */
  pipelinesCompiled: number;
}

/** The difference of two counter snapshots (`after - before`). */
export function counterDelta(before: RuntimeCounters, after: RuntimeCounters): RuntimeCounters {
  return {
    dispatches: after.dispatches - before.dispatches,
    passes: after.passes - before.passes,
    submits: after.submits - before.submits,
    uploads: after.uploads - before.uploads,
    bindGroupsCreated: after.bindGroupsCreated - before.bindGroupsCreated,
    pipelinesCompiled: after.pipelinesCompiled - before.pipelinesCompiled,
  };
}

/** The engine's runtime. Obtain it with `await initRuntime()`, then `runtime()` anywhere. */
export class Runtime {
  readonly device: GPUDevice;
  readonly pool: BufferPool;
  #pipelines = new Map<string, CachedPipeline>();
  /** Warm path: cached kernels (see plan_cache.ts) find their pipeline by identity. */
  #byKernel = new WeakMap<Kernel, CachedPipeline>();
  #bindGroups = new Map<string, GPUBindGroup>();
  #pendingChecks: Promise<void>[] = [];
  /** Pipelines compiled since the last flush (their shader checks not yet awaited). */
  #uncheckedPipelines = 0;
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  /** Epoch of the commands being recorded now; increments at each submit. */
  #epoch = 0;
  #dispatchCount = 0;
  #recorded = 0;
  /** Set while a capture records (kernels/core/capture.ts). */
  #trace: Trace | null = null;
  #encodeMs = 0;
  #counters: RuntimeCounters = {
    dispatches: 0,
    passes: 0,
    submits: 0,
    uploads: 0,
    bindGroupsCreated: 0,
    pipelinesCompiled: 0,
  };
  /**
   * Dry run (benchmarks only): everything is recorded exactly as usual — pipelines, bind
   * groups, uploads, passes, `encoder.finish()` — but nothing is submitted, so the GPU never
   * runs. Readbacks return zero-filled bytes of the right lengths and `sync()` returns at
   * once: values read in this mode are garbage. Buffers hold whatever they held before.
   */
  dryRun = false;
  /**
   * Benchmarks only: while set, every dispatch (eager or replayed) runs in a timestamped
   * pass of its own (kernels/core/gpu_profiler.ts).
   */
  profiler: GpuProfiler | null = null;

  constructor(readonly ctx: GpuContext) {
    this.device = ctx.device;
    this.pool = new BufferPool(ctx.device, ctx.limits.maxBufferSize ?? 2 ** 28);
  }

  /** Epoch of the not-yet-submitted commands. */
  get epoch(): number {
    return this.#epoch;
  }

  /** Total dispatches recorded since start (for benchmarks and tests). */
  get dispatchCount(): number {
    return this.#dispatchCount;
  }

  /** A snapshot of the engine counters (see {@link RuntimeCounters}). */
  counters(): RuntimeCounters {
    return { ...this.#counters };
  }

  /**
   * Host milliseconds spent so far inside WebGPU's `pass.end()` and `encoder.finish()`, where
   * the implementation validates and encodes the recorded commands (benchmarks split a step's
   * host time into the engine's part and this one, which no engine on this API can avoid).
   */
  get encodeMs(): number {
    return this.#encodeMs;
  }

  /** Whether a capture is recording now (ops may then register dynamic uploads and hooks). */
  get tracing(): boolean {
    return this.#trace !== null;
  }

  /** Start recording commands for a capture (kernels/core/capture.ts). */
  beginTrace(): void {
    if (this.#trace) throw new Error("runtime: a capture is already recording (nested capture)");
    this.#trace = { entries: [], hooks: [] };
  }

  /** Stop recording and return what was recorded. */
  endTrace(): Trace {
    const t = this.#trace;
    if (!t) throw new Error("runtime: no capture is recording");
    this.#trace = null;
    return t;
  }

  /** Number of distinct compiled pipelines. */
  get pipelineCount(): number {
    return this.#pipelines.size;
  }

  #checkAlive(): void {
    if (this.ctx.lostReason) throw new Error(`WebGPU device was lost (${this.ctx.lostReason})`);
  }

  #pipeline(kernel: Kernel): CachedPipeline {
    const known = this.#byKernel.get(kernel);
    if (known) return known;
    const hit = this.#pipelines.get(kernel.code);
    if (hit) {
      this.#byKernel.set(kernel, hit);
      return hit;
    }
    const device = this.device;
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ code: kernel.code, label: kernel.label });
    const pipeline = device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
      label: kernel.label,
    });
    this.#counters.pipelinesCompiled++;
    this.#uncheckedPipelines++;
    const entry = { id: this.#pipelines.size + 1, pipeline, label: kernel.label };
    this.#pipelines.set(kernel.code, entry);
    this.#byKernel.set(kernel, entry);
    const code = kernel.code;
    this.#pendingChecks.push(
      device.popErrorScope().then((err) => {
        if (err) {
          this.#pipelines.delete(code);
          this.#byKernel.delete(kernel);
          throw new ShaderError(`shader for op '${kernel.label}' failed: ${err.message}`);
        }
      }),
    );
    return entry;
  }

  /**
   * Compile `kernel`'s pipeline now without recording a dispatch (shape-generic kernels warm
   * the variants that later calls of other sizes will need; nothing when already compiled).
   */
  prepare(kernel: Kernel): void {
    this.#checkAlive();
    this.#pipeline(kernel);
  }

  /** Record one dispatch. `buffers` bind to @binding(0..n-1) of @group(0) in order. */
  dispatch(kernel: Kernel, buffers: readonly PooledBuffer[]): void {
    this.#checkAlive();
    const [x, y = 1, z = 1] = kernel.workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.ctx.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    if (x > max || y > max || z > max) {
      throw new RangeError(
        `op '${kernel.label}': grid ${x}x${y}x${z} exceeds ${max} per dimension`,
      );
    }
    const p = this.#pipeline(kernel);
    let key = `${p.id}`;
    for (const b of buffers) key += `:${b.id}`;
    let group = this.#bindGroups.get(key);
    if (!group) {
      if (this.#bindGroups.size > 50_000) this.#bindGroups.clear();
      // A bind group of an invalid pipeline fails too; the shader error itself surfaces at
      // flush (naming the op), so this scope only keeps the console quiet. A genuine binding
      // mistake (too few buffers, a buffer too small) is reported at flush the same way.
      this.device.pushErrorScope("validation");
      group = this.device.createBindGroup({
        layout: p.pipeline.getBindGroupLayout(0),
        entries: buffers.map((b, i) => ({ binding: i, resource: { buffer: b.buffer } })),
        label: kernel.label,
      });
      const label = kernel.label;
      this.#pendingChecks.push(
        this.device.popErrorScope().then((err) => {
          if (err && this.#pipelines.has(kernel.code)) {
            throw new ShaderError(`bind group for op '${label}' is invalid: ${err.message}`);
          }
        }),
      );
      this.#bindGroups.set(key, group);
      this.#counters.bindGroupsCreated++;
    }
    for (const b of buffers) b.lastUseEpoch = this.#epoch;
    this.#trace?.entries.push({
      kind: "dispatch",
      pipeline: p.pipeline,
      group,
      x,
      y,
      z,
      buffers: [...buffers],
      label: kernel.label,
    });
    const pass = this.profiler ? this.#profiledPass(kernel.label) : this.#openPass();
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
    if (this.profiler) this.#endPass();
    this.#dispatchCount++;
    this.#counters.dispatches++;
    this.#recorded++;
  }

  #openEncoder(): GPUCommandEncoder {
    return this.#encoder ??= this.device.createCommandEncoder();
  }

  #openPass(): GPUComputePassEncoder {
    if (this.#pass) return this.#pass;
    this.#counters.passes++;
    return this.#pass = this.#openEncoder().beginComputePass();
  }

  /** A timestamped pass for one dispatch (the open pass is ended first). */
  #profiledPass(label: string): GPUComputePassEncoder {
    this.#endPass();
    this.#counters.passes++;
    return this.#pass = this.#openEncoder().beginComputePass(this.profiler!.passFor(label));
  }

  #endPass(): void {
    if (!this.#pass) return;
    const t0 = performance.now();
    this.#pass.end();
    this.#encodeMs += performance.now() - t0;
    this.#pass = null;
  }

  /** Record a buffer-to-buffer copy (closes the open compute pass). */
  copy(src: PooledBuffer, dst: PooledBuffer, bytes: number, srcOffset = 0, dstOffset = 0): void {
    this.#checkAlive();
    this.#endPass();
    src.lastUseEpoch = dst.lastUseEpoch = this.#epoch;
    this.#trace?.entries.push({ kind: "copy", src, dst, bytes, srcOffset, dstOffset });
    this.#openEncoder().copyBufferToBuffer(src.buffer, srcOffset, dst.buffer, dstOffset, bytes);
  }

  /**
   * Upload bytes into a fresh buffer that no unsubmitted command uses. `source` (tensor()'s
   * argument) lets a capture refill the buffer from a later call's inputs; any other upload
   * inside a capture must be declared with {@link uploadDynamic} or {@link uploadStatic}.
   */
  upload(data: ArrayBufferView, minBytes = data.byteLength, source?: unknown): PooledBuffer {
    this.#checkAlive();
    const b = this.pool.acquire(Math.max(minBytes, data.byteLength), this.#epoch);
    let bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    // writeBuffer needs a multiple of 4 bytes.
    this.#counters.uploads++;
    if (bytes.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    this.device.queue.writeBuffer(b.buffer, 0, bytes);
    this.#trace?.entries.push({
      kind: "upload",
      target: b,
      bytes: bytes.slice(),
      source,
      ctor: data.constructor,
      compute: null,
      isStatic: false,
    });
    return b;
  }

  /**
   * Upload per-call host data (a dropout seed, a step-dependent constant): `compute()` gives
   * the bytes now, and again on every replay of a capture that recorded this upload.
   */
  uploadDynamic(compute: () => ArrayBufferView, minBytes?: number): PooledBuffer {
    const b = this.upload(compute(), minBytes);
    if (this.#trace) (this.#trace.entries.at(-1) as TraceUpload).compute = compute;
    return b;
  }

  /** Upload bytes that are the same on every call (a capture replays them as recorded). */
  uploadStatic(data: ArrayBufferView, minBytes?: number): PooledBuffer {
    const b = this.upload(data, minBytes);
    if (this.#trace) (this.#trace.entries.at(-1) as TraceUpload).isStatic = true;
    return b;
  }

  /**
   * Register a host side effect of the op being recorded (the optimizer's step counter) that a
   * replay must repeat; hooks run in order before the replay's uploads are computed. Outside a
   * capture this does nothing (the op already did it).
   */
  onReplay(hook: () => void): void {
    this.#trace?.hooks.push(hook);
  }

  /**
   * Replay a compiled capture: one staging upload, its copies, then the recorded commands
   * (pipelines and bind groups as recorded), and a submit.
   */
  replay(program: ReplayProgram): void {
    this.#checkAlive();
    if (this.#trace) throw new Error("runtime: cannot replay a capture while recording one");
    if (program.staging && program.stagingBytes.byteLength > 0) {
      this.#counters.uploads++;
      this.device.queue.writeBuffer(program.staging, 0, program.stagingBytes);
    }
    this.#endPass();
    let encoder = this.#openEncoder();
    for (const c of program.prologue) {
      encoder.copyBufferToBuffer(program.staging!, c.srcOffset, c.dst, 0, c.bytes);
    }
    let pass: GPUComputePassEncoder | null = null;
    // What the open pass has set: a repeated pipeline or bind group is not set again.
    let pipeline: GPUComputePipeline | null = null, group: GPUBindGroup | null = null;
    let n = 0;
    for (const op of program.ops) {
      if (op.kind === 0) {
        if (!pass) {
          pass = this.profiler ? this.#profiledPass(op.label) : this.#openPass();
          pipeline = group = null;
        }
        if (op.pipeline !== pipeline) pass.setPipeline(pipeline = op.pipeline);
        if (op.group !== group) pass.setBindGroup(0, group = op.group);
        pass.dispatchWorkgroups(op.x, op.y, op.z);
        if (this.profiler) {
          this.#endPass();
          pass = null;
        }
        n++;
      } else if (op.kind === 1) {
        this.#endPass();
        pass = null;
        encoder.copyBufferToBuffer(op.src, op.srcOffset, op.dst, op.dstOffset, op.bytes);
      } else {
        this.#submit();
        pass = null;
        encoder = this.#openEncoder();
      }
    }
    this.#dispatchCount += n;
    this.#counters.dispatches += n;
    this.#recorded += n;
    // Submitted at once: the next replay's staging upload must not overtake these copies.
    this.#submit();
    const epoch = this.#epoch - 1;
    for (const b of program.touched) b.lastUseEpoch = epoch;
  }

  /**
   * Submit what has been recorded now, synchronously, unless a pipeline compiled since the
   * last flush still awaits its shader check (then the commands wait for the next `flush()`,
   * which checks first). Long steps (the planner, per imagined depth) call it so the GPU
   * starts on one part while the host records the next; inside a capture the submit is
   * recorded and replayed at the same point (warm steps compile nothing, so it is stable).
   */
  submitReady(): void {
    if (this.#uncheckedPipelines > 0) return;
    this.#submit();
  }

  /**
   * Submit what has been recorded. Shader errors of pipelines created since the last flush
   * are awaited first: a failing one throws (naming the op) and nothing is submitted.
   */
  async flush(): Promise<void> {
    if (this.#pendingChecks.length > 0) {
      const checks = this.#pendingChecks;
      this.#pendingChecks = [];
      this.#uncheckedPipelines = 0;
      try {
        await Promise.all(checks);
      } catch (e) {
        this.#pass?.end();
        this.#pass = null;
        this.#encoder = null; // drop every recorded command
        this.#recorded = 0;
        this.#epoch++;
        throw e;
      }
    }
    this.#submit();
  }

  #submit(): void {
    this.#checkAlive();
    this.#endPass();
    if (this.#encoder) {
      this.#trace?.entries.push({ kind: "submit" });
      const t0 = performance.now();
      const commands = this.#encoder.finish();
      this.#encodeMs += performance.now() - t0;
      if (!this.dryRun) this.device.queue.submit([commands]);
      this.#counters.submits++;
      this.#encoder = null;
    }
    this.#recorded = 0;
    this.#epoch++;
  }

  /** Resolves when the GPU has finished everything submitted so far. */
  async sync(): Promise<void> {
    await this.flush();
    if (!this.dryRun) await this.device.queue.onSubmittedWorkDone();
  }

  /** Read several buffers back with one submit and one map. */
  async read(parts: readonly { buffer: PooledBuffer; bytes: number }[]): Promise<ArrayBuffer[]> {
    if (this.#trace) {
      throw new Error("a captured step cannot read back to the host (run it with replay: false)");
    }
    const offsets: number[] = [];
    let total = 0;
    for (const p of parts) {
      offsets.push(total);
      total += Math.ceil(p.bytes / 4) * 4;
    }
    if (total === 0) return parts.map(() => new ArrayBuffer(0));
    if (this.dryRun) {
      // Same commands up to the copy, then zeros: nothing ran, so there is nothing to read.
      for (const p of parts) p.buffer.lastUseEpoch = this.#epoch;
      await this.flush();
      return parts.map((p) => new ArrayBuffer(p.bytes));
    }
    const staging = this.device.createBuffer({
      size: total,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "readback",
    });
    this.#endPass();
    const encoder = this.#openEncoder();
    parts.forEach((p, i) => {
      p.buffer.lastUseEpoch = this.#epoch;
      const n = Math.ceil(p.bytes / 4) * 4;
      if (n > 0) encoder.copyBufferToBuffer(p.buffer.buffer, 0, staging, offsets[i], n);
    });
    await this.flush();
    await staging.mapAsync(GPUMapMode.READ);
    const all = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    return parts.map((p, i) => all.slice(offsets[i], offsets[i] + p.bytes));
  }

  /** Free the pool's idle buffers and forget bind groups that used them. */
  async trim(): Promise<void> {
    await this.sync();
    this.pool.trim();
    this.#bindGroups.clear();
  }
}

let instance: Runtime | null = null;

/** Create (once) and return the runtime on the shared device. */
export async function initRuntime(): Promise<Runtime> {
  if (!instance) instance = new Runtime(await gpu());
  return instance;
}

/** The runtime; throws if `initRuntime()` has not completed. */
export function runtime(): Runtime {
  if (!instance) {
    throw new Error("the GPU runtime is not initialized: call `await initRuntime()` first");
  }
  return instance;
}
