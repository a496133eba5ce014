/** Framing of the bridge protocol: length prefix, msgpack bodies, arbitrary chunking. */
import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import { encodeFrame, FrameReader } from "../envs/protocol.ts";

function streamOf(bytes: Uint8Array, chunk: number): ReadableStream<Uint8Array> {
  let off = 0;
  return new ReadableStream({
    pull(c) {
      if (off >= bytes.length) return c.close();
      c.enqueue(bytes.slice(off, off + chunk));
      off += chunk;
    },
  });
}

Deno.test("envs protocol: frames survive any chunking, bins stay bytes", async () => {
  const big = new Uint8Array(100_000).map((_, i) => (i * 7) & 255);
  const msgs = [{ op: "step", actions: new Uint8Array([1, 17]) }, { ok: true, obs: big }, {
    n: 3,
    s: "é",
  }];
  const bytes = new Uint8Array(msgs.reduce((n, m) => n + encodeFrame(m).length, 0));
  let off = 0;
  for (const m of msgs) {
    const f = encodeFrame(m);
    bytes.set(f, off);
    off += f.length;
  }
  assertEquals(new DataView(bytes.buffer).getUint32(0, true), encodeFrame(msgs[0]).length - 4);
  for (const chunk of [1, 3, 4096, 1 << 20]) {
    const r = new FrameReader(streamOf(bytes, chunk).getReader());
    const a = await r.next() as { actions: Uint8Array };
    assertEquals(Array.from(a.actions), [1, 17]);
    const b = await r.next() as { obs: Uint8Array };
    assertEquals(new Uint8Array(b.obs), big);
    assertEquals(await r.next(), { n: 3, s: "é" });
    assertEquals(await r.next(), null);
  }
  const cut = new FrameReader(
    streamOf(bytes.subarray(0, encodeFrame(msgs[0]).length + 10), 4).getReader(),
  );
  await cut.next();
  await rejects(cut.next(), /stream ended inside a frame/);
});
