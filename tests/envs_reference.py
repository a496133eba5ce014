"""Independent reference for the ALE bridge's preprocessing (used by envs_*_test.ts).

Plays one game with a fresh ALEInterface at frame skip 1, records the raw grayscale
screen of every emulator frame, and rebuilds each agent step from those raw frames:
reward = sum over the step's frames, observation = max of the step's last two raw
frames (the final frame when the game ends early), area-downscaled to 84x84.

Area downscaling here is the textbook definition, done exactly in integers:
replicate every pixel 2x vertically and 21x horizontally (210x160 -> 420x3360), then
average 5x40 blocks (-> 84x84).  The mean is a rational S/200; where it ends in
exactly .5 OpenCV's float32 arithmetic may round either way, so the reference emits
`lo` (ties down) and `hi` (ties up): a correct result lies in [lo, hi], and equals
both everywhere else.  With --cv2 it also emits cv2.resize(INTER_AREA) of the same
pooled frames (needs opencv-python-headless; not installed in CI).

Input: one JSON argument {rom, seed, actions, frameSkip, maxSteps, cv2}.
Output (stdout): one msgpack map of raw bytes / lists.
"""

import json
import sys

import msgpack
import numpy as np
from pathlib import Path
from ale_py import ALEInterface, LoggerMode, roms


def area_exact(img: np.ndarray):
    up = np.repeat(np.repeat(img.astype(np.int64), 2, axis=0), 21, axis=1)  # 420x3360
    s = up.reshape(84, 5, 84, 40).sum(axis=(1, 3))  # S, mean = S / 200
    lo = (2 * s + 199) // 400  # ties down: floor(S/200 + 1/2 - eps)
    hi = (2 * s + 200) // 400  # ties up
    return lo.astype(np.uint8), hi.astype(np.uint8)


def main() -> None:
    args = json.loads(sys.argv[1])
    ale = ALEInterface()
    ale.setLoggerMode(LoggerMode.Error)
    ale.setInt("random_seed", int(args["seed"]))
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(str(Path(roms.__file__).parent / f"{args['rom']}.bin"))
    ale.reset_game()
    skip = int(args.get("frameSkip", 4))
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
        pooled = frames[-1] if (over and len(frames) < skip) or skip == 1 else np.maximum(
            frames[-1], frames[-2])
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
        "minimalActions": [int(x.value) for x in ale.getMinimalActionSet()],
    }
    if args.get("cv2"):
        import cv2
        out["cv2"] = np.stack([cv2.resize(p, (84, 84), interpolation=cv2.INTER_AREA)
                               for p in pooled_all]).tobytes()
    sys.stdout.buffer.write(msgpack.packb(out, use_bin_type=True))


if __name__ == "__main__":
    main()
