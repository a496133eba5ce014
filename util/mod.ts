/**
 * Small helpers with no project dependencies, usable from every folder:
 *
 * - `rng.ts`: every seeded generator and seed hash (see its module doc for which serves what).
 * - `cli.ts`: `UsageError` and `runCli`, the one-line error handling of the CLI entry points.
 * - `progress.ts`: the progress bar of long-running commands.
 * - `interrupt.ts`: Ctrl-C handling that tells a repeated signal from a second Ctrl-C.
 * - `writable.ts`: checks that an output directory can be written before work starts.
 * @module
 */
export * from "./rng.ts";
export * from "./cli.ts";
export * from "./progress.ts";
export * from "./interrupt.ts";
export * from "./writable.ts";
