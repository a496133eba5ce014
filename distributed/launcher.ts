/**
 * Launcher detection: is this process one rank of a job started by `mpiexec`, `mpirun` or
 * Slurm's `srun`? Decided from environment variables alone, so that a plain single-process run
 * never touches an MPI library.
 * @module
 */

/** What the launcher told this process through its environment. */
export interface LaunchInfo {
  /** Which variables gave it away: "PMI" (MPICH hydra, Intel MPI, srun --mpi=pmi2), "Open MPI", "PMIx", "Slurm". */
  launcher: "PMI" | "Open MPI" | "PMIx" | "Slurm";
  /** This process's rank, as the launcher numbered it. */
  rank: number;
  /** Number of ranks, or null where the variables do not say (PMIx alone). */
  size: number | null;
}

/** An environment: `Deno.env.toObject()` or a test's fake one. */
export type Env = Record<string, string | undefined>;

function int(v: string | undefined): number | null {
  if (v === undefined || !/^\s*\d+\s*$/.test(v)) return null;
  return Number(v);
}

/**
 * The launcher this process runs under, or null for a plain run (including `mpiexec -n 1` and a
 * Slurm batch script outside `srun`, which are single-process runs too).
 *
 * Checked in order: `PMI_RANK`/`PMI_SIZE` (hydra), `OMPI_COMM_WORLD_RANK`/`_SIZE` (Open MPI),
 * `PMIX_RANK` (+ a size from Slurm if any), then `SLURM_PROCID` with `SLURM_STEP_NUM_TASKS`
 * (set by `srun` only; a batch script also has `SLURM_PROCID=0` and `SLURM_NTASKS`, so those
 * alone do not count).
 */
export function detectLauncher(env: Env): LaunchInfo | null {
  const single = (info: LaunchInfo) => (info.size !== null && info.size <= 1 ? null : info);
  const pmiRank = int(env.PMI_RANK), pmiSize = int(env.PMI_SIZE);
  if (pmiRank !== null && pmiSize !== null) {
    return single({ launcher: "PMI", rank: pmiRank, size: pmiSize });
  }
  const ompiRank = int(env.OMPI_COMM_WORLD_RANK), ompiSize = int(env.OMPI_COMM_WORLD_SIZE);
  if (ompiRank !== null && ompiSize !== null) {
    return single({ launcher: "Open MPI", rank: ompiRank, size: ompiSize });
  }
  const slurmSize = env.SLURM_STEP_ID !== undefined || env.SLURM_STEPID !== undefined
    ? int(env.SLURM_STEP_NUM_TASKS) ?? int(env.SLURM_NTASKS)
    : int(env.SLURM_STEP_NUM_TASKS);
  const pmixRank = int(env.PMIX_RANK);
  if (pmixRank !== null) {
    return single({ launcher: "PMIx", rank: pmixRank, size: int(env.PMIX_SIZE) ?? slurmSize });
  }
  const slurmRank = int(env.SLURM_PROCID);
  if (slurmRank !== null && slurmSize !== null) {
    return single({ launcher: "Slurm", rank: slurmRank, size: slurmSize });
  }
  return null;
}
