/**
 * The bounded replay buffer of synthetic segments (the authors' `ReplayBuffer` for imagined
 * data: a ring that overwrites the oldest segments once full, sampled uniformly with
 * replacement). Sampling draws from `Rng(seed, step)`, so a batch is a pure function of the
 * buffer's contents and the step; the contents travel in checkpoints (`serialize`), so a
 * resumed run samples what an uninterrupted one would.
 *
 * @module
 */
import { Rng } from "../util/rng.ts";
import type { SyntheticSegments } from "./synthesis.ts";

/** Ring buffer of synthetic segments, all of length L with P tokens per observation. */
export class SyntheticBuffer {
  readonly tokens: Int32Array;
  readonly actions: Int32Array;
  readonly rewards: Float32Array;
  readonly taskIds: Int32Array;
  /** Next slot to write. */
  next = 0;
  /** Segments held. */
  size = 0;

  constructor(readonly capacity: number, readonly L: number, readonly P: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new Error(`synthetic buffer capacity must be an integer >= 1, got ${capacity}`);
    }
    this.tokens = new Int32Array(capacity * L * P);
    this.actions = new Int32Array(capacity * L);
    this.rewards = new Float32Array(capacity * L);
    this.taskIds = new Int32Array(capacity);
  }

  /** Append segments (oldest overwritten when full). */
  add(s: SyntheticSegments): void {
    if (s.L !== this.L || s.P !== this.P) {
      throw new Error(`synthetic segments of ${s.L}x${s.P}, buffer holds ${this.L}x${this.P}`);
    }
    const { L, P } = this;
    for (let i = 0; i < s.count; i++) {
      const j = this.next;
      this.tokens.set(s.tokens.subarray(i * L * P, (i + 1) * L * P), j * L * P);
      this.actions.set(s.actions.subarray(i * L, (i + 1) * L), j * L);
      this.rewards.set(s.rewards.subarray(i * L, (i + 1) * L), j * L);
      this.taskIds[j] = s.taskIds[i];
      this.next = (j + 1) % this.capacity;
      this.size = Math.min(this.size + 1, this.capacity);
    }
  }

  /** `n` segments drawn uniformly with replacement from `Rng(seed, step)`. */
  sample(n: number, seed: number, step: number): SyntheticSegments {
    if (this.size === 0) throw new Error("synthetic buffer is empty");
    const rng = new Rng(seed, 0x5e7, step);
    const { L, P } = this;
    const out: SyntheticSegments = {
      count: n,
      L,
      P,
      tokens: new Int32Array(n * L * P),
      actions: new Int32Array(n * L),
      rewards: new Float32Array(n * L),
      taskIds: new Int32Array(n),
    };
    for (let i = 0; i < n; i++) {
      const j = rng.int(this.size);
      out.tokens.set(this.tokens.subarray(j * L * P, (j + 1) * L * P), i * L * P);
      out.actions.set(this.actions.subarray(j * L, (j + 1) * L), i * L);
      out.rewards.set(this.rewards.subarray(j * L, (j + 1) * L), i * L);
      out.taskIds[i] = this.taskIds[j];
    }
    return out;
  }

  /** The contents as bytes (header: capacity, L, P, next, size; then the arrays). */
  serialize(): Uint8Array {
    const head = Int32Array.of(this.capacity, this.L, this.P, this.next, this.size);
    const parts = [head, this.tokens, this.actions, this.rewards, this.taskIds];
    const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
    let o = 0;
    for (const p of parts) {
      out.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), o);
      o += p.byteLength;
    }
    return out;
  }

  /** Inverse of {@link SyntheticBuffer.serialize}. */
  static deserialize(bytes: Uint8Array): SyntheticBuffer {
    const copy = bytes.slice();
    const head = new Int32Array(copy.buffer, 0, 5);
    const [capacity, L, P, next, size] = head;
    const b = new SyntheticBuffer(capacity, L, P);
    let o = 20;
    for (const arr of [b.tokens, b.actions, b.rewards, b.taskIds]) {
      new Uint8Array(arr.buffer).set(copy.subarray(o, o + arr.byteLength));
      o += arr.byteLength;
    }
    if (o !== copy.length) throw new Error("synthetic buffer file has the wrong size");
    b.next = next;
    b.size = size;
    return b;
  }
}
