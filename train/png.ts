/**
 * A tiny PNG encoder (8-bit grayscale, filter 0, zlib from node:zlib) for the report's
 * tokenizer reconstructions.
 *
 * @module
 */
import { deflateSync } from "node:zlib";

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (PNG/zlib polynomial) of bytes. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * Encode a grayscale image (`pixels` uint8, row-major `height` x `width`) as PNG bytes.
 * @throws RangeError when the pixel count does not match.
 */
export function encodeGrayPng(pixels: Uint8Array, width: number, height: number): Uint8Array {
  if (pixels.length !== width * height) {
    throw new RangeError(`encodeGrayPng: ${pixels.length} pixels for ${width}x${height}`);
  }
  const raw = new Uint8Array(height * (width + 1));
  for (let y = 0; y < height; y++) {
    raw[y * (width + 1)] = 0; // filter type None per scanline
    raw.set(pixels.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  }
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr.set([8, 0, 0, 0, 0], 8); // bit depth 8, grayscale, deflate, filter 0, no interlace
  const parts = [
    new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    chunk("IDAT", new Uint8Array(deflateSync(raw))),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Scale a grayscale image up by an integer factor (nearest), for visible thumbnails. */
export function upscaleGray(
  pixels: Uint8Array,
  width: number,
  height: number,
  k: number,
): Uint8Array {
  const out = new Uint8Array(width * height * k * k);
  for (let y = 0; y < height * k; y++) {
    for (let x = 0; x < width * k; x++) {
      out[y * width * k + x] = pixels[Math.floor(y / k) * width + Math.floor(x / k)];
    }
  }
  return out;
}
