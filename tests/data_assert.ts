/**
 * Minimal assertion helpers for the data tests (JSR's @std/assert is not reachable here).
 * @module
 */
import { deepStrictEqual, ok } from "node:assert/strict";

/** Assert a truthy condition. */
export function assert(cond: unknown, msg?: string): asserts cond {
  ok(cond, msg);
}

/** Deep equality (typed arrays compared element-wise, with their type). */
export function assertEquals<T>(actual: unknown, expected: T, msg?: string): void {
  deepStrictEqual(actual, expected, msg);
}

// deno-lint-ignore no-explicit-any
type ErrorClass = new (...args: any[]) => Error;

function checkError(e: unknown, cls: ErrorClass, includes?: string): void {
  if (!(e instanceof cls)) {
    throw new Error(`expected ${cls.name}, got ${e instanceof Error ? e.stack : String(e)}`);
  }
  if (includes && !e.message.includes(includes)) {
    throw new Error(`error message "${e.message}" does not include "${includes}"`);
  }
}

/** Assert that `fn` throws an instance of `cls` whose message includes `includes`. */
export function assertThrows(fn: () => unknown, cls: ErrorClass, includes?: string): Error {
  try {
    fn();
  } catch (e) {
    checkError(e, cls, includes);
    return e as Error;
  }
  throw new Error("expected an exception");
}

/** Assert that the promise from `fn` rejects with `cls` whose message includes `includes`. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  cls: ErrorClass,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    checkError(e, cls, includes);
    return e as Error;
  }
  throw new Error("expected a rejection");
}
