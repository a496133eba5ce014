"""Baseline for bench/envs_bench.ts: a plain Python loop over ale-py, one process.

Same preprocessing as the bridge (frame skip, max of the last two grayscale frames,
OpenCV-exact area resize to 84x84), done env by env with no batching and no IPC.
Usage: python envs_plain_loop.py ROM N STEPS  -> prints one JSON line.
"""
import json
import os
import sys
import time

import numpy as np
from ale_py import ALEInterface, LoggerMode, roms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "envs"))
from area_resize import AreaResizer  # noqa: E402


def main() -> None:
    rom, n, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    envs = []
    for i in range(n):
        ale = ALEInterface()
        ale.setLoggerMode(LoggerMode.Error)
        ale.setInt("random_seed", i)
        ale.setFloat("repeat_action_probability", 0.0)
        ale.loadROM(str(roms.get_rom_path(rom)))
        ale.reset_game()
        envs.append(ale)
    h, w = envs[0].getScreenDims()
    resize = AreaResizer(h, w, 84, 84)
    a_buf = np.zeros((h, w), np.uint8)
    b_buf = np.zeros((h, w), np.uint8)
    obs = np.zeros((n, 84, 84), np.uint8)
    actions = [int(a.value) for a in envs[0].getMinimalActionSet()]
    rng = np.random.default_rng(0)

    def step_all():
        for i, ale in enumerate(envs):
            a = actions[rng.integers(len(actions))]
            for k in range(4):
                ale.act(a)
                if k == 2:
                    ale.getScreenGrayscale(a_buf)
                elif k == 3:
                    ale.getScreenGrayscale(b_buf)
            np.maximum(a_buf, b_buf, out=a_buf)
            resize(a_buf, out=obs[i])
            if ale.game_over(with_truncation=False):
                ale.reset_game()

    for _ in range(max(2, steps // 10)):
        step_all()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step_all()
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    print(json.dumps({"envs": n, "steps": steps, "seconds": dt, "sps": n * steps / dt,
                      "cpu_sps": n * steps / cpu}))


if __name__ == "__main__":
    main()
