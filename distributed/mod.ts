/**
 * Distributed runs over MPI, bound with Deno FFI (`Deno.dlopen`): data-parallel training
 * (gradients all-reduced across ranks) and sharded evaluation (results gathered to rank 0).
 *
 * ```ts
 * import { initDistributed } from "./distributed/mod.ts";
 * const comm = initDistributed(); // size 1, rank 0 and no MPI at all in a plain run
 * await comm.allreduceMean(grads); // every rank, same order
 * const all = await comm.gatherJson(myResults); // array on rank 0, null elsewhere
 * await comm.finalize();
 * ```
 *
 * Start a job with `mpiexec -n 8 deno task pretrain ...` or Slurm `srun` (with
 * `--kill-on-bad-exit=1`, and `--mpi=pmi2` or `pmix` as the site's MPICH wants). Whether this
 * process is one rank of such a job is read from the launcher's environment variables
 * (`launcher.ts`); without them nothing is loaded and a single-process run behaves as before,
 * with or without MPI installed.
 *
 * The library: `JOWA_MPI_LIB` if set, else `libmpi.so.12` (MPICH >= 3.1, Intel MPI, Cray MPICH),
 * `libmpich.so.12`, `libmpi.so.40` (Open MPI), ... (`library.ts`). MPICH is the primary target
 * (what CI installs and the tests launch): its handles are plain `int` constants
 * (`MPI_COMM_WORLD` = 0x44000000), so its ABI is a handful of numbers, shared by Intel MPI and
 * Cray MPICH. Open MPI's handles are addresses of global objects (`&ompi_mpi_comm_world`),
 * resolved as FFI statics (`abi.ts`); checked by hand with Open MPI 4.1.4's `mpirun -np 2`
 * (collectives, dying and hung ranks), not in CI. The ABI is told from
 * `MPI_Get_library_version`. If `mpiexec` and the library come from different MPIs, every rank
 * would see itself as rank 0 of 1: `initDistributed` compares with the launcher's count and
 * stops with an error instead.
 *
 * Failure handling: collectives run off the JS thread, one at a time, under a watchdog
 * (`JOWA_MPI_TIMEOUT_S`, default 600 s, 0 = off) that aborts the job with a message naming the
 * operation when a collective does not finish. MPICH's hydra `mpiexec` already kills the other
 * ranks within milliseconds when one exits non-zero or is killed; the watchdog covers the rest
 * (a peer that hangs, a launcher that does not kill). A rank that exits before `finalize()`
 * (even with code 0) aborts the job, since hydra would otherwise end the others silently with
 * status 0; a script that simply ends is finalized for it.
 *
 * @module
 */
import { DistributedError } from "./errors.ts";
import { detectLauncher, type Env } from "./launcher.ts";
import { openMpiLibrary } from "./library.ts";
import { MpiComm } from "./mpi_comm.ts";
import { SingleComm } from "./single.ts";
import { timeoutFromEnv } from "./watchdog.ts";
import type { Comm } from "./comm.ts";

export type { BroadcastBuffer, Comm } from "./comm.ts";
export { DistributedError } from "./errors.ts";
export { detectLauncher, type Env, type LaunchInfo } from "./launcher.ts";
export { MPI_LIBRARY_CANDIDATES, mpiLibraryCandidates } from "./library.ts";
export { chunkRanges, DEFAULT_MAX_COUNT, MPI_MAX_COUNT } from "./chunks.ts";
export { DEFAULT_TIMEOUT_S, TIMEOUT_EXIT_CODE } from "./watchdog.ts";

/** Options of `initDistributed`. */
export interface InitOptions {
  /** Environment to read (default: the process's). */
  env?: Env;
  /** Collective deadline in seconds, 0 for none (default: `JOWA_MPI_TIMEOUT_S` or 600). */
  timeoutS?: number;
  /** Elements per MPI call, at most 2^31-1 (default 2^28); tests use tiny values. */
  maxCount?: number;
}

let world: MpiComm | null = null;

/**
 * The communicator of this process: a `Comm` of size 1 (no library loaded) in a plain run, else
 * MPI_COMM_WORLD (MPI initialized once per process; later calls return the same `Comm`).
 * Throws a one-line `DistributedError` when launched under MPI but MPI cannot be used.
 */
export function initDistributed(options: InitOptions = {}): Comm {
  const env = options.env ?? Deno.env.toObject();
  const launch = detectLauncher(env);
  if (!launch) return new SingleComm();
  if (world) return world;
  const timeoutS = options.timeoutS ?? timeoutFromEnv(env);
  if (options.maxCount !== undefined && !(options.maxCount >= 1 && options.maxCount < 2 ** 31)) {
    throw new DistributedError(`jowa distributed: maxCount ${options.maxCount} out of range`);
  }
  const lib = openMpiLibrary(env);
  world = MpiComm.init(lib, launch, { timeoutS, maxCount: options.maxCount });
  return world;
}
