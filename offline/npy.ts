/**
 * The `.npy` header (NumPy format versions 1-3): parse and validate, and encode for fixtures.
 * @module
 */
import { DataError } from "./fs_util.ts";

/** Element types this project reads from `.npy` files. */
export type NpyDtype = "uint8" | "bool" | "int32" | "int64" | "uint64" | "float32";

const DESCR: Record<string, NpyDtype> = {
  "|u1": "uint8",
  "<u1": "uint8",
  "u1": "uint8",
  "|b1": "bool",
  "<i4": "int32",
  "<i8": "int64",
  "<u8": "uint64",
  "<f4": "float32",
};

const ITEMSIZE: Record<NpyDtype, number> = {
  uint8: 1,
  bool: 1,
  int32: 4,
  int64: 8,
  uint64: 8,
  float32: 4,
};

/** A parsed `.npy` header. */
export interface NpyHeader {
  /** Element type. */
  dtype: NpyDtype;
  /** Raw descr string, e.g. "<i4". */
  descr: string;
  /** Array shape (empty for a scalar). */
  shape: number[];
  /** Bytes before the data (magic + lengths + header dict). */
  headerBytes: number;
  /** Bytes of data: product(shape) * itemsize. */
  dataBytes: number;
  /** Size of one element. */
  itemsize: number;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/**
 * Parse a header from the first bytes of an `.npy` stream.
 * @returns the header, or `null` when `buf` is too short to hold all of it.
 * @throws DataError (naming `file`) for a non-npy stream, Fortran order, or an unsupported dtype.
 */
export function parseNpyHeader(buf: Uint8Array, file: string): NpyHeader | null {
  if (buf.byteLength < 10) return null;
  for (let i = 0; i < 6; i++) {
    if (buf[i] !== MAGIC[i]) throw new DataError(`${file}: not a .npy stream (bad magic)`);
  }
  const major = buf[6];
  let lenBytes: number, dictLen: number;
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (major === 1) {
    lenBytes = 2;
    dictLen = dv.getUint16(8, true);
  } else if (major === 2 || major === 3) {
    if (buf.byteLength < 12) return null;
    lenBytes = 4;
    dictLen = dv.getUint32(8, true);
  } else {
    throw new DataError(`${file}: unsupported .npy version ${major}`);
  }
  const headerBytes = 8 + lenBytes + dictLen;
  if (buf.byteLength < headerBytes) return null;
  const dict = new TextDecoder("latin1").decode(buf.subarray(8 + lenBytes, headerBytes));
  const descrM = /'descr'\s*:\s*'([^']*)'/.exec(dict);
  const fortranM = /'fortran_order'\s*:\s*(True|False)/.exec(dict);
  const shapeM = /'shape'\s*:\s*\(([^)]*)\)/.exec(dict);
  if (!descrM || !fortranM || !shapeM) {
    throw new DataError(`${file}: malformed .npy header ${JSON.stringify(dict.trim())}`);
  }
  if (fortranM[1] === "True") throw new DataError(`${file}: Fortran-ordered array (need C order)`);
  const dtype = DESCR[descrM[1]];
  if (!dtype) throw new DataError(`${file}: unsupported dtype '${descrM[1]}'`);
  const shape = shapeM[1].split(",").map((s) => s.trim()).filter((s) => s.length > 0).map(
    (s) => {
      const n = Number(s.replace(/L$/, ""));
      if (!Number.isSafeInteger(n) || n < 0) {
        throw new DataError(`${file}: bad shape (${shapeM[1]})`);
      }
      return n;
    },
  );
  const itemsize = ITEMSIZE[dtype];
  const dataBytes = shape.reduce((a, b) => a * b, 1) * itemsize;
  return { dtype, descr: descrM[1], shape, headerBytes, dataBytes, itemsize };
}

const DESCR_OF: Record<NpyDtype, string> = {
  uint8: "|u1",
  bool: "|b1",
  int32: "<i4",
  int64: "<i8",
  uint64: "<u8",
  float32: "<f4",
};

/** Encode a version-1 `.npy` header (C order), padded to a multiple of 64 bytes like numpy. */
export function encodeNpyHeader(dtype: NpyDtype, shape: number[]): Uint8Array {
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let dict = `{'descr': '${DESCR_OF[dtype]}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  dict = dict.padEnd(total - 10 - 1, " ") + "\n";
  const out = new Uint8Array(total);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, dict.length, true);
  out.set(new TextEncoder().encode(dict), 10);
  return out;
}
