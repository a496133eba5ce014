/** The one-process `Comm` of a plain run: every collective is the identity. @module */
import { type BroadcastBuffer, checkRoot, type Comm } from "./comm.ts";

/** `Comm` of size 1 and rank 0; loads no library. */
export class SingleComm implements Comm {
  readonly rank = 0;
  readonly size = 1;
  readonly backend = "single" as const;
  readonly description = "single process (no MPI launcher detected)";
  #finalized = false;

  #check(root = 0): void {
    if (this.#finalized) throw new Error("jowa distributed: communicator used after finalize()");
    checkRoot(root, 1);
  }
  allreduceSum(buf: Float32Array): Promise<Float32Array> {
    this.#check();
    return Promise.resolve(buf);
  }
  allreduceMean(buf: Float32Array): Promise<Float32Array> {
    this.#check();
    return Promise.resolve(buf);
  }
  broadcast<T extends BroadcastBuffer>(buf: T, root = 0): Promise<T> {
    this.#check(root);
    return Promise.resolve(buf);
  }
  broadcastBytes(data: Uint8Array | null, root = 0): Promise<Uint8Array> {
    this.#check(root);
    if (!data) throw new TypeError("broadcastBytes: root must pass its data");
    return Promise.resolve(data);
  }
  gatherBytes(data: Uint8Array, root = 0): Promise<Uint8Array[] | null> {
    this.#check(root);
    return Promise.resolve([data]);
  }
  gatherJson<T>(value: T, root = 0): Promise<T[] | null> {
    this.#check(root);
    return Promise.resolve([JSON.parse(JSON.stringify(value)) as T]);
  }
  barrier(): Promise<void> {
    this.#check();
    return Promise.resolve();
  }
  abort(code = 1, message?: string): never {
    if (message) console.error(message);
    Deno.exit(code);
  }
  finalize(): Promise<void> {
    this.#finalized = true;
    return Promise.resolve();
  }
}
