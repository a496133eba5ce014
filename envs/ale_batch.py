"""A batch of ALE emulators stepped with the JOWA evaluation preprocessing.

Per agent step and environment: repeat the action for `frame_skip` emulator frames,
sum the raw rewards, keep the grayscale screens of the last two frames and take their
pixel-wise max, then area-resize the whole batch at once (see area_resize.py).

Determinism: every environment owns its emulator and its numpy Generator, both seeded
from the seed given at reset, so results do not depend on how environments are split
over processes.  Auto-reset continues the environment's own emulator and Generator.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from ale_py import ALEInterface, LoggerMode, roms

from area_resize import AreaResizer


class UserError(Exception):
    """An error caused by the caller's input (reported without a traceback)."""


def bundled_rom_dir() -> Path:
    return Path(roms.__file__).parent


def valid_rom_ids(rom_dir: Path | None) -> list[str]:
    """Supported ROM ids, or those of them present as <id>.bin in `rom_dir`.

    ALE identifies a ROM by md5 or else by file name, and exits the process on a file
    it cannot identify, so only supported names may be loaded.
    """
    supported = roms.get_all_rom_ids()
    if rom_dir is None:
        return sorted(supported)
    return sorted(set(supported) & {p.stem for p in rom_dir.glob("*.bin")})


def rom_path(rom: str, rom_dir: str | None) -> Path:
    """Path of the ROM file; bypasses ale-py's md5 check so older ROM dumps load too
    (ALE also recognises a game by its file name)."""
    base = Path(rom_dir) if rom_dir else bundled_rom_dir()
    if rom_dir and not base.is_dir():
        raise UserError(f"ROM directory {base} does not exist")
    known = valid_rom_ids(base if rom_dir else None)
    path = base / f"{rom}.bin"
    if rom not in known or not path.is_file():
        where = f" in {base}" if rom_dir else ""
        raise UserError(f"unknown game '{rom}'{where}; valid names: {', '.join(known)}")
    return path


class Env:
    """One emulator plus the episode bookkeeping around it."""

    def __init__(self, rom: str, rom_dir: str | None, cfg: dict):
        self.rom = rom
        self.path = rom_path(rom, rom_dir)
        self.md5 = hashlib.md5(self.path.read_bytes()).hexdigest()
        self.cfg = cfg
        # settings read on every step, resolved once
        self.skip = int(cfg["frameSkip"])
        self.pool = self.skip > 1 and bool(cfg["maxPool"])
        self.limit = int(cfg["maxEpisodeFrames"])
        self.life_loss_ends = bool(cfg["terminalOnLifeLoss"])
        self.ale = ALEInterface()
        self.ale.setLoggerMode(LoggerMode.Error)
        self._configure(0)
        self.ale.loadROM(str(self.path))
        self.shape = tuple(int(d) for d in self.ale.getScreenDims())  # (210, 160) mostly
        self.minimal = [int(a.value) for a in self.ale.getMinimalActionSet()]
        self.started = False
        self.ended = False
        self.rng = np.random.default_rng(0)
        self.ep_return = 0.0
        self.ep_steps = 0
        self.lives = 0

    def _configure(self, seed: int) -> None:
        self.ale.setInt("random_seed", seed)
        self.ale.setFloat("repeat_action_probability", float(self.cfg["stickyActionProb"]))
        self.ale.setInt("frame_skip", 1)
        self.ale.setInt("max_num_frames_per_episode", 0)  # the time limit is ours

    def reset(self, seed: int | None, screen: np.ndarray) -> int:
        """Start a new episode; writes the first screen; returns the no-op count.

        With a seed the ROM is reloaded (~0.15 s) so the emulator's RNG restarts from it,
        as gymnasium does.  Without one (auto-reset) the game is only reset: the emulator
        and no-op RNGs simply continue, which stays deterministic per environment.
        """
        if seed is not None:
            self._configure(seed)
            self.ale.loadROM(str(self.path))
            self.rng = np.random.default_rng(seed)
        self.ale.reset_game()
        noop_max = int(self.cfg["noopMax"])
        noops = int(self.rng.integers(1, noop_max + 1)) if noop_max > 0 else 0
        for _ in range(noops):
            self.ale.act(0)
            if self.ale.game_over(with_truncation=False):
                self.ale.reset_game()
        self.ale.getScreenGrayscale(screen)
        self.started, self.ended = True, False
        self.ep_return, self.ep_steps = 0.0, 0
        self.lives = self.ale.lives()
        return noops

    def step(self, action: int, prev: np.ndarray, last: np.ndarray) -> tuple[float, bool, bool]:
        """One agent step; fills `prev`/`last` with the last two screens."""
        ale, skip = self.ale, self.skip
        reward = 0.0
        over = False
        for k in range(skip):
            reward += ale.act(action)
            over = ale.game_over(with_truncation=False)
            if over and k < skip - 1:
                # ended early: the observation is the final screen itself
                ale.getScreenGrayscale(last)
                prev[...] = last
                break
            if k == skip - 2:
                ale.getScreenGrayscale(prev)
            elif k == skip - 1:
                ale.getScreenGrayscale(last)
        if not self.pool:
            prev[...] = last
        self.ep_return += reward
        self.ep_steps += 1
        lives = ale.lives()
        life_lost = lives < self.lives
        self.lives = lives
        terminal = over or (self.life_loss_ends and life_lost)
        limit = self.limit
        truncated = (not over) and limit > 0 and ale.getEpisodeFrameNumber() >= limit
        self.ended = over or truncated
        return reward, terminal, truncated


