import { assert, assertEquals, assertRejects, assertThrows } from "./data_assert.ts";
import * as fs from "node:fs";
import * as path from "node:path";
import { type EpisodeRecord, openStoreWriter, openTokenStoreWriter } from "../offline/writer.ts";
import { openDataset, openStore } from "../offline/store.ts";
import { DataError } from "../offline/fs_util.ts";
import { fixtureBytes, runPython, withTempDir } from "./data_util.ts";

const PONG = [0, 1, 3, 4, 11, 12];

function makeEpisode(T: number, seed: number, truncated: boolean): EpisodeRecord {
  const actions = new Uint8Array(T).map((_, t) => PONG[(t * 7 + seed) % PONG.length]);
  const rewards = new Float32Array(T).map((_, t) => (t % 5 === 0 ? (t % 2 ? -1 : 2.5) : 0));
  const terminals = new Uint8Array(T);
  if (!truncated) terminals[T - 1] = 1;
  return { frames: fixtureBytes(T * 7056, seed + 1), actions, rewards, terminals, truncated };
}

const SOURCE = { kind: "test" };

Deno.test("data writer: round trip through openStore, layout checked with numpy", async () => {
  await withTempDir(async (root) => {
    const dir = path.join(root, "Pong");
    const eps = [makeEpisode(5, 1, false), makeEpisode(9, 2, true), makeEpisode(3, 3, false)];
    // Tiny chunks so several chunk files are produced.
    const w = await openStoreWriter(dir, {
      game: "Pong",
      minimalActions: PONG,
      source: SOURCE,
      chunkBytes: 8 * 7056,
    });
    for (const ep of eps) await w.addEpisode(ep);
    // Not complete before close.
    assertThrows(() => openStore(dir), DataError, "incomplete");
    await w.close();
    const s = openStore(dir, { verify: true });
    assertEquals(s.numEpisodes, 3);
    assertEquals(s.numRows, 17);
    assertEquals(s.taskId, 39);
    assertEquals(s.manifest.chunks.length, 2); // 5+9 rows >= 8, then 3
    eps.forEach((ep, e) => {
      const got = s.readEpisode(e);
      assertEquals(got.obs, ep.frames);
      assertEquals(got.actions, ep.actions);
      assertEquals(got.rewards, ep.rewards);
      assertEquals(got.terminals, ep.terminals);
      assertEquals(got.truncated, ep.truncated);
    });
    s.close();
    assert(!fs.existsSync(path.join(dir, "journal.json")));
    // numpy reads the documented layout and sees the same data.
    const py = `
import numpy as np, json, sys, os
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
obs = np.concatenate([np.fromfile(os.path.join(d, c["file"]), np.uint8).reshape(-1, 84, 84) for c in m["chunks"]])
off = np.fromfile(os.path.join(d, "episode_offsets.i64"), "<i8")
print(json.dumps({"obs_sum": int(obs.astype(np.int64).sum()), "n": int(obs.shape[0]),
  "off": off.tolist(), "act": np.fromfile(os.path.join(d, "actions.u8"), np.uint8).tolist(),
  "rew": np.fromfile(os.path.join(d, "rewards.f32"), "<f4").tolist(),
  "term": np.fromfile(os.path.join(d, "terminals.u8"), np.uint8).tolist(),
  "trunc": np.fromfile(os.path.join(d, "episode_truncated.u8"), np.uint8).tolist()}))`;
    const r = JSON.parse(await runPython(py, [dir]));
    const all = eps.map((e) => e.frames);
    assertEquals(r.obs_sum, all.reduce((s, f) => s + f.reduce((a, b) => a + b, 0), 0));
    assertEquals(r.n, 17);
    assertEquals(r.off, [0, 5, 14, 17]);
    assertEquals(r.act, eps.flatMap((e) => [...e.actions]));
    assertEquals(r.rew, eps.flatMap((e) => [...e.rewards]));
    assertEquals(r.term, eps.flatMap((e) => [...e.terminals]));
    assertEquals(r.trunc, [0, 1, 0]);
  });
});

