"""Independent reference for the ALE bridge's preprocessing (used by envs_*_test.ts).

Plays one game with a fresh ALEInterface at frame skip 1, records the raw grayscale
screen of every emulator frame, and rebuilds each agent step from those raw frames:
reward = sum over the step's frames, observation = max of the step's last two raw
frames (the final frame when the game ends early), area-downscaled to 84x84.

Area downscaling here is the textbook definition, done exactly in integers: split
every source pixel into 84x84 equal cells and average the cells falling in each output
pixel (separably: integer overlap matrices, S = Wy @ img @ Wx^T, mean = S / (H*W)).
Where the mean ends in exactly .5 OpenCV's float32 arithmetic may round either way, so the reference emits
`lo` (ties down) and `hi` (ties up): a correct result lies in [lo, hi], and equals
both everywhere else.  With --cv2 it also emits cv2.resize(INTER_AREA) of the same
pooled frames (needs opencv-python-headless; not installed in CI).

Input: one JSON argument {rom, seed, actions, frameSkip, noops, maxPool, cv2}.
Output (stdout): one msgpack map of raw bytes / lists.
"""

import functools
import json
import sys

import msgpack
import numpy as np
from pathlib import Path
from ale_py import ALEInterface, LoggerMode, roms


@functools.lru_cache(maxsize=None)
def axis_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] integer overlaps: split every source pixel into n_out equal cells;
    output pixel o covers cells [o*n_in, (o+1)*n_in)."""
    fine = np.repeat(np.eye(n_in, dtype=np.int64), n_out, axis=0)  # [n_in*n_out, n_in]
    return fine.reshape(n_out, n_in, n_in).sum(axis=1)


def area_exact(img: np.ndarray, out_h: int = 84, out_w: int = 84):
    h, w = img.shape
    s = axis_weights(h, out_h) @ img.astype(np.int64) @ axis_weights(w, out_w).T
    d = h * w  # mean = S / d exactly
    lo = (2 * s + d - 1) // (2 * d)  # ties rounded down
    hi = (2 * s + d) // (2 * d)  # ties rounded up
    return lo.astype(np.uint8), hi.astype(np.uint8)


def main() -> None:
    args = json.loads(sys.argv[1])
    ale = ALEInterface()
    ale.setLoggerMode(LoggerMode.Error)
    ale.setInt("random_seed", int(args["seed"]))
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(str(Path(roms.__file__).parent / f"{args['rom']}.bin"))
    ale.reset_game()
    for _ in range(int(args.get("noops", 0))):  # no-op start frames, count given by the bridge
        ale.act(0)
    lives0 = ale.lives()
    skip = int(args.get("frameSkip", 4))
    max_pool = bool(args.get("maxPool", True))
    first = ale.getScreenGrayscale().copy()
    lo0, hi0 = area_exact(first)
    los, his, pooled_all = [lo0], [hi0], [first]
    rewards, terminals, lives = [], [], []
    for a in args["actions"]:
        frames, r, over = [], 0, False
        for _ in range(skip):
            r += ale.act(int(a))
            frames.append(ale.getScreenGrayscale().copy())
            over = ale.game_over(with_truncation=False)
            if over:
                break
        single = (over and len(frames) < skip) or skip == 1 or not max_pool
        pooled = frames[-1] if single else np.maximum(frames[-1], frames[-2])
        lo, hi = area_exact(pooled)
        los.append(lo)
        his.append(hi)
        pooled_all.append(pooled)
        rewards.append(r)
        terminals.append(int(over))
        lives.append(ale.lives())
        if over:
            break
    out = {
        "lo": np.stack(los).tobytes(),
        "hi": np.stack(his).tobytes(),
        "rewards": rewards,
        "terminals": terminals,
        "lives": lives,
        "lives0": lives0,
        "minimalActions": [int(x.value) for x in ale.getMinimalActionSet()],
    }
    if args.get("cv2"):
        import cv2
        out["cv2"] = np.stack([cv2.resize(p, (84, 84), interpolation=cv2.INTER_AREA)
                               for p in pooled_all]).tobytes()
    sys.stdout.buffer.write(msgpack.packb(out, use_bin_type=True))


if __name__ == "__main__":
    main()
