"""Which served name a request goes to, and when an old name may be unloaded.

Every adapter version is served under its own name; a swap points new requests at the new name
and unloads the old one only once the requests already sent to it have finished. Reloading a
name in place is avoided on purpose (stale prefix-cache reuse, silently old weights).

Each namespace has its own active name, so one server can hold several users' adapters and a
user's requests only ever go to that user's adapter (or the base model). ``active`` is the last
name activated, for a server with a single user.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


def namespace_of(name: str) -> str:
    """``alice`` for ``alice@v3``; names without a namespace share the ``""`` one."""
    return name.split("@", 1)[0] if "@" in name else ""


class AdapterRouter:
    """Thread-safe pointers to the active served name of each namespace, with in-flight counts per name."""

    def __init__(self, base_name: str) -> None:
        self.base_name = base_name
        self._active: str | None = None
        self._active_by_namespace: dict[str, str] = {}
        self._inflight: Counter[str] = Counter()
        self._changed = threading.Condition()

    @property
    def active(self) -> str | None:
        """The adapter activated last (any namespace), or None when the base model answers."""
        return self._active

    def active_for(self, namespace: str | None) -> str | None:
        """The active adapter of ``namespace`` (None: the one activated last)."""
        if namespace is None:
            return self._active
        return self._active_by_namespace.get(namespace)

    def active_names(self) -> set[str]:
        with self._changed:
            return set(self._active_by_namespace.values())

    @property
    def target(self) -> str:
        """The served model name new requests go to."""
        return self.target_for(None)

    def target_for(self, namespace: str | None) -> str:
        return self.active_for(namespace) or self.base_name

    def set_active(self, name: str | None, namespace: str | None = None) -> str | None:
        """Point new requests of ``namespace`` (default: the name's) at ``name``; return its previous one.

        ``set_active(None)`` with no namespace switches every namespace back to the base model.
        """
        with self._changed:
            if name is None and namespace is None:
                previous, self._active = self._active, None
                self._active_by_namespace.clear()
                return previous
            key = namespace if namespace is not None else namespace_of(name or "")
            previous = self._active_by_namespace.pop(key, None)
            if name is not None:
                self._active_by_namespace[key] = name
            self._active = name
            return previous

    def inflight(self, name: str) -> int:
        with self._changed:
            return self._inflight[name]

    @contextmanager
    def request(self, name: str | None = None, namespace: str | None = None) -> Iterator[str]:
        """Count one request on ``name`` (default: the namespace's active target) while the block runs."""
        with self._changed:
            target = name or self.target_for(namespace)
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
