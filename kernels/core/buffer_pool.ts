/**
 * Storage buffers recycled by size class, so a training loop that allocates the same
 * activations every step reuses the same GPU buffers (and hits the bind-group cache).
 *
 * Classes are 4 per octave, so a buffer is at most 25% larger than asked for.
 */

/** A pooled GPU buffer with the bookkeeping the runtime needs. */
export interface PooledBuffer {
  readonly id: number;
  readonly buffer: GPUBuffer;
  readonly size: number;
  /** Submit epoch of the last command that used it; equal to the pending epoch = unsubmitted. */
  lastUseEpoch: number;
  /** Holders (storages) of the buffer: 1 while a tensor owns it, 0 when free. */
  holds: number;
  /**
   * Owned by a capture (kernels/core/capture.ts): a release never returns it to the free
   * list, because replays keep writing it, until the capture unpins it.
   */
  pinned: boolean;
}

// UNIFORM too: small parameter blocks (attention's {seed, p}) come from the same pool.
const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

/** Round a byte count up to its size class (multiple of 256, 4 steps per power of two). */
export function sizeClass(bytes: number): number {
  const min = 256;
  if (bytes <= min) return min;
  const octave = 2 ** Math.floor(Math.log2(bytes));
  const step = octave / 4;
  const rounded = Math.ceil(bytes / step) * step;
  return Math.ceil(rounded / min) * min;
}

/** Pool of storage buffers keyed by size class. */
export class BufferPool {
  #free = new Map<number, PooledBuffer[]>();
  #nextId = 1;
  #bytesInUse = 0;
  #bytesAllocated = 0;
  #bytesResident = 0;
  #buffersInUse = 0;
  /**
   * Buffers acquired while a capture records (see {@link beginArena}), each with its order of
   * first acquisition in the arena.
   */
  #arena: Map<PooledBuffer, number> | null = null;

  constructor(private readonly device: GPUDevice, private readonly maxBufferSize: number) {}

