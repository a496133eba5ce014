/**
 * What a capture records from the runtime (kernels/core/capture.ts): every dispatch with its
 * compiled pipeline and bind group, every copy and upload in order, and the host hooks to run
 * on each replay. Replaying a trace re-encodes exactly these commands with no op code running.
 *
 * @module
 */
import type { PooledBuffer } from "./buffer_pool.ts";

/** One recorded dispatch. */
export interface TraceDispatch {
  kind: "dispatch";
  pipeline: GPUComputePipeline;
  group: GPUBindGroup;
  x: number;
  y: number;
  z: number;
  buffers: readonly PooledBuffer[];
  label: string;
}

/** One recorded buffer-to-buffer copy. */
export interface TraceCopy {
  kind: "copy";
  src: PooledBuffer;
  dst: PooledBuffer;
  bytes: number;
  srcOffset: number;
  dstOffset: number;
}

/**
 * One recorded upload. Its bytes on replay come from `compute` (dynamic: per-call data such
 * as dropout seeds or the optimizer's bias correction), from the new call's input that was
 * `source` (tensor() of an input array), or are `bytes` again (declared static).
 */
export interface TraceUpload {
  kind: "upload";
  target: PooledBuffer;
  /** The bytes written at capture time, padded to a multiple of 4. */
  bytes: Uint8Array;
  /** What the data came from (tensor()'s argument), if known. */
  source: unknown;
  compute: (() => ArrayBufferView) | null;
  /** The typed-array type of the uploaded data (what tensor() converted its input to). */
  ctor: unknown;
  /** Declared constant by the op (e.g. a table that never changes). */
  isStatic: boolean;
}

/** A submit inside the traced region (replayed as a submit at the same point). */
export interface TraceSubmit {
  kind: "submit";
}

/** One traced command. */
export type TraceEntry = TraceDispatch | TraceCopy | TraceUpload | TraceSubmit;

/** Everything recorded between `beginTrace()` and `endTrace()`. */
export interface Trace {
  entries: TraceEntry[];
  /** Host side effects to repeat on each replay, in order, before uploads are computed. */
  hooks: (() => void)[];
}

/** What `Runtime.replay` runs: a trace compiled by the capture. */
export interface ReplayProgram {
  /** Staging buffer (capture-owned) that receives all of a replay's upload bytes at once. */
  staging: GPUBuffer | null;
  /** The packed upload bytes of this replay (filled by the capture before each replay). */
  stagingBytes: Uint8Array<ArrayBuffer>;
  /** Staging -> target copies run before the first command (uploads nothing touched before). */
  prologue: readonly { dst: GPUBuffer; srcOffset: number; bytes: number }[];
  /** The commands, in order; an upload kept in place is a copy from staging. */
  ops: readonly ReplayOp[];
  /** Every buffer the commands touch (their last-use epoch is updated). */
  touched: readonly PooledBuffer[];
}

/** One command of a {@link ReplayProgram}. */
export type ReplayOp =
  | {
    kind: 0;
    pipeline: GPUComputePipeline;
    group: GPUBindGroup;
    x: number;
    y: number;
    z: number;
    /** The kernel's label (GPU profiles of replays). */
    label: string;
  }
  | {
    kind: 1;
    src: GPUBuffer;
    srcOffset: number;
    dst: GPUBuffer;
    dstOffset: number;
    bytes: number;
  }
  | { kind: 2 };
