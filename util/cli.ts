/**
 * What every command-line entry point shares: {@linkcode UsageError} for a bad command line,
 * and {@linkcode runCli}, which runs a `main` and turns the errors a user can fix into one
 * line on stderr and an exit status (2: bad usage, 1: other user errors), never a stack trace.
 *
 * ```ts
 * import { runCli, UsageError } from "../util/cli.ts";
 * async function main(): Promise<number> {
 *   if (Deno.args.length === 0) throw new UsageError("--out is required");
 *   return 0;
 * }
 * if (import.meta.main) await runCli(main, { prefix: "convert: " });
 * ```
 * @module
 */

/** A bad command line (flag, value or a path the user named): one line, exit status 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Any error class (abstract classes included). */
// deno-lint-ignore no-explicit-any
export type ErrorClass = abstract new (...args: any[]) => Error;

/** How {@linkcode runCli} reports errors. */
export interface CliErrorOptions {
  /** Put before the message: a tool name such as "convert: " (default "error: "). */
  prefix?: string;
  /** More classes that mean bad usage (exit status 2), besides UsageError and parseArgs's. */
  usageErrors?: readonly ErrorClass[];
  /** Classes of other errors the user can fix (missing file, bad checkpoint): exit status 1. */
  userErrors?: readonly ErrorClass[];
  /** A second line after usage errors, e.g. "run with --help for the options". */
  usageHint?: string;
  /**
   * Report every other error as one line too (exit status 1; the stack only when JOWA_DEBUG
   * is set). Without it, unknown errors are rethrown with their stack, as bugs.
   */
  catchAll?: boolean;
}

/** Whether `e` is a `node:util` parseArgs error (unknown option, missing value, ...). */
export function isParseArgsError(e: unknown): boolean {
  return e instanceof Error &&
    (e as { code?: unknown }).code?.toString().startsWith("ERR_PARSE_ARGS") === true;
}

/**
 * The exit status for a failure, or null when it is not a user error: 2 for bad usage
 * (UsageError, parseArgs errors, `usageErrors`), 1 for `userErrors`.
 */
export function cliErrorStatus(e: unknown, opts: CliErrorOptions = {}): 1 | 2 | null {
  if (e instanceof UsageError || isParseArgsError(e)) return 2;
  if (opts.usageErrors?.some((c) => e instanceof c)) return 2;
  if (opts.userErrors?.some((c) => e instanceof c)) return 1;
  return null;
}

/** The first line of an error's message (the whole value when it is not an Error). */
export function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split("\n")[0];
}

/**
 * Reports a failed CLI run and exits: user errors (see {@linkcode cliErrorStatus}) print one
 * line `<prefix><message>`; other errors too with `catchAll`, else they are rethrown.
 */
export function exitOnError(e: unknown, opts: CliErrorOptions = {}): never {
  const status = cliErrorStatus(e, opts);
  if (status === null && !opts.catchAll) throw e;
  console.error(`${opts.prefix ?? "error: "}${firstLine(e)}`);
  if (status === 2 && opts.usageHint) console.error(opts.usageHint);
  if (status === null && Deno.env.get("JOWA_DEBUG") && e instanceof Error) console.error(e.stack);
  Deno.exit(status ?? 1);
}

/** Runs a CLI's `main` and exits with the status it returns, or as {@linkcode exitOnError}. */
export async function runCli(
  main: () => number | Promise<number>,
  opts: CliErrorOptions = {},
): Promise<never> {
  let status: number;
  try {
    status = await main();
  } catch (e) {
    exitOnError(e, opts);
  }
  Deno.exit(status);
}
