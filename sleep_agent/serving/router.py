"""Which served name a request goes to, and when an old name may be unloaded.

Every adapter version is served under its own name; a swap points new requests at the new name
and unloads the old one only once the requests already sent to it have finished. Reloading a
name in place is avoided on purpose (stale prefix-cache reuse, silently old weights).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class AdapterRouter:
    """Thread-safe pointer to the active served name, with in-flight counts per name."""

    def __init__(self, base_name: str) -> None:
        self.base_name = base_name
        self._active: str | None = None
        self._inflight: Counter[str] = Counter()
        self._changed = threading.Condition()

    @property
    def active(self) -> str | None:
        """The active adapter name, or None when the base model answers."""
        return self._active

    @property
    def target(self) -> str:
        """The served model name new requests go to."""
        return self._active or self.base_name

    def set_active(self, name: str | None) -> str | None:
        """Point new requests at ``name``; return the previously active adapter."""
        with self._changed:
            previous, self._active = self._active, name
            return previous

    def inflight(self, name: str) -> int:
        with self._changed:
            return self._inflight[name]

    @contextmanager
    def request(self, name: str | None = None) -> Iterator[str]:
        """Count one request on ``name`` (default: the active target) while the block runs."""
        with self._changed:
            target = name or self.target
            self._inflight[target] += 1
        try:
            yield target
        finally:
            with self._changed:
                self._inflight[target] -= 1
                if self._inflight[target] <= 0:
                    del self._inflight[target]
                self._changed.notify_all()

    def wait_idle(self, name: str, timeout: float) -> bool:
        """Block until no request is in flight on ``name``; False if ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._inflight[name] > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            self._inflight.pop(name, None)
            return True
