import { assert, assertEquals, assertRejects } from "./data_assert.ts";
import * as path from "node:path";
import { openStoreWriter, openTokenStoreWriter } from "../offline/writer.ts";
import { openSampler } from "../offline/sampler.ts";
import { openDataset } from "../offline/store.ts";
import { SegmentSampler } from "../offline/segment_sampler.ts";
import { DataError } from "../offline/fs_util.ts";
import { fixtureBytes, runPython, withTempDir } from "./data_util.ts";

const GAMES = {
  Pong: [0, 1, 3, 4, 11, 12],
  Atlantis: [0, 1, 11, 12],
  Berzerk: [...Array(18).keys()],
};

/** A dataset root with three small frame stores of varied episode lengths. */
async function makeDataset(root: string, tokens = false): Promise<void> {
  let seed = 1;
  for (const [game, minimal] of Object.entries(GAMES)) {
    const o = { game, minimalActions: minimal, source: { kind: "test" }, chunkBytes: 30 * 7056 };
    const w = tokens
      ? await openTokenStoreWriter(path.join(root, game), o)
      : await openStoreWriter(path.join(root, game), o);
    const lengths = game === "Atlantis" ? [3, 1, 20] : [12, 5, 9, 2, 30, 7];
    for (const [i, T] of lengths.entries()) {
      seed++;
      const ep = {
        actions: new Uint8Array(T).map((_, t) => minimal[(t * 5 + seed) % minimal.length]),
        rewards: new Float32Array(T).map((_, t) => ((t + seed) % 3) - 1),
        terminals: new Uint8Array(T).map((_, t) => (i % 2 === 0 && t === T - 1 ? 1 : 0)),
        truncated: i % 2 === 1,
      };
      if (tokens) {
        const tok = new Uint16Array(fixtureBytes(T * 72, seed).buffer).map((v) => v % 2048);
        await (w as Awaited<ReturnType<typeof openTokenStoreWriter>>).addEpisode({
          ...ep,
          tokens: tok,
        });
      } else {
        await (w as Awaited<ReturnType<typeof openStoreWriter>>).addEpisode({
          ...ep,
          frames: fixtureBytes(T * 7056, seed),
        });
      }
    }
    await w.close();
  }
}

Deno.test("data sampler: batches match an independent numpy reconstruction", async () => {
  await withTempDir(async (root) => {
    await makeDataset(root);
    const s = await openSampler(root, { batchSize: 64, segmentLength: 8, seed: 3, workers: 1 });
    assertEquals(s.games, ["Atlantis", "Berzerk", "Pong"]);
    const b = await s.next();
    s.close();
    assertEquals(b.frames!.length, 64 * 8 * 7056);
    // Balanced: 64 items over 3 games -> 22/21/21.
    const counts = [0, 0, 0];
    for (const g of b.gameIndex) counts[g]++;
    assert(Math.max(...counts) - Math.min(...counts) <= 1, String(counts));
    assert(b.mask.some((m) => m === 0), "fixture should produce padded segments");
    const dump = path.join(root, "batch.bin");
    const parts = [
      b.frames!,
      b.actions,
      b.rewards,
      b.terminals,
      b.mask,
      b.taskIds,
      b.gameIndex,
      b.starts,
    ];
    await Deno.writeFile(dump, concatBytes(parts));
    const py = `
import numpy as np, json, sys, os
root, dump, games = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
B, L = 64, 8
raw = open(dump, "rb").read(); o = 0
def take(dt, n):
    global o
    a = np.frombuffer(raw, dt, n, o); o += a.nbytes; return a
fr = take(np.uint8, B*L*7056).reshape(B, L, 84, 84); ac = take("<i4", B*L).reshape(B, L)
rw = take("<f4", B*L).reshape(B, L); te = take(np.uint8, B*L).reshape(B, L)
mk = take(np.uint8, B*L).reshape(B, L); ti = take("<i4", B); gi = take("<i4", B); st = take("<f8", B)
ok = True
for b in range(B):
    d = os.path.join(root, games[gi[b]]); m = json.load(open(os.path.join(d, "manifest.json")))
    obs = np.concatenate([np.fromfile(os.path.join(d, c["file"]), np.uint8) for c in m["chunks"]]).reshape(-1, 84, 84)
    off = np.fromfile(os.path.join(d, "episode_offsets.i64"), "<i8")
    r = int(st[b]); e = np.searchsorted(off, r, side="right") - 1; n = min(L, int(off[e+1]) - r)
    ef = np.zeros((L, 84, 84), np.uint8); ef[:n] = obs[r:r+n]
    ea = np.zeros(L, np.int32); ea[:n] = np.fromfile(os.path.join(d, "actions.u8"), np.uint8)[r:r+n]
    er = np.zeros(L, np.float32); er[:n] = np.fromfile(os.path.join(d, "rewards.f32"), "<f4")[r:r+n]
    et = np.zeros(L, np.uint8); et[:n] = np.fromfile(os.path.join(d, "terminals.u8"), np.uint8)[r:r+n]
    em = np.zeros(L, np.uint8); em[:n] = 1
    ok &= bool(np.array_equal(ef, fr[b]) and np.array_equal(ea, ac[b]) and np.array_equal(er, rw[b])
               and np.array_equal(et, te[b]) and np.array_equal(em, mk[b]) and ti[b] == m["taskId"])
print("OK" if ok else "MISMATCH")`;
    assertEquals((await runPython(py, [root, dump, s.games.join(",")])).trim(), "OK");
  });
});

