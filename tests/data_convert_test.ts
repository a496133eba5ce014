import { assert, assertEquals, assertRejects } from "./data_assert.ts";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { convertGame, type ConvertOptions } from "../offline/converter.ts";
import { openStore } from "../offline/store.ts";
import { DataError } from "../offline/fs_util.ts";
import { PYTHON, withTempDir } from "./data_util.ts";

const FIXTURE = fileURLToPath(new URL("./data_replay_fixture.py", import.meta.url));
const PONG = [0, 1, 3, 4, 11, 12];

interface Expected {
  run: string;
  ckpt: number;
  length: number;
  truncated: boolean;
  actions: number[];
  rewards: number[];
  terminals: number[];
  crc: number;
}

/** Write the numpy fixture (a DQN-Replay game dir) and return the episodes numpy expects. */
async function fixture(root: string, variant = "ok"): Promise<Expected[]> {
  const exp = path.join(root, `expected_${variant}.json`);
  const out = await new Deno.Command(PYTHON, {
    args: [FIXTURE, path.join(root, variant), variant, exp],
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return JSON.parse(fs.readFileSync(exp, "utf8"));
}

function opts(root: string, variant: string, extra: Partial<ConvertOptions> = {}): ConvertOptions {
  return {
    src: path.join(root, variant, "Pong"),
    out: path.join(root, `out_${variant}`, "Pong"),
    game: "Pong",
    minimalActions: PONG,
    runs: ["1", "2", "3"],
    fraction: 1,
    ...extra,
  };
}

function key(crc: number, len: number): string {
  return `${crc}:${len}`;
}

Deno.test("data convert: recovers exactly the episodes numpy wrote, with Dopamine's quirks", async () => {
  await withTempDir(async (root) => {
    const exp = await fixture(root);
    // The fixture covers the quirks: wrapped buffers, file-edge cuts, a missing checkpoint.
    assert(exp.some((e) => e.truncated) && exp.some((e) => !e.truncated));
    const r = await convertGame({ ...opts(root, "ok"), chunkBytes: 20 * 7056 });
    assertEquals([r.episodes, r.skipped, r.resumed], [exp.length, false, false]);
    const s = openStore(opts(root, "ok").out, { verify: true });
    assertEquals(s.numRows, exp.reduce((a, e) => a + e.length, 0));
    assert(s.manifest.chunks.length > 1);
    const want = new Map(exp.map((e) => [key(e.crc, e.length), e]));
    assertEquals(want.size, exp.length);
    for (let e = 0; e < s.numEpisodes; e++) {
      const ep = s.readEpisode(e);
      const x = want.get(key(zlib.crc32(ep.obs as Uint8Array), ep.actions.length));
      assert(x, `episode ${e} is not one numpy wrote`);
      want.delete(key(x.crc, x.length));
      assertEquals([...ep.actions], x.actions);
      assertEquals([...ep.rewards], x.rewards);
      assertEquals([...ep.terminals], x.terminals);
      assertEquals(ep.truncated, x.truncated);
    }
    assertEquals(want.size, 0);
    const src = s.manifest.source as Record<string, unknown>;
    assertEquals(src.missingCheckpoints, { "1": [], "2": [], "3": [2] });
    assertEquals(s.manifest.minimalActions, PONG);
    assertEquals(s.manifest.truncatedEpisodes, exp.filter((e) => e.truncated).length);
    s.close();
    // A complete store is left alone unless overwrite is asked for.
    assertEquals((await convertGame(opts(root, "ok"))).skipped, true);
  });
});

Deno.test("data convert: seeded subsampling of runs and whole episodes is reproducible", async () => {
  await withTempDir(async (root) => {
    const exp = await fixture(root);
    const total = (runs: string[]) =>
      exp.filter((e) => runs.includes(e.run)).reduce((a, e) => a + e.length, 0);
    const run = async (seed: number, out: string) => {
      await convertGame({
        ...opts(root, "ok"),
        out: path.join(root, out, "Pong"),
        runs: undefined,
        numRuns: 2,
        fraction: 0.3,
        seed,
      });
      return openStore(path.join(root, out, "Pong"));
    };
    const a = await run(5, "a"), b = await run(5, "b"), c = await run(6, "c");
    interface Src {
      selection: number[][];
      runs: string[];
      subsample: {
        totalTransitions: number;
        targetTransitions: number;
        selectedTransitions: number;
      };
    }
    const src = (s: typeof a) => s.manifest.source as unknown as Src;
    assertEquals(src(a).selection, src(b).selection);
    assertEquals(src(a).runs, src(b).runs);
    assertEquals(src(a).runs.length, 2);
    assert(JSON.stringify(src(a).selection) !== JSON.stringify(src(c).selection));
    for (const s of [a, c]) {
      const sub = src(s).subsample;
      assertEquals(sub.totalTransitions, total(src(s).runs));
      assertEquals(sub.targetTransitions, Math.ceil(0.3 * sub.totalTransitions));
      assert(s.numRows >= sub.targetTransitions && s.numRows < sub.targetTransitions + 14);
      assertEquals(sub.selectedTransitions, s.numRows);
      // Whole episodes only: every stored episode is one numpy wrote, none twice.
      const known = new Set(exp.map((e) => key(e.crc, e.length)));
      for (let e = 0; e < s.numEpisodes; e++) {
        const ep = s.readEpisode(e);
        assert(known.delete(key(zlib.crc32(ep.obs as Uint8Array), ep.actions.length)));
      }
      s.close();
    }
    b.close();
    // An absolute number of transitions instead of a fraction (the fine-tuning sets).
    await convertGame({
      ...opts(root, "ok"),
      out: path.join(root, "t", "Pong"),
      transitions: 40,
      ckptRange: [1, 2],
    });
    const t = openStore(path.join(root, "t", "Pong"));
    assert(t.numRows >= 40 && t.numRows < 40 + 14, String(t.numRows));
    const ts = t.manifest.source as unknown as {
      subsample: { transitions: number };
      checkpoints: unknown;
    };
    assertEquals(ts.subsample.transitions, 40);
    assertEquals(ts.checkpoints, { "1": [1, 2], "2": [1, 2], "3": [1] });
    t.close();
  });
});

Deno.test("data convert: an interrupted conversion resumes to the identical store", async () => {
  await withTempDir(async (root) => {
    await fixture(root);
    await convertGame({ ...opts(root, "ok"), out: path.join(root, "ref", "Pong") });
    let calls = 0;
    await assertRejects(
      () =>
        convertGame({
          ...opts(root, "ok"),
          onProgress: () => {
            if (++calls === 4) throw new Error("simulated interrupt");
          },
        }),
      Error,
      "simulated interrupt",
    );
    const out = opts(root, "ok").out;
    assert(fs.existsSync(path.join(out, "journal.json")));
    assert(!fs.existsSync(path.join(out, "manifest.json")));
    const r = await convertGame(opts(root, "ok"));
    assertEquals(r.resumed, true);
    const a = openStore(out, { verify: true }), b = openStore(path.join(root, "ref", "Pong"));
    assertEquals(a.manifest.files, b.manifest.files);
    assertEquals(a.manifest.chunks, b.manifest.chunks);
    a.close();
    b.close();
    // Different options cannot silently resume someone else's journal.
    calls = 0;
    await assertRejects(
      () =>
        convertGame({
          ...opts(root, "ok"),
          onProgress: () => {
            if (++calls === 4) throw new Error("stop");
          },
          overwrite: true,
        }),
      Error,
      "stop",
    );
    // The interrupted overwrite sits beside the complete store, which is still there.
    assertEquals((await convertGame(opts(root, "ok"))).skipped, true);
    await assertRejects(
      () => convertGame({ ...opts(root, "ok"), fraction: 0.5, overwrite: true }),
      DataError,
      "--restart",
    );
    const again = await convertGame({ ...opts(root, "ok"), restart: true, overwrite: true });
    assertEquals(again.resumed, false);
  });
});

/** Conversion must fail naming `file` and leave no store files behind. */
async function expectBad(o: ConvertOptions, file: string, msg: string): Promise<void> {
  const e = await assertRejects(() => convertGame(o), DataError, msg);
  assert(e.message.startsWith(file), `"${e.message}" should start with ${file}`);
  assert(!fs.existsSync(o.out), `${o.out} should not exist after a failed conversion`);
}

Deno.test("data convert: bad input gives one clear error naming the file, writes nothing", async () => {
  await withTempDir(async (root) => {
    for (const v of ["ok", "dtype", "shape", "fortran", "mixed"]) await fixture(root, v);
    const f = (v: string, name: string) => path.join(root, v, "Pong", "1", "replay_logs", name);
    await expectBad(opts(root, "dtype"), f("dtype", "$store$_action_ckpt.1.gz"), "expected int32");
    await expectBad(
      opts(root, "shape"),
      f("shape", "$store$_observation_ckpt.1.gz"),
      "expected uint8 (N, 84, 84)",
    );
    await expectBad(
      opts(root, "fortran"),
      f("fortran", "$store$_observation_ckpt.1.gz"),
      "Fortran",
    );
    await expectBad(
      opts(root, "mixed"),
      f("mixed", "$store$_action_ckpt.1.gz"),
      "another game",
    );
    // Truncated gzip (caught before writing by the gzip trailer).
    const obs = f("ok", "$store$_observation_ckpt.2.gz");
    const good = fs.readFileSync(obs);
    fs.writeFileSync(obs, good.subarray(0, good.byteLength >> 1));
    await expectBad(opts(root, "ok"), obs, "truncated");
    // Corrupt data inside the stream (trailer intact): found while streaming, store removed.
    const bad = new Uint8Array(good);
    for (let i = 2000; i < 2400; i++) bad[i] ^= 0x5a;
    fs.writeFileSync(obs, bad);
    await expectBad(opts(root, "ok"), obs, "gzip");
    // Bad gzip CRC: only seen at the end of the stream, after earlier checkpoints were
    // committed to the store; the partial store must still be removed.
    const badCrc = new Uint8Array(good);
    badCrc[badCrc.byteLength - 8] ^= 0xff;
    fs.writeFileSync(obs, badCrc);
    await expectBad(opts(root, "ok"), obs, "gzip");
    fs.writeFileSync(obs, good);
    // Missing file of a present checkpoint.
    const rew = f("ok", "$store$_reward_ckpt.0.gz");
    fs.renameSync(rew, rew + ".bak");
    await expectBad(opts(root, "ok"), rew, "missing");
    fs.renameSync(rew + ".bak", rew);
    await expectBad(
      { ...opts(root, "ok"), src: path.join(root, "nope") },
      path.join(root, "nope"),
      "does not exist",
    );
  });
});

Deno.test("data convert: CLI --help, and one-line errors without stack traces", async () => {
  await withTempDir(async (root) => {
    const cli = fileURLToPath(new URL("../offline/convert.ts", import.meta.url));
    const run = (args: string[]) =>
      new Deno.Command(Deno.execPath(), { args: ["run", "-A", cli, ...args] }).output();
    const help = await run(["--help"]);
    assertEquals(help.code, 0);
    assert(new TextDecoder().decode(help.stdout).includes("--fraction"));
    await fixture(root, "mixed");
    const bad = await run([
      "--src",
      path.join(root, "mixed"),
      "--out",
      path.join(root, "o"),
      "--run-ids",
      "1",
      "--quiet",
    ]);
    const err = new TextDecoder().decode(bad.stderr).trim();
    assertEquals(bad.code, 1);
    assertEquals(err.split("\n").length, 1, err);
    assert(err.includes("$store$_action_ckpt.1.gz") && !err.includes("    at "), err);
    const ok = await run([
      "--src",
      path.join(root, "mixed"),
      "--out",
      path.join(root, "o"),
      "--run-ids",
      "2",
      "--fraction",
      "1",
    ]);
    assertEquals(ok.code, 0, new TextDecoder().decode(ok.stderr));
    assertEquals(openStore(path.join(root, "o", "Pong")).manifest.source.runs, ["2"]);
  });
});
