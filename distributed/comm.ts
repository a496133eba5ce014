/**
 * `Comm`: the communicator the training and evaluation code talks to, whether the job has one
 * process or many. All collectives must be called by every rank, in the same order.
 * @module
 */

/** Buffers `broadcast` moves. */
export type BroadcastBuffer = Uint8Array | Float32Array;

/** A group of processes (MPI_COMM_WORLD), or just this one. */
export interface Comm {
  /** This process's rank, 0 <= rank < size. */
  readonly rank: number;
  /** Number of processes. */
  readonly size: number;
  /** "single" for a plain run (no MPI library loaded), "mpi" under a launcher. */
  readonly backend: "single" | "mpi";
  /** One line for logs: backend, library and launcher. */
  readonly description: string;
  /** Sums `buf` element-wise over all ranks, in place; resolves to `buf`. */
  allreduceSum(buf: Float32Array): Promise<Float32Array>;
  /** `allreduceSum` then division by `size`: the data-parallel gradient average. */
  allreduceMean(buf: Float32Array): Promise<Float32Array>;
  /** Copies root's `buf` into every rank's `buf` (same length everywhere); resolves to `buf`. */
  broadcast<T extends BroadcastBuffer>(buf: T, root?: number): Promise<T>;
  /** Root's bytes to every rank, length included (other ranks pass null or anything). */
  broadcastBytes(data: Uint8Array | null, root?: number): Promise<Uint8Array>;
  /** Each rank's bytes (any length, 0 included) to root, in rank order; null on other ranks. */
  gatherBytes(data: Uint8Array, root?: number): Promise<Uint8Array[] | null>;
  /** `gatherBytes` of JSON: each rank's value to root, in rank order; null on other ranks. */
  gatherJson<T>(value: T, root?: number): Promise<T[] | null>;
  /** Resolves once every rank has called it. */
  barrier(): Promise<void>;
  /** Prints `message` (if any) and ends the whole job with `code` (MPI_Abort). */
  abort(code?: number, message?: string): never;
  /** Ends MPI use (MPI_Finalize); later collectives throw. Idempotent. */
  finalize(): Promise<void>;
}

/** Checks a root argument. */
export function checkRoot(root: number, size: number): void {
  if (!Number.isInteger(root) || root < 0 || root >= size) {
    throw new RangeError(`root ${root} is not a rank of a ${size}-rank communicator`);
  }
}
