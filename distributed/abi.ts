/**
 * The two MPI ABIs, as FFI symbol tables and handle values.
 *
 * MPICH ABI (MPICH, Intel MPI, Cray MPICH, MVAPICH): handles are C `int`s with fixed values,
 * checked against MPICH 4.0.2's `mpi.h`. Open MPI: handles are addresses of global objects
 * (`MPI_COMM_WORLD` is `&ompi_mpi_comm_world`), resolved from the library's symbols.
 * @module
 */

/** Which ABI a library speaks. */
export type MpiAbi = "mpich" | "openmpi";

/** An MPI handle: an `int` (MPICH ABI) or a pointer (Open MPI). */
export type Handle = number | Deno.PointerObject;

/** The predefined handles and special buffers this binding uses. */
export interface Handles {
  commWorld: Handle;
  float: Handle;
  byte: Handle;
  int: Handle;
  sum: Handle;
  errorsReturn: Handle;
  /** `MPI_IN_PLACE`. */
  inPlace: Deno.PointerObject;
}

/** `MPI_THREAD_SERIALIZED` and `MPI_THREAD_MULTIPLE` (same values in both ABIs). */
export const MPI_THREAD_SERIALIZED = 2;
/** See `MPI_THREAD_SERIALIZED`. */
export const MPI_THREAD_MULTIPLE = 3;

/** MPICH `mpi.h` values. */
export const MPICH_HANDLES: Omit<Handles, "inPlace"> = {
  commWorld: 0x44000000, // MPI_COMM_WORLD
  float: 0x4c00040a, // MPI_FLOAT
  byte: 0x4c00010d, // MPI_BYTE
  int: 0x4c000405, // MPI_INT
  sum: 0x58000003, // MPI_SUM
  errorsReturn: 0x54000001, // MPI_ERRORS_RETURN
};
/** MPICH: `MPI_IN_PLACE` is `(void *)-1`; Open MPI: `(void *)1`. */
export const IN_PLACE_VALUE: Record<MpiAbi, bigint> = { mpich: 0xffffffffffffffffn, openmpi: 1n };

/** Open MPI global objects whose addresses are the predefined handles. */
export const OPENMPI_STATICS = {
  ompi_mpi_comm_world: { type: "pointer" },
  ompi_mpi_float: { type: "pointer" },
  ompi_mpi_byte: { type: "pointer" },
  ompi_mpi_int: { type: "pointer" },
  ompi_mpi_op_sum: { type: "pointer" },
  ompi_mpi_errors_return: { type: "pointer" },
} as const;

/** The collectives, each bound twice: `X` nonblocking (a worker thread) and `X_sync`. */
function collectives(h: "i32" | "pointer") {
  const defs = {
    MPI_Allreduce: { parameters: ["pointer", "pointer", "i32", h, h, h], result: "i32" },
    MPI_Bcast: { parameters: ["pointer", "i32", h, "i32", h], result: "i32" },
    MPI_Gather: {
      parameters: ["pointer", "i32", h, "pointer", "i32", h, "i32", h],
      result: "i32",
    },
    MPI_Gatherv: {
      parameters: ["pointer", "i32", h, "pointer", "buffer", "buffer", h, "i32", h],
      result: "i32",
    },
    MPI_Barrier: { parameters: [h], result: "i32" },
    MPI_Finalize: { parameters: [], result: "i32" },
    MPI_Abort: { parameters: [h, "i32"], result: "i32" },
  } as const;
  const out: Record<string, Deno.ForeignFunction> = {};
  for (const [name, def] of Object.entries(defs)) {
    out[name] = { ...def, parameters: [...def.parameters], nonblocking: true };
    out[`${name}_sync`] = { ...def, parameters: [...def.parameters], name };
  }
  return out;
}

/** The FFI symbol table for an ABI. */
export function mpiSymbols(abi: MpiAbi): Deno.ForeignLibraryInterface {
  const h = abi === "mpich" ? "i32" : "pointer";
  return {
    MPI_Get_library_version: { parameters: ["buffer", "buffer"], result: "i32" },
    MPI_Initialized: { parameters: ["buffer"], result: "i32" },
    MPI_Finalized: { parameters: ["buffer"], result: "i32" },
    MPI_Init_thread: { parameters: ["pointer", "pointer", "i32", "buffer"], result: "i32" },
    MPI_Comm_rank: { parameters: [h, "buffer"], result: "i32" },
    MPI_Comm_size: { parameters: [h, "buffer"], result: "i32" },
    MPI_Comm_set_errhandler: { parameters: [h, h], result: "i32" },
    MPI_Error_string: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    ...collectives(h),
    ...(abi === "openmpi" ? OPENMPI_STATICS : {}),
  };
}

type Fn<P extends unknown[]> = (...args: P) => number;
type Async<P extends unknown[]> = (...args: P) => Promise<number>;
type Ptr = Deno.PointerValue;
type Buf = BufferSource | null;

/** The bound functions, typed by hand (the table is built at run time). */
export interface MpiFunctions {
  MPI_Get_library_version: Fn<[Buf, Buf]>;
  MPI_Initialized: Fn<[Buf]>;
  MPI_Finalized: Fn<[Buf]>;
  MPI_Init_thread: Fn<[Ptr, Ptr, number, Buf]>;
  MPI_Comm_rank: Fn<[Handle, Buf]>;
  MPI_Comm_size: Fn<[Handle, Buf]>;
  MPI_Comm_set_errhandler: Fn<[Handle, Handle]>;
  MPI_Error_string: Fn<[number, Buf, Buf]>;
  MPI_Allreduce: Async<[Ptr, Ptr, number, Handle, Handle, Handle]>;
  MPI_Allreduce_sync: Fn<[Ptr, Ptr, number, Handle, Handle, Handle]>;
  MPI_Bcast: Async<[Ptr, number, Handle, number, Handle]>;
  MPI_Bcast_sync: Fn<[Ptr, number, Handle, number, Handle]>;
  MPI_Gather: Async<[Ptr, number, Handle, Ptr, number, Handle, number, Handle]>;
  MPI_Gather_sync: Fn<[Ptr, number, Handle, Ptr, number, Handle, number, Handle]>;
  MPI_Gatherv: Async<[Ptr, number, Handle, Ptr, Buf, Buf, Handle, number, Handle]>;
  MPI_Gatherv_sync: Fn<[Ptr, number, Handle, Ptr, Buf, Buf, Handle, number, Handle]>;
  MPI_Barrier: Async<[Handle]>;
  MPI_Barrier_sync: Fn<[Handle]>;
  MPI_Finalize: Async<[]>;
  MPI_Finalize_sync: Fn<[]>;
  MPI_Abort: Async<[Handle, number]>;
  MPI_Abort_sync: Fn<[Handle, number]>;
}

/** The handles of an opened library. */
export function handlesOf(abi: MpiAbi, symbols: Record<string, unknown>): Handles {
  const inPlace = Deno.UnsafePointer.create(IN_PLACE_VALUE[abi])!;
  if (abi === "mpich") return { ...MPICH_HANDLES, inPlace };
  const p = (name: keyof typeof OPENMPI_STATICS) => symbols[name] as Deno.PointerObject;
  return {
    commWorld: p("ompi_mpi_comm_world"),
    float: p("ompi_mpi_float"),
    byte: p("ompi_mpi_byte"),
    int: p("ompi_mpi_int"),
    sum: p("ompi_mpi_op_sum"),
    errorsReturn: p("ompi_mpi_errors_return"),
    inPlace,
  };
}
