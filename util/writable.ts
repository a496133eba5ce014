/**
 * Output-directory checks done before a long job starts, so an unwritable `--out` fails in
 * one line at once instead of with a stack trace after the work (and its results) are lost.
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";

/** An output location that cannot be written; CLIs print its message alone. */
export class OutputDirError extends Error {
  /** `message` names the flag or directory and the reason. */
  constructor(message: string) {
    super(message);
    this.name = "OutputDirError";
  }
}

/** A short human reason for a file-system error (code first, e.g. "EROFS: read-only ..."). */
export function fsReason(e: unknown): string {
  const code = (e as { code?: string }).code;
  const known: Record<string, string> = {
    EROFS: "read-only file system",
    ENOTDIR: "a parent in the path is a file, not a directory",
    EEXIST: "a file of that name is in the way",
    EACCES: "permission denied",
    EPERM: "operation not permitted",
    ENOSPC: "no space left on the device",
    ENOENT: "no such file or directory",
  };
  if (code && known[code]) return `${code}: ${known[code]}`;
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split("\n")[0];
}

/**
 * Make sure `dir` is (or can be made) a directory we can write into: create it, write and
 * remove a probe file. `what` names it in the error (e.g. "--out data/x").
 * @throws OutputDirError naming `what` and the reason.
 */
export function ensureWritableDir(dir: string, what = dir): void {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dir);
  } catch {
    // not there yet: created below
  }
  if (st && !st.isDirectory()) {
    throw new OutputDirError(`${what}: is an existing file, not a directory`);
  }
  const probe = path.join(dir, `.write_probe_${Deno.pid}_${Date.now()}`);
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(probe, "probe");
  } catch (e) {
    throw new OutputDirError(`${what}: cannot write there (${fsReason(e)})`);
  } finally {
    try {
      fs.rmSync(probe, { force: true });
    } catch {
      // the probe was never written
    }
  }
}
