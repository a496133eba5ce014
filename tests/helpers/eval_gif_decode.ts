/**
 * A minimal GIF decoder (global palette, full-frame images, no interlace) written from the
 * GIF89a specification, to check eval/gif.ts independently of its encoder.
 */

/** Decode GIF variable-length-code LZW data to palette indices. */
export function lzwDecode(data: Uint8Array, minCodeSize: number): Uint8Array {
  const clear = 1 << minCodeSize;
  const eoi = clear + 1;
  const out: number[] = [];
  let size = minCodeSize + 1;
  let dict: number[][] = [];
  const reset = () => {
    dict = Array.from({ length: clear + 2 }, (_, i) => (i < clear ? [i] : []));
    size = minCodeSize + 1;
  };
  reset();
  let prev: number[] | null = null;
  let pos = 0;
  const read = (): number => {
    let v = 0;
    for (let b = 0; b < size; b++, pos++) {
      if ((data[pos >> 3] >> (pos & 7)) & 1) v |= 1 << b;
    }
    return v;
  };
  while (pos + size <= data.length * 8) {
    const code = read();
    if (code === clear) {
      reset();
      prev = null;
      continue;
    }
    if (code === eoi) break;
    let entry: number[];
    if (code < dict.length) entry = dict[code];
    else if (code === dict.length && prev) entry = [...prev, prev[0]];
    else throw new Error(`bad LZW code ${code} (table ${dict.length})`);
    out.push(...entry);
    if (prev) dict.push([...prev, entry[0]]);
    prev = entry;
    if (dict.length === 1 << size && size < 12) size++;
  }
  return Uint8Array.from(out);
}

/** Frames (palette indices) and size of a GIF. */
export function decodeGif(gif: Uint8Array): {
  width: number;
  height: number;
  palette: Uint8Array;
  frames: Uint8Array[];
  delays: number[];
} {
  const u16 = (i: number) => gif[i] | (gif[i + 1] << 8);
  if (new TextDecoder().decode(gif.subarray(0, 6)) !== "GIF89a") throw new Error("not GIF89a");
  const width = u16(6);
  const height = u16(8);
  const packed = gif[10];
  let p = 13;
  let palette = new Uint8Array();
  if (packed & 0x80) {
    const n = 3 * (1 << ((packed & 7) + 1));
    palette = gif.slice(p, p + n);
    p += n;
  }
  const frames: Uint8Array[] = [];
  const delays: number[] = [];
  const blocks = (): Uint8Array => {
    const parts: number[] = [];
    while (gif[p] !== 0) {
      const n = gif[p++];
      for (let i = 0; i < n; i++) parts.push(gif[p++]);
    }
    p++;
    return Uint8Array.from(parts);
  };
  while (p < gif.length) {
    const b = gif[p++];
    if (b === 0x3b) break;
    if (b === 0x21) {
      const label = gif[p++];
      if (label === 0xf9) delays.push(gif[p + 2] | (gif[p + 3] << 8));
      blocks();
    } else if (b === 0x2c) {
      const w = u16(p + 4);
      const h = u16(p + 6);
      if (w !== width || h !== height || gif[p + 8] !== 0) throw new Error("partial frame");
      p += 9;
      const min = gif[p++];
      frames.push(lzwDecode(blocks(), min));
    } else throw new Error(`unexpected block 0x${b.toString(16)} at ${p - 1}`);
  }
  return { width, height, palette, frames, delays };
}
