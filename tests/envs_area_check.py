"""Checks envs/area_resize.py on random and tie-heavy images of several sizes.

Against the exact integer area mean of envs_reference.py (the result must lie in [lo, hi]
and equal both off ties), and with --cv2 also bit-exactly against cv2.INTER_AREA.
Prints one JSON line: {"checked": pixels, "ties": tie pixels, "bad": failures}.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "envs"))
sys.path.insert(0, HERE)
from area_resize import AreaResizer  # noqa: E402
from envs_reference import area_exact  # noqa: E402

SIZES = [(210, 160, 84, 84), (214, 160, 84, 84), (210, 160, 64, 64), (100, 100, 84, 84),
         (210, 160, 96, 72), (210, 160, 84, 160), (250, 250, 84, 84), (210, 160, 83, 61)]


def main() -> None:
    use_cv2 = "--cv2" in sys.argv
    if use_cv2:
        import cv2
    rng = np.random.default_rng(0)
    checked = ties = bad = 0
    for h, w, oh, ow in SIZES:
        r = AreaResizer(h, w, oh, ow)
        # random grey levels, and black/white blocks (many exact .5 means)
        imgs = [rng.integers(0, 256, (6, h, w), dtype=np.uint8),
                (rng.integers(0, 2, (6, h, w)) * 255).astype(np.uint8),
                np.repeat(rng.integers(0, 256, (6, h, 1), dtype=np.uint8), w, axis=2)]
        for batch in imgs:
            out = r(batch)
            single = np.stack([r(b) for b in batch])
            bad += int((out != single).sum())  # batched == one by one
            for img, o in zip(batch, out):
                lo, hi = area_exact(img, oh, ow)
                ties += int((lo != hi).sum())
                bad += int(((o < lo) | (o > hi)).sum())
                if use_cv2:
                    bad += int((cv2.resize(img, (ow, oh), interpolation=cv2.INTER_AREA) != o).sum())
                checked += o.size
    print(json.dumps({"checked": checked, "ties": ties, "bad": bad}))


if __name__ == "__main__":
    main()
