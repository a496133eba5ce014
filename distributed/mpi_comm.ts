/**
 * `MpiComm`: `Comm` over MPI_COMM_WORLD of an opened MPI library.
 *
 * Collectives run as nonblocking FFI calls (on a runtime worker thread), one at a time in call
 * order, so the JS thread stays free for the watchdog (`watchdog.ts`). That needs
 * MPI_THREAD_SERIALIZED, and aborting from the JS thread while a collective is in flight needs
 * MPI_THREAD_MULTIPLE; MPICH, Intel MPI and Open MPI provide it. With less, calls block the JS
 * thread and the watchdog is off (a note says so at init).
 * @module
 */
import { MPI_THREAD_MULTIPLE, MPI_THREAD_SERIALIZED, type MpiFunctions } from "./abi.ts";
import { chunkRanges, DEFAULT_MAX_COUNT } from "./chunks.ts";
import { type BroadcastBuffer, checkRoot, type Comm } from "./comm.ts";
import { DistributedError } from "./errors.ts";
import type { LaunchInfo } from "./launcher.ts";
import type { MpiLibrary } from "./library.ts";
import { TIMEOUT_EXIT_CODE, withDeadline } from "./watchdog.ts";

/** Options of `MpiComm.init`. */
export interface MpiCommOptions {
  /** Collective deadline in seconds (0: none). */
  timeoutS: number;
  /** Elements per MPI call (tests use tiny values to exercise chunking). */
  maxCount?: number;
}

type Collective = "MPI_Allreduce" | "MPI_Bcast" | "MPI_Gather" | "MPI_Gatherv" | "MPI_Barrier";
/** Blocks the JS thread (abort paths only). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
const ptr = (a: ArrayBufferView) => Deno.UnsafePointer.of(a as Uint8Array<ArrayBuffer>);

/** The MPI-backed `Comm`. Create it with `MpiComm.init` (once per process). */
export class MpiComm implements Comm {
  readonly backend = "mpi" as const;
  readonly rank: number;
  readonly size: number;
  readonly description: string;
  readonly #lib: MpiLibrary;
  readonly #fns: MpiFunctions;
  readonly #threaded: boolean;
  readonly #canAbortConcurrently: boolean;
  readonly #timeoutS: number;
  readonly #maxCount: number;
  #queue: Promise<unknown> = Promise.resolve();
  #state: "open" | "finalizing" | "finalized" | "aborting" = "open";
  #onBeforeUnload = () => {
    if (this.#state === "open") this.finalize().catch((e) => this.abort(1, String(e)));
  };
  #onUnload = () => {
    if (this.#state !== "open" && this.#state !== "finalizing") return;
    const code = Deno.exitCode || 1;
    this.abort(
      code,
      `jowa distributed: rank ${this.rank}/${this.size} exited (code ${Deno.exitCode}) ` +
        `before finalize(); aborting all ranks`,
    );
  };

