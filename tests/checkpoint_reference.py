"""Independent reference for the safetensors tests: the Python `safetensors` library + numpy.

Usage (all output is JSON on stdout):
  dump FILE...        load each file with safetensors; report metadata, dtypes, shapes, raw
                      bytes and float32 values (F16 widened by numpy), or the error
  resave IN OUT       re-serialize IN with Python's writer (same tensors and metadata)
  sample OUT          write a sample file with Python and report what it contains
  convert IN OUT16 OUTB16 OUTW
                      IN holds float32s; write their float16 (numpy astype) and bfloat16
                      (exact rounding via frexp, independent of bit tricks) bit patterns, and
                      all 65536 float16 patterns widened to float32 (numpy) to OUTW
"""

import json
import math
import struct
import sys

import numpy as np
import safetensors
import safetensors.numpy as stnp

NP_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "I32": np.int32,
    "I64": np.int64,
    "U8": np.uint8,
    "U16": np.uint16,
}


def as_f32_hex(dtype, raw):
    """Float32 rendering of raw little-endian element bytes, by numpy where numpy can."""
    if dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.astype("<u4").tobytes().hex()
    arr = np.frombuffer(raw, dtype=np.dtype(NP_DTYPES[dtype]).newbyteorder("<"))
    return arr.astype("<f4").tobytes().hex()


def dump(path):
    try:
        with open(path, "rb") as f:
            buf = f.read()
        raw = dict(safetensors.deserialize(buf))
        tensors = {}
        with safetensors.safe_open(path, framework="np") as f:
            metadata = f.metadata()
            for name, info in raw.items():
                data = bytes(info["data"])
                entry = {
                    "dtype": info["dtype"],
                    "shape": list(info["shape"]),
                    "hex": data.hex(),
                    "f32hex": as_f32_hex(info["dtype"], data),
                }
                if info["dtype"] in NP_DTYPES:  # numpy has no bfloat16
                    arr = f.get_tensor(name)
                    entry["numpy_dtype"] = str(arr.dtype)
                    entry["numpy_shape"] = list(arr.shape)
                    entry["numpy_hex"] = np.ascontiguousarray(arr).tobytes().hex()
                tensors[name] = entry
        if all(info["dtype"] in NP_DTYPES for info in raw.values()):
            # the whole-file numpy loader must agree with safe_open
            for name, arr in stnp.load_file(path).items():
                assert np.ascontiguousarray(arr).tobytes().hex() == tensors[name]["numpy_hex"]
        header_len = struct.unpack("<Q", buf[:8])[0]
        return {"ok": True, "metadata": metadata, "tensors": tensors, "header_len": header_len}
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - every rejection is a result here, even a
        # Rust panic (pyo3's PanicException derives from BaseException)
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


def sample(out):
    rng = np.random.default_rng(1234)
    f32 = (rng.standard_normal((3, 5)) * 10).astype(np.float32)
    f32[0, :4] = [np.inf, -np.inf, -0.0, 1e-40]  # specials incl. a subnormal
    f16 = rng.standard_normal((4, 2)).astype(np.float16)
    f16[0] = [np.float16(6.1e-5), np.float16(-65504)]
    # 2**60 + 2**36 + 1 rounds differently to float32 when it goes through float64 first.
    i64 = np.array([[-(2**62), 2**53 + 1], [-1, 2**60 + 2**36 + 1]], dtype=np.int64)
    scalar = np.array(3.25, dtype=np.float32)
    empty = np.zeros((0, 3), dtype=np.float32)
    bf = np.array([0x3F80, 0xC049, 0x7F80, 0x0001, 0x8000, 0x4049], dtype=np.uint16)
    arrays = {"enc.f32": f32, "enc.f16": f16, "steps.i64": i64, "scalar": scalar, "empty": empty}
    specs = {
        name: safetensors.TensorSpec(
            dtype=str(a.dtype), shape=list(a.shape), data_ptr=a.ctypes.data, data_len=a.nbytes
        )
        for name, a in arrays.items()
    }
    specs["dec.bf16"] = safetensors.TensorSpec(
        dtype="bfloat16", shape=[2, 3], data_ptr=bf.ctypes.data, data_len=bf.nbytes
    )
    metadata = {"format": "pt", "step": "1200", "note": "héllo \"quoted\"\n\u2028"}
    safetensors.serialize_file(specs, out, metadata=metadata)
    expected = {
        name: {"dtype": {"float32": "F32", "float16": "F16", "int64": "I64"}[str(a.dtype)],
               "shape": list(a.shape), "hex": a.astype(a.dtype.newbyteorder("<")).tobytes().hex()}
        for name, a in arrays.items()
    }
    expected["dec.bf16"] = {"dtype": "BF16", "shape": [2, 3], "hex": bf.astype("<u2").tobytes().hex()}
    for e in expected.values():
        e["f32hex"] = as_f32_hex(e["dtype"], bytes.fromhex(e["hex"]))
    return {"metadata": metadata, "tensors": expected}


def resave(inp, out):
    with open(inp, "rb") as f:
        raw = dict(safetensors.deserialize(f.read()))
    with safetensors.safe_open(inp, framework="np") as f:
        metadata = f.metadata()
    keep = []  # buffers must outlive serialize_file
    specs = {}
    for name, info in raw.items():
        buf = np.frombuffer(bytes(info["data"]), dtype=np.uint8).copy()
        keep.append(buf)
        dtype = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I32": "int32",
                 "I64": "int64", "U8": "uint8", "U16": "uint16"}[info["dtype"]]
        specs[name] = safetensors.TensorSpec(
            dtype=dtype, shape=list(info["shape"]), data_ptr=buf.ctypes.data, data_len=buf.nbytes
        )
    safetensors.serialize_file(specs, out, metadata=metadata)
    return {"n": len(specs)}


def bf16_round(x):
    """Nearest bfloat16 (ties to even) of a finite float, by exact float64 arithmetic."""
    if x == 0.0 or math.isinf(x):
        return x
    _, e = math.frexp(x)  # |x| = m * 2**e, 0.5 <= |m| < 1
    quantum = math.ldexp(1.0, max(e - 8, -133))  # 8 significant bits; subnormal step 2**-133
    r = round(x / quantum) * quantum  # Python round() is ties-to-even; x/quantum is exact
    if abs(r) >= math.ldexp(1.0, 128):
        return math.copysign(math.inf, x)
    return math.copysign(r, x)  # keeps -0.0 when a tiny negative rounds to zero


def convert(inp, out16, outb16, outw):
    x = np.fromfile(inp, dtype="<f4")
    np.seterr(all="ignore")
    x.astype("<f2").view("<u2").tofile(out16)
    b = np.empty(x.shape, dtype="<u2")
    for i, v in enumerate(x.tolist()):
        if math.isnan(v):
            b[i] = 0x7FC0  # NaN: only NaN-ness is compared
            continue
        r = bf16_round(v)
        bits = struct.unpack("<I", struct.pack("<f", r))[0]  # r is exactly a bf16 value
        assert bits & 0xFFFF == 0, (v, r)
        b[i] = bits >> 16
    b.tofile(outb16)
    np.arange(65536, dtype=np.uint32).astype("<u2").view("<f2").astype("<f4").tofile(outw)
    return {"n": int(x.size)}


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "dump":
        result = [dump(p) for p in args]
    elif cmd == "resave":
        result = resave(*args)
    elif cmd == "sample":
        result = sample(args[0])
    elif cmd == "convert":
        result = convert(*args)
    else:
        raise SystemExit(f"unknown command {cmd}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
