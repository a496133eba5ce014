"""Area-interpolation downscaling that reproduces OpenCV's INTER_AREA on uint8 images.

OpenCV (resize.cpp, generic non-integer-scale path) builds, per axis, a table of
(destination, source, weight) triples with weights rounded to float32, accumulates
each source row horizontally in float32 in table order, then adds the rows into the
destination row as ``sum = sum + beta * row`` (float32, no fused multiply-add), and
rounds half to even.  Doing the same float32 operations in the same order here
gives bit-identical output (checked against opencv-python-headless 5.0 INTER_AREA,
see tests/envs_reference.py), while a plain float64 matmul would disagree on the
~0.3% of pixels whose exact area mean ends in .5.

Only the non-integer-scale path is emulated; integer factors (e.g. 2x) take a
different route inside OpenCV, so they are rejected here.
"""

from __future__ import annotations

import math

import numpy as np


def _area_table(ssize: int, dsize: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output (index, weight) arrays of shape [K, dsize] in OpenCV's order.

    Rows are padded with weight 0 on source 0: adding 0*x is exact in float32,
    so padding does not change any result.
    """
    scale = 1.0 / (dsize / ssize)  # same double arithmetic as OpenCV
    per_out: list[list[tuple[int, np.float32]]] = [[] for _ in range(dsize)]
    for dx in range(dsize):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, ssize - fsx1)
        sx1 = math.ceil(fsx1)
        sx2 = min(math.floor(fsx2), ssize - 1)
        sx1 = min(sx1, sx2)
        if sx1 - fsx1 > 1e-3:
            per_out[dx].append((sx1 - 1, np.float32((sx1 - fsx1) / cell)))
        for sx in range(sx1, sx2):
            per_out[dx].append((sx, np.float32(1.0 / cell)))
        if fsx2 - sx2 > 1e-3:
            per_out[dx].append((sx2, np.float32(min(min(fsx2 - sx2, 1.0), cell) / cell)))
    k = max(len(p) for p in per_out)
    idx = np.zeros((k, dsize), np.intp)
    wts = np.zeros((k, dsize), np.float32)
    for dx, terms in enumerate(per_out):
        for j, (s, w) in enumerate(terms):
            idx[j, dx] = s
            wts[j, dx] = w
    return idx, wts


class AreaResizer:
    """Batched uint8 [..., H, W] -> [..., OH, OW] area downscaling (OpenCV INTER_AREA)."""

    def __init__(self, h: int, w: int, oh: int, ow: int):
        for s, d in ((h, oh), (w, ow)):
            if d > s:
                raise ValueError(f"area resize only downscales (got {s} -> {d})")
            if s % d == 0 and s != d:
                raise ValueError(f"integer scale factor {s}/{d} uses another OpenCV path")
        self.shape = (h, w, oh, ow)
        self.xi, self.xw = _area_table(w, ow)
        self.yi, self.yw = _area_table(h, oh)
        self.identity = (h, w) == (oh, ow)

    def __call__(self, img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self.identity:
            if out is None:
                return img.copy()
            out[...] = img
            return out
        src = img.astype(np.float32)
        buf = np.zeros(src.shape[:-1] + (self.shape[3],), np.float32)
        for j in range(self.xi.shape[0]):
            buf += src[..., self.xi[j]] * self.xw[j]
        acc = np.zeros(src.shape[:-2] + (self.shape[2], self.shape[3]), np.float32)
        for j in range(self.yi.shape[0]):
            acc += buf[..., self.yi[j], :] * self.yw[j][:, None]
        np.rint(acc, out=acc)
        np.clip(acc, 0, 255, out=acc)
        if out is None:
            return acc.astype(np.uint8)
        out[...] = acc
        return out
