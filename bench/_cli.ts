/**
 * The flag handling of the bench scripts: parse, a bad flag is a one-line error plus the
 * usage (exit 2), `--help` prints the usage (exit 0).
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

/**
 * The values of `options` parsed from Deno.args (strict); on a bad flag prints
 * "`name`: message" and `help` to stderr and exits 2; with `--help` (which `options` must
 * declare) prints `help` and exits 0.
 */
export function benchArgs<T extends NonNullable<ParseArgsConfig["options"]>>(
  name: string,
  help: string,
  options: T,
): ReturnType<typeof parseArgs<{ options: T }>>["values"] {
  let values: ReturnType<typeof parseArgs<{ options: T }>>["values"];
  try {
    values = parseArgs({ options }).values;
  } catch (e) {
    console.error(`${name}: ${(e as Error).message}\n\n${help}`);
    Deno.exit(2);
  }
  if ((values as { help?: unknown }).help) {
    console.log(help);
    Deno.exit(0);
  }
  return values;
}
