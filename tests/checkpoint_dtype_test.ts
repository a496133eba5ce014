// 16-bit float conversions against independent references: numpy for float16 (exhaustive
// widening, random + edge-case narrowing) and exact float64 rounding in Python for bfloat16.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  bf16ArrayToF32,
  bf16BitsToF32,
  f16ArrayToF32,
  f16BitsToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32ToBf16Bits,
  f32ToF16Bits,
} from "../models/safetensors/mod.ts";
import { reference, rng, withTempDir } from "./checkpoint_helpers.ts";

const isNaN16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isNaNB16 = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

/** float32 inputs: edge cases around every rounding boundary plus seeded random bit patterns. */
function inputs(): Float32Array {
  const bits: number[] = [
    0x00000000,
    0x80000000,
    0x7f800000,
    0xff800000,
    0x7fc00000,
    0xffc00001,
    0x7f800001,
    0x00000001,
    0x807fffff,
    0x00800000,
    0x7f7fffff,
    0xff7fffff,
  ];
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const add = (x: number) => {
    f32[0] = x;
    bits.push(u32[0], (u32[0] + 1) >>> 0, (u32[0] - 1) >>> 0);
  };
  // half: max, overflow threshold, min normal/subnormal and halves of them, ties at 1.0
  for (
    const x of [
      65504,
      65520,
      65519.99,
      2 ** -14,
      2 ** -24,
      2 ** -25,
      3 * 2 ** -26,
      2 ** -26,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      2049,
      2051,
    ]
  ) {
    add(x);
    add(-x);
  }
  // bfloat16: ties around 1.0, max finite, overflow, subnormal boundary
  for (const x of [1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.3895313892515355e38, 2 ** -126, 2 ** -133]) {
    add(x);
    add(-x);
  }
  for (let i = 0; i < 0x20000; i++) bits.push(0x0001_0000 * (i & 0xffff) + (i >> 16) * 0x8000);
  const next = rng(99);
  for (let i = 0; i < 100_000; i++) bits.push(Math.floor(next() * 2 ** 32));
  const out = new Float32Array(bits.length);
  new Uint32Array(out.buffer).set(bits);
  return out;
}

Deno.test("f16/bf16 conversions match numpy and exact rounding", async () => {
  await withTempDir(async (dir) => {
    const x = inputs();
    const p = (n: string) => join(dir, n);
    await Deno.writeFile(p("in.bin"), new Uint8Array(x.buffer));
    await reference("convert", p("in.bin"), p("f16.bin"), p("bf16.bin"), p("wide.bin"));
    const refF16 = new Uint16Array((await Deno.readFile(p("f16.bin"))).buffer);
    const refBf16 = new Uint16Array((await Deno.readFile(p("bf16.bin"))).buffer);
    const refWide = new Uint32Array((await Deno.readFile(p("wide.bin"))).buffer);
    assert.equal(refF16.length, x.length);

    // Narrowing: bit-exact except NaN payloads, where only NaN-ness and sign must survive.
    const f16 = f32ArrayToF16(x);
    const bf16 = f32ArrayToBf16(x);
    let bad = 0;
    for (let i = 0; i < x.length && bad < 5; i++) {
      const nan = Number.isNaN(x[i]);
      const ok16 = nan
        ? isNaN16(f16[i]) && (f16[i] & 0x8000) === (refF16[i] & 0x8000)
        : f16[i] === refF16[i];
      const okB = nan ? isNaNB16(bf16[i]) : bf16[i] === refBf16[i];
      if (!ok16 || !okB) {
        bad++;
        console.error(`x=${x[i]} f16 ${f16[i]} vs ${refF16[i]}, bf16 ${bf16[i]} vs ${refBf16[i]}`);
      }
      // scalar helpers agree with the array versions
      if (f32ToF16Bits(x[i]) !== f16[i] || f32ToBf16Bits(x[i]) !== bf16[i]) bad++;
    }
    assert.equal(bad, 0, "conversion mismatches (see log)");

    // Widening: all 65536 half patterns, bit-exact (numpy keeps NaN payloads, so do we).
    const all = new Uint16Array(65536).map((_, i) => i);
    const wide = new Uint32Array(f16ArrayToF32(all).buffer);
    assert.deepEqual(wide, refWide);
    for (let h = 0; h < 65536; h += 97) {
      assert.ok(Object.is(f16BitsToF32(h), new Float32Array(wide.buffer)[h]) || isNaN16(h));
    }
    // bfloat16 widening is exact and round-trips through narrowing.
    const wideB = bf16ArrayToF32(all);
    for (let h = 0; h < 65536; h++) {
      if (isNaNB16(h)) continue;
      assert.equal(f32ToBf16Bits(wideB[h]), h);
      assert.ok(Object.is(bf16BitsToF32(h), wideB[h]));
      if (!isNaN16(h)) assert.equal(f32ToF16Bits(f16BitsToF32(h)), h);
    }
  });
});
