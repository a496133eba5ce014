/** The recording encoder (eval/gif.ts) against an independent decoder. */
import assert from "node:assert/strict";
import { encodeGif } from "../eval/gif.ts";
import { compositeFrame } from "../eval/recording.ts";
import { decodeGif } from "./helpers/eval_gif_decode.ts";

function frame(w: number, h: number, f: (i: number) => number): Uint8Array {
  return Uint8Array.from({ length: w * h }, (_, i) => f(i) & 0xff);
}

Deno.test("gif: frames round-trip through an independent decoder (incl. table resets)", () => {
  let s = 12345;
  const noise = () => (s = (s * 1103515245 + 12345) % 2147483648) >> 16;
  const w = 170, h = 84;
  const frames = [
    frame(w, h, () => 0), // long runs
    frame(w, h, (i) => i), // ramps
    frame(w, h, () => noise()), // incompressible: fills the 4096-entry table, clears
    frame(w, h, (i) => ((i % w) >> 3) * 40 + (i > w * 40 ? 7 : 0)),
    frame(w, h, (i) => (i % 3 === 0 ? 255 : 1)),
  ];
  const gif = encodeGif(frames, w, h, 5);
  const d = decodeGif(gif);
  assert.equal(d.width, w);
  assert.equal(d.height, h);
  assert.equal(d.palette.length, 768);
  assert.deepEqual(Array.from(d.palette.subarray(3 * 77, 3 * 78)), [77, 77, 77]);
  assert.equal(d.frames.length, frames.length);
  assert.deepEqual(d.delays, frames.map(() => 5));
  frames.forEach((f, i) => assert.deepEqual(d.frames[i], f, `frame ${i}`));
});

Deno.test("gif: a 1x1 frame and bad sizes", () => {
  const d = decodeGif(encodeGif([Uint8Array.of(9)], 1, 1));
  assert.deepEqual(Array.from(d.frames[0]), [9]);
  assert.throws(() => encodeGif([new Uint8Array(5)], 2, 2), /not 2x2/);
  assert.throws(() => encodeGif([], 2, 2), /no frames/);
});

Deno.test("recording: real frame beside the imagined ones, [-1, 1] mapped to bytes", () => {
  const real = frame(84, 84, (i) => i % 84);
  const imagined = new Float32Array(2 * 84 * 84);
  imagined.fill(-1, 0, 84 * 84);
  imagined.fill(1, 84 * 84);
  const { data, width } = compositeFrame(real, imagined, 2);
  assert.equal(width, 3 * 84 + 4);
  assert.equal(data[5], 5); // real, row 0
  assert.equal(data[84], 255); // separator
  assert.equal(data[86 + 10], 0); // imagined -1
  assert.equal(data[2 * 86 + 10], 255); // imagined +1
  const none = compositeFrame(real, null, 0);
  assert.equal(none.width, 84);
});
