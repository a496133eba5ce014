"""ALE bridge process: hosts a batch of Atari environments for a Deno parent.

Wire format (both directions): a 4-byte little-endian length, then one msgpack map.
The bridge speaks first with {"type": "hello", "protocol": PROTOCOL, ...}; then each
request {"op": ...} gets exactly one reply {"ok": true, ...} or
{"ok": false, "error": str, "user": bool}.  Arrays travel as raw bytes (msgpack bin).

Usage: python ale_bridge.py --log PATH   (stderr and stray stdout go to PATH)
"""

from __future__ import annotations

import os
import sys

PROTOCOL = 1


def _redirect_output(log_path: str) -> int:
    """Keep a private fd for the protocol and send fd 1 and 2 to the log file.

    ALE's C++ code and any stray print() write to fd 1/2; they must never corrupt
    the framed stream, and the parent reads the log's tail when something breaks.
    """
    proto_fd = os.dup(1)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    return proto_fd


def _read_exact(f, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            return None
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--log":
        proto_fd = _redirect_output(sys.argv[2])
    else:
        proto_fd = os.dup(1)
        os.dup2(2, 1)
    out = os.fdopen(proto_fd, "wb", buffering=0)
    try:  # a 1 MiB pipe takes a whole observation frame in one write (Linux only)
        import fcntl
        fcntl.fcntl(proto_fd, 1031, 1 << 20)  # F_SETPIPE_SZ
    except (ImportError, OSError):
        pass
    # Ctrl-C reaches the whole process group; the parent decides when we stop
    # (it closes our stdin), so a collector can still finish its last request.
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inp = sys.stdin.buffer

    import msgpack
    import numpy as np
    import ale_py

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from ale_batch import EnvBatch, UserError

    def send(msg: dict) -> None:
        data = msgpack.packb(msg, use_bin_type=True)
        out.write(len(data).to_bytes(4, "little") + data)

    send({"type": "hello", "protocol": PROTOCOL, "pid": os.getpid(),
          "ale": ale_py.__version__, "numpy": np.__version__, "python": sys.version.split()[0]})

    batch = None
    while True:
        head = _read_exact(inp, 4)
        if head is None:
            return 0  # parent closed stdin (closed or died): leave quietly
        body = _read_exact(inp, int.from_bytes(head, "little"))
        if body is None:
            return 0
        req = msgpack.unpackb(body, raw=False)
        op = req.get("op")
        try:
            if op == "init":
                batch = EnvBatch(req["roms"], req.get("romDir"), req["config"])
                send({"ok": True, "envs": batch.describe()})
            elif op == "reset":
                send({"ok": True, **_need(batch).reset(req["seeds"])})
            elif op == "step":
                send({"ok": True, **_need(batch).step(req["actions"])})
            elif op == "sleep":  # test hook: simulate a hung bridge
                import time
                print(f"bridge: sleeping {req['seconds']} s", file=sys.stderr, flush=True)
                time.sleep(float(req["seconds"]))
                send({"ok": True})
            elif op == "crash":  # test hook: simulate a dying bridge
                print("bridge: crashing on request", file=sys.stderr, flush=True)
                os._exit(3)
            elif op == "close":
                send({"ok": True})
                return 0
            else:
                raise UserError(f"unknown op {op!r}")
        except UserError as e:
            send({"ok": False, "error": str(e), "user": True})
        except Exception as e:  # report, keep serving; the parent decides
            import traceback
            traceback.print_exc()
            sys.stderr.flush()
            send({"ok": False, "error": f"{type(e).__name__}: {e}", "user": False})


def _need(batch):
    from ale_batch import UserError
    if batch is None:
        raise UserError("bridge not initialised")
    return batch


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(0)
