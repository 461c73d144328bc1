"""One sleep per namespace at a time, across threads, memories and processes.

Two sleeps of one namespace would race for the next version number, and the second's clean-up of
leftovers would delete the first's staged candidate while it is being gated. The lock is a file
lock (``flock`` through the filelock library) under ``<home>/locks``: the operating system frees it
when its holder dies, so a killed sleep never leaves the namespace locked. Sleeps of different
namespaces take different files and run side by side.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from sleep_agent.errors import NamespaceBusyError


class NamespaceLock:
    """``acquire()`` without waiting or raise :class:`NamespaceBusyError` naming the holder.

    Not tied to a thread: a background sleep takes the lock in the caller's thread (so that the
    caller learns at once that it is busy) and releases it in the sleeping thread.
    """

    def __init__(self, home: Path, namespace: str) -> None:
        self.namespace = namespace
        self.dir = Path(home) / "locks"
        self.path = self.dir / f"{namespace}.lock"
        self.holder_path = self.dir / f"{namespace}.holder"
        self._lock = FileLock(self.path, thread_local=False, is_singleton=False)

    def acquire(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise NamespaceBusyError(
                f"namespace {self.namespace!r} is being slept by {self.holder()}; wait for that sleep to "
                "finish (a killed holder frees the lock by itself)"
            ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        self.holder_path.write_text(json.dumps(holder))

    def release(self) -> None:
        self.holder_path.unlink(missing_ok=True)
        self._lock.release()

    @property
    def locked(self) -> bool:
        return self._lock.is_locked

    def holder(self) -> str:
        """Who holds the lock, as far as its holder file says (best effort: it is written after locking)."""
        try:
            info = json.loads(self.holder_path.read_text())
        except (OSError, ValueError):
            return "another process"
        since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
        return f"pid {info.get('pid')} on {info.get('host')} (since {since})"

    def __enter__(self) -> NamespaceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
