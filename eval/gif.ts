/**
 * A tiny animated-GIF encoder for grayscale frames: GIF89a, one global 256-entry gray
 * palette, LZW-compressed image data (variable code size up to 12 bits, a clear code when
 * the table is full), looping forever.
 *
 * @module
 */

/** Little-endian u16. */
function u16(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff];
}

/** LZW-compress palette indices with the GIF variant (min code size 8). */
export function lzwEncode(indices: Uint8Array, minCodeSize = 8): Uint8Array {
  const clear = 1 << minCodeSize;
  const eoi = clear + 1;
  const out: number[] = [];
  let cur = 0;
  let bits = 0;
  let size = minCodeSize + 1;
  const emit = (code: number) => {
    cur |= code << bits;
    bits += size;
    while (bits >= 8) {
      out.push(cur & 0xff);
      cur >>>= 8;
      bits -= 8;
    }
  };
  let table = new Map<number, number>();
  let next = eoi + 1;
  emit(clear);
  if (indices.length === 0) {
    emit(eoi);
    if (bits > 0) out.push(cur & 0xff);
    return Uint8Array.from(out);
  }
  let prefix = indices[0];
  for (let i = 1; i < indices.length; i++) {
    const k = indices[i];
    const key = (prefix << 8) | k;
    const hit = table.get(key);
    if (hit !== undefined) {
      prefix = hit;
      continue;
    }
    emit(prefix);
    if (next === 4096) {
      emit(clear);
      table = new Map();
      next = eoi + 1;
      size = minCodeSize + 1;
    } else {
      // The decoder widens its codes once the table reaches 2^size entries.
      if (next >= 1 << size) size++;
      table.set(key, next++);
    }
    prefix = k;
  }
  emit(prefix);
  emit(eoi);
  if (bits > 0) out.push(cur & 0xff);
  return Uint8Array.from(out);
}

/**
 * Encode grayscale frames (width x height bytes each) as a looping GIF with `delayCs`
 * hundredths of a second per frame.
 */
export function encodeGif(
  frames: readonly Uint8Array[],
  width: number,
  height: number,
  delayCs = 8,
): Uint8Array {
  if (frames.length === 0) throw new Error("encodeGif: no frames");
  for (const f of frames) {
    if (f.length !== width * height) {
      throw new Error(`encodeGif: a frame has ${f.length} bytes, not ${width}x${height}`);
    }
  }
  const bytes: number[] = [];
  const push = (xs: ArrayLike<number>) => {
    for (let i = 0; i < xs.length; i++) bytes.push(xs[i]);
  };
  push([...new TextEncoder().encode("GIF89a"), ...u16(width), ...u16(height), 0xf7, 0, 0]);
  for (let i = 0; i < 256; i++) push([i, i, i]);
  // NETSCAPE2.0 application extension: loop forever.
  push([0x21, 0xff, 0x0b, ...new TextEncoder().encode("NETSCAPE2.0"), 3, 1, 0, 0, 0]);
  for (const f of frames) {
    push([0x21, 0xf9, 4, 0x04, ...u16(delayCs), 0, 0]);
    push([0x2c, 0, 0, 0, 0, ...u16(width), ...u16(height), 0]);
    const data = lzwEncode(f);
    bytes.push(8);
    for (let i = 0; i < data.length; i += 255) {
      const chunk = data.subarray(i, i + 255);
      bytes.push(chunk.length);
      push(chunk);
    }
    bytes.push(0);
  }
  bytes.push(0x3b);
  return Uint8Array.from(bytes);
}
