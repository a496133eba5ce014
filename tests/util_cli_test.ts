/** util/cli.ts: which failures are user errors, with which exit status, printed how. */
import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { cliErrorStatus, firstLine, isParseArgsError, UsageError } from "../util/cli.ts";

class RunError extends Error {}
class MissingFile extends Error {}

Deno.test("cli: usage errors exit 2, listed user errors 1, anything else is not a user error", () => {
  let parseError: unknown;
  try {
    parseArgs({ args: ["--bogus"], options: {} });
  } catch (e) {
    parseError = e;
  }
  assert.ok(isParseArgsError(parseError));
  assert.equal(cliErrorStatus(parseError), 2);
  assert.equal(cliErrorStatus(new UsageError("--x")), 2);
  const opts = { usageErrors: [RunError], userErrors: [MissingFile] };
  assert.equal(cliErrorStatus(new RunError("run exists"), opts), 2);
  assert.equal(cliErrorStatus(new MissingFile("nope"), opts), 1);
  assert.equal(cliErrorStatus(new MissingFile("nope")), null);
  assert.equal(cliErrorStatus(new TypeError("bug"), opts), null);
  assert.equal(isParseArgsError(new TypeError("bug")), false);
});

Deno.test("cli: only the first line of a message is printed", () => {
  assert.equal(firstLine(new Error("one\n  at two")), "one");
  assert.equal(firstLine("plain"), "plain");
});
