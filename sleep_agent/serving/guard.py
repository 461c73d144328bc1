"""Run a server so that it dies with the process that started it.

``python -m sleep_agent.serving.guard -- COMMAND...`` runs COMMAND in the guard's own process group
and ends the whole group once the guard's parent is gone, however it went: SIGTERM (which skips
Python's ``atexit``), SIGINT or SIGKILL (which skips everything). Without it, a vLLM server spawned
by a process killed by ``timeout`` stayed up, orphaned, with gigabytes resident and busy cores.

Written by hand because the kernel's parent-death signal (``PR_SET_PDEATHSIG``) fires when the
spawning *thread* exits, and the server is often started from a worker thread that ends first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5
GRACE_S = 20.0


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python -m sleep_agent.serving.guard -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1 :]
    owner = os.getppid()
    child = subprocess.Popen(command)  # same process group as the guard: one signal reaches both
    stopping = False

    def stop(signum: int, frame: object) -> None:  # noqa: ARG001
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while child.poll() is None and not stopping and os.getppid() == owner:
        time.sleep(POLL_S)
    if child.poll() is None:
        end_group(child)
    return child.returncode if child.returncode is not None else 0


def end_group(child: subprocess.Popen) -> None:
    """SIGTERM to the whole group (the server and the engine processes it started), then SIGKILL."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the guard stays to finish the job
    group = os.getpgid(0)
    for sig, wait_s in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait_s)
            # the server's own children, should any linger; the guard (in the group) ends with them
            os.killpg(group, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
