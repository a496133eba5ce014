/**
 * `deno task convert` reliability: an unwritable --out fails in one line before any input is
 * read, an --overwrite that fails (bad input found only while streaming, or an interrupt)
 * leaves the old complete store exactly as it was, and mixed-in checkpoints are caught as the
 * help text says.
 */
import { assert, assertEquals, assertRejects } from "./data_assert.ts";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { convertGame, type ConvertOptions } from "../offline/converter.ts";
import { openStore } from "../offline/store.ts";
import { DataError } from "../offline/fs_util.ts";
import { openStoreWriter } from "../offline/writer.ts";
import { OutputDirError } from "../util/writable.ts";
import { PYTHON, withTempDir } from "./data_util.ts";

const FIXTURE = fileURLToPath(new URL("./data_replay_fixture.py", import.meta.url));
const CLI = fileURLToPath(new URL("../offline/convert.ts", import.meta.url));
const PONG = [0, 1, 3, 4, 11, 12];

/** Write the numpy DQN-Replay fixture (tests/data_replay_fixture.py) under root/variant. */
async function fixture(root: string, variant = "ok"): Promise<string> {
  const out = await new Deno.Command(PYTHON, {
    args: [FIXTURE, path.join(root, variant), variant, path.join(root, `${variant}.json`)],
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return path.join(root, variant, "Pong");
}

function opts(src: string, out: string, extra: Partial<ConvertOptions> = {}): ConvertOptions {
  return {
    src,
    out,
    game: "Pong",
    minimalActions: PONG,
    runs: ["1", "2", "3"],
    fraction: 1,
    ...extra,
  };
}

async function cli(args: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr).trim() };
}

/** Every file of a store directory with its bytes (to prove a store is untouched). */
function snapshot(dir: string): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>();
  for (const f of fs.readdirSync(dir, { recursive: true }) as string[]) {
    const p = path.join(dir, f);
    if (fs.statSync(p).isFile()) m.set(f, fs.readFileSync(p));
  }
  return m;
}

function assertSameStore(dir: string, before: Map<string, Uint8Array>): void {
  const now = snapshot(dir);
  assertEquals([...now.keys()].sort(), [...before.keys()].sort());
  for (const [f, b] of before) assertEquals(now.get(f), b, `${f} changed`);
  openStore(dir, { verify: true }).close();
}

/** The corrupted observation file: gzip CRC bad, found only at the end of pass 2's stream. */
function corruptLate(src: string): string {
  const obs = path.join(src, "1", "replay_logs", "$store$_observation_ckpt.2.gz");
  const bad = fs.readFileSync(obs);
  bad[bad.byteLength - 8] ^= 0xff;
  fs.writeFileSync(obs, bad);
  return obs;
}

Deno.test("reliability convert: unwritable --out fails in one line before reading input", async () => {
  await withTempDir(async (root) => {
    const src = await fixture(root);
    const file = path.join(root, "a_file");
    fs.writeFileSync(file, "keep me");
    const cases: [string, RegExp][] = [
      [path.join(file, "stores"), /ENOTDIR/], // under a regular file: unwritable even for root
      [file, /is an existing file, not a directory/],
      ["/sys/jowa_no_such_dir", /cannot write there/], // sysfs: mkdir refused even for root
    ];
    for (const [out, why] of cases) {
      const r = await cli(["--src", src, "--out", out, "--quiet"]);
      assertEquals(r.code, 1, r.err);
      assertEquals(r.err.split("\n").length, 1, r.err);
      assert(r.err.startsWith(`convert: --out ${out}: `), r.err);
      assert(why.test(r.err) && !r.err.includes("    at "), r.err);
    }
    assertEquals(fs.readFileSync(file, "utf8"), "keep me");
    // The library checks too, before its validation pass.
    let indexed = 0;
    await assertRejects(
      () =>
        convertGame({
          ...opts(src, path.join(file, "x", "Pong")),
          onIndex: (d) => void (indexed = d),
        }),
      OutputDirError,
      "ENOTDIR",
    );
    assertEquals(indexed, 0);
    await assertRejects(
      () => convertGame(opts(src, file)),
      DataError,
      "is a file, not a store directory",
    );
  });
});

