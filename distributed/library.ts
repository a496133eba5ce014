/**
 * Finding and opening the MPI shared library, and telling which ABI it speaks.
 * @module
 */
import { type Handles, handlesOf, type MpiAbi, type MpiFunctions, mpiSymbols } from "./abi.ts";
import { DistributedError } from "./errors.ts";
import type { Env } from "./launcher.ts";

/**
 * Sonames tried in order when `JOWA_MPI_LIB` is unset: MPICH >= 3.1 (and Intel MPI, Cray
 * MPICH), Debian's MPICH name, Open MPI 3-5, then unversioned development links.
 */
export const MPI_LIBRARY_CANDIDATES: readonly string[] = [
  "libmpi.so.12",
  "libmpich.so.12",
  "libmpi.so.40",
  "libmpi.so",
  "libmpich.so",
  "libmpi.dylib",
  "libmpich.dylib",
];

/** An opened MPI library. */
export interface MpiLibrary {
  /** The path or soname it was opened by. */
  path: string;
  abi: MpiAbi;
  /** First line of `MPI_Get_library_version`, e.g. "MPICH Version: 4.0.2". */
  version: string;
  fns: MpiFunctions;
  handles: Handles;
  close(): void;
}

/** The library names to try: `JOWA_MPI_LIB` alone when set, else `MPI_LIBRARY_CANDIDATES`. */
export function mpiLibraryCandidates(env: Env): string[] {
  const forced = env.JOWA_MPI_LIB?.trim();
  return forced ? [forced] : [...MPI_LIBRARY_CANDIDATES];
}

function oneLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).replace(/\s*\n\s*/g, "; ");
}

const VERSION_PROBE = {
  MPI_Get_library_version: { parameters: ["buffer", "buffer"], result: "i32" },
} as const;

function libraryVersion(path: string): string {
  const lib = Deno.dlopen(path, VERSION_PROBE);
  try {
    // MPI_MAX_LIBRARY_VERSION_STRING is 8192 in MPICH, 256 in Open MPI; callable before init.
    const buf = new Uint8Array(8192), len = new Int32Array(1);
    if (lib.symbols.MPI_Get_library_version(buf, len) !== 0) return "unknown MPI";
    const s = new TextDecoder().decode(buf.subarray(0, Math.max(0, Math.min(len[0], 8192))));
    return s.replace(/\0.*$/s, "").trim().split("\n")[0].replace(/\s+/g, " ");
  } finally {
    lib.close();
  }
}

function hasSymbol(path: string, name: string): boolean {
  try {
    Deno.dlopen(path, { [name]: { type: "pointer" } }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Opens the MPI library (see `mpiLibraryCandidates`) and binds it. Throws one `DistributedError`
 * line naming what to install when none loads.
 */
export function openMpiLibrary(env: Env): MpiLibrary {
  const names = mpiLibraryCandidates(env);
  const failures: string[] = [];
  for (const path of names) {
    let version: string;
    try {
      version = libraryVersion(path);
    } catch (e) {
      failures.push(oneLine(e));
      continue;
    }
    const abi: MpiAbi = /open mpi/i.test(version) || hasSymbol(path, "ompi_mpi_comm_world")
      ? "openmpi"
      : "mpich";
    let lib: Deno.DynamicLibrary<Deno.ForeignLibraryInterface>;
    try {
      lib = Deno.dlopen(path, mpiSymbols(abi));
    } catch (e) {
      throw new DistributedError(
        `jowa distributed: ${path} (${version}) lacks MPI-3 symbols the ${abi} ABI needs: ` +
          `${oneLine(e)}; use MPICH (apt-get install mpich) or set JOWA_MPI_LIB`,
      );
    }
    return {
      path,
      abi,
      version,
      fns: lib.symbols as unknown as MpiFunctions,
      handles: handlesOf(abi, lib.symbols as Record<string, unknown>),
      close: () => lib.close(),
    };
  }
  if (env.JOWA_MPI_LIB?.trim()) {
    throw new DistributedError(
      `jowa distributed: cannot load JOWA_MPI_LIB=${names[0]} (${failures[0]}); ` +
        `point it at an MPI shared library (libmpi.so.12) or unset it after installing MPICH ` +
        `(apt-get install mpich)`,
    );
  }
  throw new DistributedError(
    `jowa distributed: launched under MPI but no MPI library loads (tried ${names.join(", ")}); ` +
      `install MPICH (apt-get install mpich) or set JOWA_MPI_LIB=/path/to/libmpi.so`,
  );
}