function concatBytes(parts: ArrayBufferView[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.byteLength, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), o);
    o += p.byteLength;
  }
  return out;
}

Deno.test("data sampler: seeded, worker == inline, and state restores the identical stream", async () => {
  await withTempDir(async (root) => {
    await makeDataset(root);
    const take = async (s: Awaited<ReturnType<typeof openSampler>>, n: number) => {
      const out = [];
      for (let i = 0; i < n; i++) out.push(await s.next());
      return out;
    };
    const a = await openSampler(root, { batchSize: 16, seed: 9, workers: 2, prefetch: 3 });
    const ref = await take(a, 6);
    a.close();
    const inline = await openSampler(root, { batchSize: 16, seed: 9, workers: 0 });
    const first = await take(inline, 3);
    const saved = JSON.parse(JSON.stringify(inline.state()));
    inline.close();
    assertEquals(saved.nextBatch, 3);
    first.forEach((b, i) => assertEquals(b, ref[i]));
    const resumed = await openSampler(root, { state: saved, workers: 1 });
    const rest = await take(resumed, 3);
    resumed.close();
    rest.forEach((b, i) => assertEquals(b, ref[i + 3]));
    const other = await openSampler(root, { batchSize: 16, seed: 10, workers: 0 });
    assert(JSON.stringify([...(await other.next()).starts]) !== JSON.stringify([...ref[0].starts]));
    other.close();
    // A state cannot be restored onto other data or with other settings.
    await assertRejects(
      () => openSampler(root, { state: saved, games: ["Pong"], workers: 0 }),
      DataError,
      "other data",
    );
    await assertRejects(
      () => openSampler(root, { state: saved, batchSize: 8, workers: 0 }),
      RangeError,
      "batchSize",
    );
  });
});

Deno.test("data sampler: uniform start rows and balanced/proportional game weighting", async () => {
  await withTempDir(async (root) => {
    await makeDataset(root);
    const stores = openDataset(root);
    const bal = new SegmentSampler(stores, { batchSize: 30, seed: 1 });
    const counts = [0, 0, 0];
    const hits = new Float64Array(stores[2].numRows); // Pong rows
    for (let k = 0; k < 400; k++) {
      const b = bal.sampleBatch(k);
      for (let i = 0; i < 30; i++) {
        counts[b.gameIndex[i]]++;
        if (b.gameIndex[i] === 2) hits[b.starts[i]]++;
      }
    }
    assertEquals(counts, [4000, 4000, 4000]);
    // Every Pong row is a possible start, hit about equally often (4000 / 65 ~ 61.5 each).
    const mean = 4000 / hits.length;
    assert(hits.every((h) => h > mean * 0.5 && h < mean * 1.6), `${[...hits]}`);
    const prop = new SegmentSampler(stores, { batchSize: 100, seed: 1, weighting: "proportional" });
    const pc = [0, 0, 0];
    for (let k = 0; k < 100; k++) for (const g of prop.sampleBatch(k).gameIndex) pc[g]++;
    const rows = stores.map((s) => s.numRows), total = rows.reduce((a, b) => a + b, 0);
    pc.forEach((c, g) => assert(Math.abs(c / 10000 - rows[g] / total) < 0.02, `${pc} vs ${rows}`));
    const only = new SegmentSampler(stores, { batchSize: 10, weighting: { Pong: 1 } });
    assert(only.sampleBatch(0).gameIndex.every((g) => g === 2));
    stores.forEach((s) => s.close());
  });
});

Deno.test("data sampler: token stores give tokens [B, L, 36] uint16", async () => {
  await withTempDir(async (root) => {
    await makeDataset(root, true);
    const s = await openSampler([path.join(root, "Pong"), path.join(root, "Berzerk")], {
      batchSize: 8,
      segmentLength: 4,
      workers: 1,
    });
    const b = await s.next();
    s.close();
    assertEquals(s.form, "tokens");
    assertEquals(b.frames, undefined);
    assertEquals(b.tokens!.length, 8 * 4 * 36);
    const stores = [path.join(root, "Pong"), path.join(root, "Berzerk")].map((d) =>
      openDataset(path.dirname(d), { games: [path.basename(d)] })[0]
    );
    for (let i = 0; i < 8; i++) {
      const st = stores[b.gameIndex[i]];
      const e = st.offsets.findLastIndex((o) => o <= b.starts[i]);
      const ep = st.readEpisode(e);
      const t0 = b.starts[i] - st.offsets[e];
      for (let t = 0; t < 4; t++) {
        const got = b.tokens!.subarray((i * 4 + t) * 36, (i * 4 + t + 1) * 36);
        const want = t0 + t < ep.actions.length
          ? (ep.obs as Uint16Array).subarray((t0 + t) * 36, (t0 + t + 1) * 36)
          : new Uint16Array(36);
        assertEquals(got, want);
      }
    }
    stores.forEach((x) => x.close());
  });
});