  private constructor(lib: MpiLibrary, launch: LaunchInfo, opts: MpiCommOptions) {
    this.#lib = lib;
    this.#fns = lib.fns;
    const f = this.#fns, h = lib.handles;
    const provided = new Int32Array(1);
    const rc = f.MPI_Init_thread(null, null, MPI_THREAD_MULTIPLE, provided);
    if (rc !== 0) throw new DistributedError(`jowa distributed: MPI_Init_thread failed (${rc})`);
    this.#check(f.MPI_Comm_set_errhandler(h.commWorld, h.errorsReturn), "MPI_Comm_set_errhandler");
    const out = new Int32Array(1);
    this.#check(f.MPI_Comm_rank(h.commWorld, out), "MPI_Comm_rank");
    this.rank = out[0];
    this.#check(f.MPI_Comm_size(h.commWorld, out), "MPI_Comm_size");
    this.size = out[0];
    this.#threaded = provided[0] >= MPI_THREAD_SERIALIZED;
    this.#canAbortConcurrently = provided[0] >= MPI_THREAD_MULTIPLE;
    this.#timeoutS = this.#threaded ? opts.timeoutS : 0;
    this.#maxCount = opts.maxCount ?? DEFAULT_MAX_COUNT;
    this.description = `MPI rank ${this.rank}/${this.size}: ${lib.version} (${lib.path}, ` +
      `${launch.launcher} launcher)`;
    if (launch.size !== null && launch.size !== this.size) {
      const msg = `jowa distributed: the ${launch.launcher} launcher started ${launch.size} ` +
        `ranks but ${lib.path} (${lib.version}) sees ${this.size}: mpiexec and the MPI ` +
        `library come from different MPI implementations; use one (set JOWA_MPI_LIB)`;
      f.MPI_Finalize_sync();
      throw new DistributedError(msg);
    }
    if (!this.#threaded && opts.timeoutS > 0 && this.rank === 0) {
      console.error(
        `jowa distributed: note: ${lib.version} provides thread level ${provided[0]} < ` +
          `MPI_THREAD_SERIALIZED; collectives block and the JOWA_MPI_TIMEOUT_S watchdog is off`,
      );
    }
    addEventListener("beforeunload", this.#onBeforeUnload);
    addEventListener("unload", this.#onUnload);
  }

  /** Initializes MPI (MPI_Init_thread) over an opened library. */
  static init(lib: MpiLibrary, launch: LaunchInfo, opts: MpiCommOptions): MpiComm {
    return new MpiComm(lib, launch, opts);
  }

  #errorString(code: number): string {
    const buf = new Uint8Array(1024), len = new Int32Array(1);
    if (this.#fns.MPI_Error_string(code, buf, len) !== 0) return `MPI error ${code}`;
    return new TextDecoder().decode(buf.subarray(0, Math.min(len[0], 1024))).trim();
  }

  #check(rc: number, what: string): void {
    if (rc !== 0) {
      throw new DistributedError(
        `jowa distributed: rank ${this.rank ?? "?"}: ${what} failed: ${this.#errorString(rc)}`,
      );
    }
  }

  /** Runs `body` after every earlier operation, under the watchdog. */
  #enqueue<T>(op: string, body: () => Promise<T>): Promise<T> {
    if (this.#state !== "open") {
      return Promise.reject(
        new DistributedError(`jowa distributed: ${op} after finalize() or abort()`),
      );
    }
    const run = this.#queue.then(() =>
      withDeadline(body(), this.#timeoutS, () => this.#timedOut(op))
    );
    this.#queue = run.catch(() => {});
    return run;
  }