Deno.test("reliability convert: --overwrite with bad input found in pass 2 keeps the old store", async () => {
  await withTempDir(async (root) => {
    const src = await fixture(root);
    const outRoot = path.join(root, "stores"), out = path.join(outRoot, "Pong");
    await convertGame(opts(src, out));
    const before = snapshot(out);
    const obs = corruptLate(src);
    // Library: the error names the file; the old store is byte for byte what it was.
    const e = await assertRejects(
      () => convertGame({ ...opts(src, out), overwrite: true }),
      DataError,
      "gzip",
    );
    assert(e.message.startsWith(obs), e.message);
    assertSameStore(out, before);
    assertEquals(fs.readdirSync(outRoot), ["Pong"]); // no half-built store left beside it
    // CLI: exit 1, one line naming the file, old store intact.
    const r = await cli(["--src", src, "--out", outRoot, "--run-ids", "1,2,3", "--overwrite"]);
    assertEquals(r.code, 1, r.err);
    const last = r.err.split("\n").at(-1)!;
    assert(last.startsWith(`convert: ${obs}`) && !r.err.includes("    at "), r.err);
    assertSameStore(out, before);
    assertEquals(fs.readdirSync(outRoot), ["Pong"]);
  });
});

Deno.test("reliability convert: an interrupted --overwrite keeps the old store, then resumes and swaps", async () => {
  await withTempDir(async (root) => {
    const src = await fixture(root);
    const out = path.join(root, "stores", "Pong");
    await convertGame({ ...opts(src, out), ckptRange: [0, 0] });
    const before = snapshot(out);
    let calls = 0;
    await assertRejects(
      () =>
        convertGame({
          ...opts(src, out),
          overwrite: true,
          onProgress: () => {
            if (++calls === 4) throw new Error("simulated Ctrl-C");
          },
        }),
      Error,
      "simulated Ctrl-C",
    );
    assertSameStore(out, before);
    // Rerunning the overwrite resumes the new store and swaps it in only when complete.
    const r = await convertGame({ ...opts(src, out), overwrite: true });
    assertEquals(r.resumed, true);
    const ref = path.join(root, "ref", "Pong");
    await convertGame(opts(src, ref));
    const a = openStore(out, { verify: true }), b = openStore(ref);
    assertEquals(a.manifest.files, b.manifest.files);
    assert(a.numRows > 0 && a.manifest.files !== undefined);
    a.close();
    b.close();
    assertEquals(fs.readdirSync(path.dirname(out)), ["Pong"]);
  });
});

Deno.test("reliability convert: a swap cut between its renames is finished or undone", async () => {
  await withTempDir(async (root) => {
    const src = await fixture(root);
    const parent = path.join(root, "stores"), out = path.join(parent, "Pong");
    await convertGame({ ...opts(src, out), ckptRange: [0, 0] });
    const before = snapshot(out);
    const W = { game: "Pong", minimalActions: PONG, source: {} };
    const replaced = path.join(parent, ".Pong.replaced"),
      work = path.join(parent, ".Pong.overwrite");
    // Crash after "old store aside", before "new store in", new one unfinished: undone.
    fs.renameSync(out, replaced);
    fs.mkdirSync(work);
    await assertRejects(() => openStoreWriter(out, W), DataError, "already complete");
    assertSameStore(out, before);
    assert(!fs.existsSync(replaced));
    // Same cut, but the new store was complete: the swap is finished.
    const fresh = path.join(root, "fresh", "Pong");
    await convertGame({ ...opts(src, fresh), ckptRange: [1, 2] });
    const after = snapshot(fresh);
    fs.rmSync(work, { recursive: true });
    fs.renameSync(fresh, work);
    fs.renameSync(out, replaced);
    await assertRejects(() => openStoreWriter(out, W), DataError, "already complete");
    assertSameStore(out, after);
    assertEquals(fs.readdirSync(parent), ["Pong"]);
  });
});

Deno.test("reliability convert: mixed-in checkpoints are caught as --help states", async () => {
  await withTempDir(async (root) => {
    const help = await cli(["--help"]);
    assertEquals(help.code, 0);
    assert(help.out.includes("ARE detected") && help.out.includes("NOT detected"), help.out);
    // A checkpoint of another run (consistent files, add_count going back) in run 1.
    const src = await fixture(root);
    const logs = (run: string) => path.join(src, run, "replay_logs");
    for (const name of fs.readdirSync(logs("2")).filter((n) => n.includes("ckpt.0."))) {
      fs.copyFileSync(path.join(logs("2"), name), path.join(logs("1"), name.replace(".0.", ".2.")));
    }
    const out = path.join(root, "stores");
    const r = await cli(["--src", src, "--out", out, "--run-ids", "1", "--quiet"]);
    assertEquals(r.code, 1, r.err);
    assertEquals(r.err.split("\n").length, 1, r.err);
    assert(r.err.includes(path.join(logs("1"), "add_count_ckpt.2.gz")), r.err);
    assert(r.err.includes("is not above"), r.err);
    assert(!fs.existsSync(path.join(out, "Pong")), "nothing written");
  });
});
