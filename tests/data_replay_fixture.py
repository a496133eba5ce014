"""Write a tiny DQN-Replay directory exactly as Dopamine does, plus the expected episodes.

Usage: python3 data_replay_fixture.py OUT_DIR VARIANT EXPECTED_JSON

Simulates Dopamine's OutOfGraphReplayBuffer (circular, capacity N, 3 zero padding rows at
each episode start, checkpoints = snapshots of the arrays + add_count written with np.save
into gzip files) and records, from the ground truth it generated, which episodes a reader
must recover from each checkpoint: in time order, dropping the oldest episode of a wrapped
buffer (its start was overwritten), keeping the unfinished newest one as truncated.
"""
import gzip, json, os, sys, zlib
import numpy as np

GAME_MINIMAL = [0, 1, 3, 4, 11, 12]  # Pong
N = 60
RUNS = {"1": [45, 110, 170], "2": [60, 131, 199], "3": [52, 118]}  # run 3 lacks ckpt 2


def save(path, arr):
    with gzip.GzipFile(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


class Buffer:
    def __init__(self):
        self.obs = np.zeros((N, 84, 84), np.uint8)
        self.act = np.zeros(N, np.int32)
        self.rew = np.zeros(N, np.float32)
        self.term = np.zeros(N, np.uint8)
        self.owner = [None] * N  # (uid, t) real row, (uid, -1) padding
        self.add_count = 0

    def _put(self, o, a, r, t, owner):
        c = self.add_count % N
        self.obs[c], self.act[c], self.rew[c], self.term[c] = o, a, r, t
        self.owner[c] = owner
        self.add_count += 1


def main():
    out, variant, expected_path = sys.argv[1], sys.argv[2], sys.argv[3]
    rng = np.random.default_rng(1234)
    expected = []
    uid = 0
    for run, save_points in RUNS.items():
        d = os.path.join(out, "Pong", run, "replay_logs")
        os.makedirs(d, exist_ok=True)
        buf = Buffer()
        episodes = {}  # uid -> dict of arrays
        saves = list(save_points)
        ckpt = 0

        def maybe_save():
            nonlocal ckpt
            if saves and buf.add_count == saves[0]:
                saves.pop(0)
                write_ckpt(d, ckpt, buf, variant, run)
                expected.extend(expect(buf, episodes, run, ckpt))
                ckpt += 1

        while saves:
            uid += 1
            T = int(rng.integers(3, 14))
            ep = {
                "frames": rng.integers(1, 256, (T, 84, 84), dtype=np.uint8),
                "actions": rng.integers(0, len(GAME_MINIMAL), T).astype(np.int32),
                "rewards": rng.choice(np.array([-1, 0, 0, 1], np.float32), T),
                "T": T,
            }
            episodes[uid] = ep
            for _ in range(3):  # Dopamine: padding when empty or after a terminal
                if not saves:
                    break
                buf._put(np.zeros((84, 84), np.uint8), 0, 0.0, 0, (uid, -1))
                maybe_save()
            for t in range(T):
                if not saves:
                    break
                buf._put(ep["frames"][t], ep["actions"][t], ep["rewards"][t], int(t == T - 1), (uid, t))
                maybe_save()
    with open(expected_path, "w") as f:
        json.dump(expected, f)


def write_ckpt(d, i, buf, variant, run):
    obs, act = buf.obs.copy(), buf.act.copy()
    bad = run == "1" and i == 1
    if bad and variant == "dtype":
        act = act.astype(np.float32)
    if bad and variant == "shape":
        obs = obs[:, :, :83].copy()
    if bad and variant == "fortran":
        obs = np.asfortranarray(obs)
    if bad and variant == "mixed":  # actions of an 18-action game
        act = np.random.default_rng(7).integers(0, 18, N).astype(np.int32)
    save(os.path.join(d, f"$store$_observation_ckpt.{i}.gz"), obs)
    save(os.path.join(d, f"$store$_action_ckpt.{i}.gz"), act)
    save(os.path.join(d, f"$store$_reward_ckpt.{i}.gz"), buf.rew.copy())
    save(os.path.join(d, f"$store$_terminal_ckpt.{i}.gz"), buf.term.copy())
    save(os.path.join(d, f"add_count_ckpt.{i}.gz"), np.array(buf.add_count, np.int64))
    lo = buf.add_count % N
    save(os.path.join(d, f"invalid_range_ckpt.{i}.gz"), np.arange(lo - 1, lo + 3) % N)


def expect(buf, episodes, run, ckpt):
    wrapped = buf.add_count > N
    cursor = buf.add_count % N if wrapped else 0
    V = min(buf.add_count, N)
    order = [buf.owner[(cursor + p) % N] for p in range(V)]
    uids = []
    for u, _ in order:
        if not uids or uids[-1] != u:
            uids.append(u)
    if wrapped:
        uids = uids[1:]  # the oldest episode's start was overwritten
    res = []
    for u in uids:
        ts = [t for (v, t) in order if v == u and t >= 0]
        if not ts:
            continue  # cut inside its padding
        ep = episodes[u]
        assert ts == list(range(len(ts)))
        T = len(ts)
        done = T == ep["T"]
        res.append({
            "run": run, "ckpt": ckpt, "uid": u, "length": T, "truncated": not done,
            "actions": [GAME_MINIMAL[a] for a in ep["actions"][:T]],
            "rewards": ep["rewards"][:T].tolist(),
            "terminals": [int(done and t == T - 1) for t in range(T)],
            "crc": zlib.crc32(np.ascontiguousarray(ep["frames"][:T]).tobytes()),
        })
    return res


if __name__ == "__main__":
    main()