  /** One MPI call: nonblocking when the thread level allows, its status checked. */
  async #call(op: string, name: Collective, args: unknown[]): Promise<void> {
    const f = this.#fns as unknown as Record<string, (...a: unknown[]) => unknown>;
    const rc = this.#threaded
      ? await (f[name](...args) as Promise<number>)
      : f[`${name}_sync`](...args) as number;
    this.#check(rc, `${name} in ${op}`);
  }

  #timedOut(op: string): void {
    this.abort(
      TIMEOUT_EXIT_CODE,
      `jowa distributed: rank ${this.rank}/${this.size}: ${op} did not complete within ` +
        `${this.#timeoutS} s (JOWA_MPI_TIMEOUT_S); a peer rank probably died or hangs; ` +
        `aborting all ranks`,
    );
  }

  allreduceSum(buf: Float32Array): Promise<Float32Array> {
    const op = `allreduceSum(${buf.length} f32)`;
    const h = this.#lib.handles;
    return this.#enqueue(op, async () => {
      for (const [off, n] of chunkRanges(buf.length, this.#maxCount)) {
        const p = ptr(buf.subarray(off, off + n));
        await this.#call(op, "MPI_Allreduce", [h.inPlace, p, n, h.float, h.sum, h.commWorld]);
      }
      return buf;
    });
  }

  async allreduceMean(buf: Float32Array): Promise<Float32Array> {
    await this.allreduceSum(buf);
    const inv = 1 / this.size;
    for (let i = 0; i < buf.length; i++) buf[i] *= inv;
    return buf;
  }

  broadcast<T extends BroadcastBuffer>(buf: T, root = 0): Promise<T> {
    checkRoot(root, this.size);
    const h = this.#lib.handles;
    const [type, kind] = buf instanceof Float32Array ? [h.float, "f32"] : [h.byte, "bytes"];
    const op = `broadcast(${buf.length} ${kind} from rank ${root})`;
    return this.#enqueue(op, async () => {
      for (const [off, n] of chunkRanges(buf.length, this.#maxCount)) {
        const p = ptr(buf.subarray(off, off + n));
        await this.#call(op, "MPI_Bcast", [p, n, type, root, h.commWorld]);
      }
      return buf;
    });
  }

  async broadcastBytes(data: Uint8Array | null, root = 0): Promise<Uint8Array> {
    checkRoot(root, this.size);
    if (this.rank === root && !data) throw new TypeError("broadcastBytes: root must pass data");
    const len = new Float64Array([this.rank === root ? data!.length : 0]);
    await this.broadcast(new Uint8Array(len.buffer), root);
    const out = this.rank === root ? data! : new Uint8Array(len[0]);
    return await this.broadcast(out, root);
  }

  async gatherBytes(data: Uint8Array, root = 0): Promise<Uint8Array[] | null> {
    checkRoot(root, this.size);
    const h = this.#lib.handles, size = this.size, isRoot = this.rank === root;
    const op = `gatherBytes(${data.length} bytes to rank ${root})`;
    // 1. Every rank learns every length (gather to root, then broadcast): 8 bytes per rank.
    const lengths = new Float64Array(size);
    const mine = new Float64Array([data.length]);
    await this.#enqueue(op, () =>
      this.#call(op, "MPI_Gather", [
        ptr(new Uint8Array(mine.buffer)),
        8,
        h.byte,
        isRoot ? ptr(new Uint8Array(lengths.buffer)) : null,
        8,
        h.byte,
        root,
        h.commWorld,
      ]));
    await this.broadcast(new Uint8Array(lengths.buffer), root);
    // 2. Rounds of MPI_Gatherv, each moving at most maxCount bytes in all to root.
    const out = isRoot ? Array.from(lengths, (n) => new Uint8Array(n)) : null;
    const per = Math.max(1, Math.floor(this.#maxCount / size));
    const rounds = Math.ceil(Math.max(0, ...lengths) / per);
    const counts = new Int32Array(size), displs = new Int32Array(size);
    for (let k = 0; k < rounds; k++) {
      let total = 0;
      for (let i = 0; i < size; i++) {
        counts[i] = Math.max(0, Math.min(per, lengths[i] - k * per));
        displs[i] = total;
        total += counts[i];
      }
      const recv = isRoot ? new Uint8Array(Math.max(1, total)) : null;
      const send = data.subarray(Math.min(data.length, k * per));
      const sendPtr = ptr(send.length ? send : new Uint8Array(1));
      await this.#enqueue(op, () =>
        this.#call(op, "MPI_Gatherv", [
          sendPtr,
          counts[this.rank],
          h.byte,
          recv ? ptr(recv) : null,
          counts,
          displs,
          h.byte,
          root,
          h.commWorld,
        ]));
      if (out && recv) {
        for (let i = 0; i < size; i++) {
          if (counts[i]) out[i].set(recv.subarray(displs[i], displs[i] + counts[i]), k * per);
        }
      }
    }
    return out;
  }

  async gatherJson<T>(value: T, root = 0): Promise<T[] | null> {
    const bytes = new TextEncoder().encode(JSON.stringify(value) ?? "null");
    const parts = await this.gatherBytes(bytes, root);
    const dec = new TextDecoder();
    return parts && parts.map((p) => JSON.parse(dec.decode(p)) as T);
  }

  barrier(): Promise<void> {
    const h = this.#lib.handles;
    return this.#enqueue("barrier()", () => this.#call("barrier()", "MPI_Barrier", [h.commWorld]));
  }

  abort(code = 1, message?: string): never {
    if (message) console.error(message);
    const busy = this.#state === "open" || this.#state === "finalizing";
    this.#state = "aborting";
    removeEventListener("unload", this.#onUnload);
    if (busy && this.#canAbortConcurrently) {
      // Give the launcher time to forward the message: hydra may kill before relaying it.
      if (message) sleepSync(500);
      // MPI_Abort asks the launcher to kill every rank. Called off the JS thread so that a
      // stuck abort cannot stop the fallback exit below; this function must not return.
      this.#fns.MPI_Abort(this.#lib.handles.commWorld, code);
      sleepSync(5000);
    }
    Deno.exit(code);
  }

  async finalize(): Promise<void> {
    if (this.#state !== "open") return;
    this.#state = "finalizing";
    removeEventListener("beforeunload", this.#onBeforeUnload);
    const run = this.#queue.then(() =>
      withDeadline(
        this.#call("finalize()", "MPI_Finalize" as Collective, []),
        this.#timeoutS,
        () => this.#timedOut("finalize()"),
      )
    );
    this.#queue = run.catch(() => {});
    await run;
    this.#state = "finalized";
    removeEventListener("unload", this.#onUnload);
  }
}