  /**
   * A buffer of at least `bytes`. With `idleBefore`, only a buffer whose last use was submitted
   * before that epoch qualifies: `queue.writeBuffer` lands before any unsubmitted command, so a
   * buffer an unsubmitted command still reads must not receive an upload.
   */
  acquire(bytes: number, idleBefore?: number): PooledBuffer {
    const size = sizeClass(Math.max(4, bytes));
    if (size > this.maxBufferSize) {
      throw new RangeError(
        `tensor of ${bytes} bytes exceeds the device's maxBufferSize (${this.maxBufferSize})`,
      );
    }
    const list = this.#free.get(size);
    let found = this.#arena && list ? this.#fromArena(list, idleBefore) : undefined;
    if (!found && list && list.length > 0) {
      // Lists are sorted by descending id: the lowest free id comes first, so a step that
      // allocates the same sequence as the last one gets the same buffers (bind-group hits).
      if (idleBefore === undefined) found = list.pop();
      else {
        for (let i = list.length - 1; i >= 0; i--) {
          if (list[i].lastUseEpoch < idleBefore) {
            found = list.splice(i, 1)[0];
            break;
          }
        }
      }
    }
    if (!found) {
      const buffer = this.device.createBuffer({
        size,
        usage: USAGE,
        label: `pool-${this.#nextId}`,
      });
      found = { id: this.#nextId++, buffer, size, lastUseEpoch: -1, holds: 0, pinned: false };
      this.#bytesAllocated += size;
    }
    found.holds = 1;
    if (this.#arena && !this.#arena.has(found)) this.#arena.set(found, this.#arena.size);
    this.#bytesInUse += size;
    this.#buffersInUse++;
    return found;
  }

  /**
   * While a capture records: the free buffer of `list` that the arena acquired first, or
   * undefined. Reusing the step's own freed buffers before any other free buffer makes which
   * of its tensors share a buffer a function of the step alone, not of what else happened to
   * be free (two recordings of a step are compared buffer for buffer, kernels/core/capture.ts).
   */
  #fromArena(list: PooledBuffer[], idleBefore?: number): PooledBuffer | undefined {
    const arena = this.#arena!;
    let best = -1, bestOrder = Infinity;
    for (let i = 0; i < list.length; i++) {
      const order = arena.get(list[i]);
      if (order === undefined || order >= bestOrder) continue;
      if (idleBefore !== undefined && list[i].lastUseEpoch >= idleBefore) continue;
      best = i;
      bestOrder = order;
    }
    return best < 0 ? undefined : list.splice(best, 1)[0];
  }

  /** Give a buffer back. Later commands may reuse it: the queue keeps their order. */
  release(b: PooledBuffer): void {
    if (b.holds > 0) b.holds--;
    // A pinned buffer stays with its capture (and counted in use) until unpinned.
    if (b.holds > 0 || b.pinned) return;
    this.#toFreeList(b);
  }

  #toFreeList(b: PooledBuffer): void {
    this.#bytesInUse -= b.size;
    this.#buffersInUse--;
    let list = this.#free.get(b.size);
    if (!list) this.#free.set(b.size, list = []);
    // Keep descending id order (binary search; usually appends at the end).
    let lo = 0, hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid].id > b.id) lo = mid + 1;
      else hi = mid;
    }
    if (lo === list.length) list.push(b);
    else list.splice(lo, 0, b);
  }

  /** One more holder of a live (usually pinned) buffer: it is freed after one more release. */
  retain(b: PooledBuffer): void {
    b.holds++;
  }

  /** Start collecting every acquired buffer into an arena (a capture is recording). */
  beginArena(): void {
    if (this.#arena) throw new Error("buffer pool: an arena is already recording");
    this.#arena = new Map();
  }

  /**
   * Stop collecting and pin the arena: buffers free now leave the free list (they stay in use,
   * owned by the capture) and buffers still held are never returned to the free list while
   * pinned. Returns the arena.
   */
  endArena(): Set<PooledBuffer> {
    if (!this.#arena) throw new Error("buffer pool: no arena is recording");
    const arena = new Set(this.#arena.keys());
    this.#arena = null;
    for (const b of arena) {
      if (b.holds === 0 && !b.pinned) {
        const list = this.#free.get(b.size)!;
        list.splice(list.indexOf(b), 1);
        this.#bytesInUse += b.size;
        this.#buffersInUse++;
      }
      b.pinned = true;
    }
    return arena;
  }

  /** Stop an arena without pinning it (the capture failed): its buffers behave as usual. */
  abandonArena(): void {
    this.#arena = null;
  }

  /** Give an arena back: free buffers return to the free list, held ones on their release. */
  unpin(arena: Iterable<PooledBuffer>): void {
    for (const b of arena) {
      if (!b.pinned) continue;
      b.pinned = false;
      if (b.holds === 0) this.#toFreeList(b);
    }
  }

  /** Destroy every free buffer (after the queue has drained). Returns their ids. */
  trim(): number[] {
    const ids: number[] = [];
    for (const list of this.#free.values()) {
      for (const b of list) {
        b.buffer.destroy();
        this.#bytesAllocated -= b.size;
        ids.push(b.id);
      }
    }
    this.#free.clear();
    return ids;
  }

  /**
   * A buffer holding `data` for the life of the process (shape-generic kernels' dims
   * uniforms): never released, outside the free lists, and not counted in `bytesInUse` (it is
   * an engine constant, not a tensor), but in `bytesAllocated` and `bytesResident`.
   */
  resident(data: Uint32Array<ArrayBuffer>): PooledBuffer {
    const size = sizeClass(Math.max(4, data.byteLength));
    const buffer = this.device.createBuffer({
      size,
      usage: USAGE,
      label: `resident-${this.#nextId}`,
    });
    this.device.queue.writeBuffer(buffer, 0, data);
    this.#bytesAllocated += size;
    this.#bytesResident += size;
    return { id: this.#nextId++, buffer, size, lastUseEpoch: -1, holds: 1, pinned: true };
  }

  /**
   * Bytes held by live tensors, bytes allocated on the device, live buffer count, bytes of
   * resident constants ({@link resident}).
   */
  stats(): {
    bytesInUse: number;
    bytesAllocated: number;
    buffersInUse: number;
    bytesResident: number;
  } {
    return {
      bytesInUse: this.#bytesInUse,
      bytesAllocated: this.#bytesAllocated,
      buffersInUse: this.#buffersInUse,
      bytesResident: this.#bytesResident,
    };
  }
}
