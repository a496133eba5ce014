/**
 * What the collection tests (tests/envs_collect_test.ts, tests/reliability_collect_test.ts)
 * share: a temporary output directory, running the `collect` CLI, and interrupting a running
 * collection the way Ctrl-C does, then checking the store it leaves.
 *
 * @module
 */
import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import { join } from "node:path";
import { openStore } from "../../offline/store.ts";

/** offline/collect.ts, the CLI of `deno task collect`. */
export const COLLECT: string = new URL("../../offline/collect.ts", import.meta.url).pathname;

/** Run `fn` on a fresh temporary directory (`prefix`), removed afterwards. */
export async function withTempDir(
  prefix: string,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** `deno run -A offline/collect.ts ...args`: exit code, stdout, stderr (trimmed). */
export async function collectCli(
  args: string[],
): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", COLLECT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr).trim() };
}

/**
 * `child` collects Pong into `dir` for 1,000,000 steps (stdout and stderr piped): once its
 * progress bar shows collected steps, `interrupt` it (as Ctrl-C would); then it must exit
 * with status 130 saying "interrupted" and leave a complete, valid Pong store that holds
 * some but not all of the steps.
 */
export async function interruptCollect(
  child: Deno.ChildProcess,
  dir: string,
  interrupt: () => void,
): Promise<void> {
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let err = "";
  while (!/ [1-9]\d*\/1000000 /.test(err)) {
    const { value, done } = await reader.read();
    if (done) break;
    err += value;
  }
  interrupt();
  const rest = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      err += value;
    }
  })();
  const status = await child.status;
  await rest;
  const out = new TextDecoder().decode(await new Response(child.stdout).arrayBuffer());
  assertEquals(status.code, 130, err);
  match(out, /interrupted/);
  const store = openStore(join(dir, "Pong"), { verify: true }); // manifest present, valid
  assert(store.numRows > 0 && store.numRows < 1_000_000);
  store.close();
}
