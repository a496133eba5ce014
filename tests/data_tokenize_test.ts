import { assert, assertEquals, assertRejects } from "./data_assert.ts";
import * as fs from "node:fs";
import * as path from "node:path";
import { openStoreWriter } from "../offline/writer.ts";
import { openStore } from "../offline/store.ts";
import { tokenizeStore } from "../offline/tokenize_store.ts";
import { DataError } from "../offline/fs_util.ts";
import { fixtureBytes, runPython, withTempDir } from "./data_util.ts";

/** Synthetic tokenizer: id j of a frame = sum of its 14x14 block j (6x6 grid) mod 2048. */
function blockSums(frames: Uint8Array, T: number): Uint16Array {
  const out = new Uint16Array(T * 36);
  for (let t = 0; t < T; t++) {
    for (let y = 0; y < 84; y++) {
      for (let x = 0; x < 84; x++) {
        const j = t * 36 + Math.floor(y / 14) * 6 + Math.floor(x / 14);
        out[j] = (out[j] + frames[t * 7056 + y * 84 + x]) % 2048;
      }
    }
  }
  return out;
}

async function frameStore(dir: string): Promise<void> {
  const w = await openStoreWriter(dir, {
    game: "Pong",
    minimalActions: [0, 1, 3, 4, 11, 12],
    source: {},
  });
  for (const [i, T] of [4, 9, 2, 6, 5].entries()) {
    await w.addEpisode({
      frames: fixtureBytes(T * 7056, i + 1),
      actions: new Uint8Array(T).fill(3),
      rewards: new Float32Array(T).fill(i),
      terminals: new Uint8Array(T).map((_, t) => (t === T - 1 ? 1 : 0)),
      truncated: false,
    });
  }
  await w.close();
}

Deno.test("data tokenize: frame store -> token store, checked with numpy", async () => {
  await withTempDir(async (root) => {
    const src = path.join(root, "frames", "Pong"), dst = path.join(root, "tokens", "Pong");
    await frameStore(src);
    const r = await tokenizeStore(src, dst, blockSums, { tokenizer: { name: "block-sum" } });
    assertEquals(r, { episodes: 5, transitions: 26 });
    const t = openStore(dst, { verify: true }), f = openStore(src);
    assertEquals([...t.offsets], [...f.offsets]);
    assertEquals(t.actions, f.actions);
    assertEquals(t.rewards, f.rewards);
    assertEquals(t.terminals, f.terminals);
    t.close();
    f.close();
    const py = `
import numpy as np, sys
fr = np.fromfile(sys.argv[1] + "/obs/chunk_000000.bin", np.uint8).reshape(-1, 6, 14, 6, 14)
tok = np.fromfile(sys.argv[2] + "/obs/chunk_000000.bin", "<u2").reshape(-1, 36)
want = (fr.astype(np.int64).sum(axis=(2, 4)) % 2048).reshape(-1, 36)
print("OK" if np.array_equal(want, tok) else "MISMATCH")`;
    assertEquals((await runPython(py, [src, dst])).trim(), "OK");
  });
});

Deno.test("data tokenize: resumes after an interrupt; bad encoder output leaves nothing", async () => {
  await withTempDir(async (root) => {
    const src = path.join(root, "frames", "Pong"), dst = path.join(root, "tokens", "Pong");
    await frameStore(src);
    let n = 0;
    const flaky = (f: Uint8Array, T: number) => {
      if (++n === 4) throw new Error("interrupt");
      return blockSums(f, T);
    };
    const o = { tokenizer: {}, chunkBytes: 5 * 72 };
    await assertRejects(() => tokenizeStore(src, dst, flaky, o), Error, "interrupt");
    assert(fs.existsSync(path.join(dst, "journal.json")));
    n = 10;
    await tokenizeStore(src, dst, flaky, o);
    const ref = path.join(root, "ref");
    await tokenizeStore(src, ref, blockSums, o);
    assertEquals(openStore(dst).manifest.files, openStore(ref).manifest.files);
    const bad = path.join(root, "bad");
    await assertRejects(
      () => tokenizeStore(src, bad, (_f, T) => new Uint16Array(T * 36).fill(4096), o),
      DataError,
      "vocab",
    );
    assert(!fs.existsSync(bad));
  });
});