class EnvBatch:
    """N environments sharing preallocated screen buffers and one batched resize."""

    def __init__(self, roms_: list[str], rom_dir: str | None, cfg: dict):
        self.cfg = cfg
        self.envs = [Env(r, rom_dir, cfg) for r in roms_]
        n = len(self.envs)
        self.obs = np.zeros((n, cfg["height"], cfg["width"]), np.uint8)
        # Screens differ by game (Carnival is 214 rows): one buffer pair and one
        # resizer per screen shape; prev[i]/last[i] are views into them.
        self.groups = []
        self.prev: list[np.ndarray] = [None] * n  # type: ignore[list-item]
        self.last: list[np.ndarray] = [None] * n  # type: ignore[list-item]
        for shape in sorted({e.shape for e in self.envs}):
            idx = [i for i, e in enumerate(self.envs) if e.shape == shape]
            prev = np.zeros((len(idx),) + shape, np.uint8)
            last = np.zeros((len(idx),) + shape, np.uint8)
            for j, i in enumerate(idx):
                self.prev[i], self.last[i] = prev[j], last[j]
            sel = slice(idx[0], idx[-1] + 1) if idx == list(range(idx[0], idx[-1] + 1)) else idx
            try:
                resizer = AreaResizer(shape[0], shape[1], cfg["height"], cfg["width"])
            except ValueError as e:
                raise UserError(f"observation size: {e}") from None
            self.groups.append((sel, prev, last, resizer))

    def describe(self) -> list[dict]:
        return [{"rom": e.rom, "md5": e.md5, "romPath": str(e.path), "minimalActions": e.minimal}
                for e in self.envs]

    def _observe_into(self) -> np.ndarray:
        for sel, prev, last, resizer in self.groups:
            np.maximum(prev, last, out=prev)
            if isinstance(sel, slice):
                resizer(prev, out=self.obs[sel])
            else:
                self.obs[sel] = resizer(prev)
        return self.obs

    def _reset_one(self, i: int, seed: int | None) -> int:
        noops = self.envs[i].reset(seed, self.last[i])
        self.prev[i][...] = self.last[i]
        return noops

    def reset(self, seeds: list) -> dict:
        n = len(self.envs)
        if len(seeds) != n:
            raise UserError(f"reset: expected {n} seeds, got {len(seeds)}")
        for i, s in enumerate(seeds):
            if s is None and not self.envs[i].started:
                raise UserError(f"reset: environment {i} has never been reset; give a seed")
        keep = [i for i, s in enumerate(seeds) if s is None]
        kept = self.obs[keep].copy()  # untouched environments keep their observation
        noops = np.full(n, -1, np.int32)
        for i, s in enumerate(seeds):
            if s is not None:
                noops[i] = self._reset_one(i, int(s))
        self._observe_into()
        self.obs[keep] = kept
        lives = np.array([e.lives for e in self.envs], np.int32)
        return {"obs": self.obs.tobytes(), "lives": lives.tobytes(), "noops": noops.tobytes()}

    def step(self, actions: bytes) -> dict:
        n = len(self.envs)
        acts = np.frombuffer(actions, np.uint8)
        if acts.shape[0] != n:
            raise UserError(f"step: expected {n} actions, got {acts.shape[0]}")
        rewards = np.zeros(n, np.float32)
        terms = np.zeros(n, np.uint8)
        truncs = np.zeros(n, np.uint8)
        ep_ret = np.full(n, np.nan, np.float64)
        ep_len = np.zeros(n, np.int32)
        ep_frames = np.zeros(n, np.int32)
        auto = bool(self.cfg["autoReset"])
        # validate everything first: a refused step must not step any environment
        for i, env in enumerate(self.envs):
            if acts[i] > 17:
                raise UserError(f"step: action {acts[i]} for environment {i} is outside 0..17")
            if not env.started or env.ended:
                raise UserError(f"step: environment {i} needs reset() first")
        for i, env in enumerate(self.envs):
            a = int(acts[i])
            r, term, trunc = env.step(a, self.prev[i], self.last[i])
            rewards[i], terms[i], truncs[i] = r, term, trunc
            if env.ended:
                ep_ret[i], ep_len[i] = env.ep_return, env.ep_steps
                ep_frames[i] = env.ale.getEpisodeFrameNumber()
                if auto:
                    self._reset_one(i, None)
        lives = np.array([e.lives for e in self.envs], np.int32)
        return {
            "obs": self._observe_into().tobytes(),
            "rewards": rewards.tobytes(),
            "terminals": terms.tobytes(),
            "truncations": truncs.tobytes(),
            "lives": lives.tobytes(),
            "episodeReturns": ep_ret.tobytes(),
            "episodeLengths": ep_len.tobytes(),
            "episodeFrames": ep_frames.tobytes(),
        }