Deno.test("data writer: rejects bad episodes and a complete store", async () => {
  await withTempDir(async (root) => {
    const dir = path.join(root, "Pong");
    const w = await openStoreWriter(dir, { game: "Pong", minimalActions: PONG, source: SOURCE });
    const bad = makeEpisode(4, 1, false);
    bad.actions[2] = 2; // not in Pong's minimal set
    await assertRejects(() => w.addEpisode(bad), RangeError, "minimal action set");
    const mid = makeEpisode(4, 1, false);
    mid.terminals[1] = 1;
    await assertRejects(() => w.addEpisode(mid), RangeError, "only the last row");
    const short = makeEpisode(4, 1, false);
    short.frames = short.frames.subarray(0, 7056);
    await assertRejects(() => w.addEpisode(short), RangeError, "[T,84,84]");
    const both = makeEpisode(4, 1, true);
    both.terminals[3] = 1;
    await assertRejects(() => w.addEpisode(both), RangeError, "truncated and terminal");
    await w.addEpisode(makeEpisode(4, 1, false));
    await w.close();
    await assertRejects(
      () => openStoreWriter(dir, { game: "Pong", minimalActions: PONG, source: SOURCE }),
      DataError,
      "already complete",
    );
    const w2 = await openStoreWriter(dir, {
      game: "Pong",
      minimalActions: PONG,
      source: SOURCE,
      overwrite: true,
    });
    // The old store stays complete and readable until the new one is.
    assertEquals(openStore(dir).numRows, 4);
    await w2.addEpisode(makeEpisode(2, 5, false));
    await w2.close();
    assertEquals(openStore(dir).numRows, 2);
  });
});

Deno.test("data writer: interrupted writer resumes from its last commit or restarts", async () => {
  await withTempDir(async (root) => {
    const dir = path.join(root, "Pong");
    const opts = { game: "Pong", minimalActions: PONG, source: SOURCE };
    const w = await openStoreWriter(dir, opts);
    await w.addEpisode(makeEpisode(3, 1, false));
    await w.commit({ next: 1 });
    await w.addEpisode(makeEpisode(4, 2, false)); // buffered, lost by the "crash"
    w.abort();
    // Simulate a crash mid-flush: garbage appended after the commit and a stray temp chunk.
    fs.appendFileSync(path.join(dir, "actions.u8"), new Uint8Array([1, 1, 1]));
    fs.writeFileSync(path.join(dir, "obs", "chunk_000001.bin.tmp"), new Uint8Array(10));
    assertThrows(() => openDataset(root), DataError, "incomplete");
    const r = await openStoreWriter(dir, { ...opts, resume: true });
    assertEquals(r.resumeState, { next: 1 });
    assertEquals(r.episodes, 1);
    await r.addEpisode(makeEpisode(4, 2, false));
    await r.close();
    const s = openStore(dir, { verify: true });
    assertEquals([...s.offsets], [0, 3, 7]);
    assertEquals(s.readEpisode(1).obs, makeEpisode(4, 2, false).frames);
    assertEquals(fs.readdirSync(path.join(dir, "obs")).sort(), [
      "chunk_000000.bin",
      "chunk_000001.bin",
    ]);
    s.close();
    // Without resume a partial store restarts from scratch.
    const w3 = await openStoreWriter(dir, { ...opts, overwrite: true });
    await w3.addEpisode(makeEpisode(2, 9, false));
    w3.abort();
    assertEquals(openStore(dir).numRows, 7); // an aborted overwrite leaves the old store
    const w4 = await openStoreWriter(dir, { ...opts, overwrite: true });
    assertEquals(w4.resumeState, undefined);
    assertEquals(w4.episodes, 0);
    await w4.addEpisode(makeEpisode(6, 4, true));
    await w4.close();
    assertEquals(openStore(dir).numRows, 6);
  });
});

Deno.test("data writer: token form stores [T,36] uint16 per episode", async () => {
  await withTempDir(async (root) => {
    const dir = path.join(root, "Pong");
    const w = await openTokenStoreWriter(dir, { game: "Pong", minimalActions: PONG, source: {} });
    const T = 7;
    const tokens = new Uint16Array(T * 36).map((_, i) => (i * 37) % 2048);
    const ep = makeEpisode(T, 3, false);
    await w.addEpisode({ ...ep, tokens });
    await assertRejects(
      () => w.addEpisode({ ...ep, tokens: tokens.subarray(0, 35) }),
      RangeError,
      "[T,36]",
    );
    await w.close();
    const s = openStore(dir, { verify: true });
    assertEquals(s.manifest.form, "tokens");
    assertEquals(s.manifest.obs, { dtype: "uint16", shape: [36] });
    assertEquals(s.readEpisode(0).obs, tokens);
    const py = `
import numpy as np, sys
t = np.fromfile(sys.argv[1] + "/obs/chunk_000000.bin", "<u2").reshape(-1, 36)
print(t.shape[0], int(t[3, 5]), int(t.astype(np.int64).sum()))`;
    const [n, v, sum] = (await runPython(py, [dir])).trim().split(" ").map(Number);
    assertEquals([n, v, sum], [T, tokens[3 * 36 + 5], tokens.reduce((a, b) => a + b, 0)]);
  });
});
