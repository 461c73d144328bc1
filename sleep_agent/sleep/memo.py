"""What does not change between sleeps, computed once and kept on disk.

The base model's answers to the anchor prompts and its perplexity on the reference text depend only
on the model and the prompts: every sleep of every namespace on that model shares them. A version's
scores on a behaviour check's tasks depend only on its weights and the tasks (greedy play). Each value
is a JSON file named by a hash of what it depends on, written whole (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def memo_path(directory: Path, kind: str, *parts: Any) -> Path:
    key = hashlib.sha256(json.dumps([kind, *parts], sort_keys=True, default=str).encode()).hexdigest()[:24]
    return directory / f"{kind}-{key}.json"


def remembered(directory: Path | None, kind: str, parts: list[Any], compute: Callable[[], T]) -> T:
    """``compute()``'s value, read from ``directory`` when an earlier run stored it (None: no disk)."""
    known = stored(directory, kind, parts)
    if known is not None:
        return known
    value = compute()
    keep(directory, kind, parts, value)
    return value


def stored(directory: Path | None, kind: str, parts: list[Any]) -> Any:
    """The value an earlier run kept under ``parts``, or None."""
    if directory is None:
        return None
    path = memo_path(directory, kind, *parts)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:  # a damaged file is recomputed, never trusted
        log.warning("recomputing %s: %s is unreadable (%s)", kind, path, e)
        return None


def keep(directory: Path | None, kind: str, parts: list[Any], value: Any) -> None:
    """Store ``value`` under ``parts``, whole or not at all (a read-only cache costs time, not correctness)."""
    if directory is None:
        return
    path = memo_path(directory, kind, *parts)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # a name of its own: sleeps of two namespaces may keep the same base-model value at once
        scratch = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
        scratch.write_text(json.dumps(value))
        scratch.replace(path)
    except OSError as e:
        log.warning("could not keep %s in %s: %s", kind, directory, e)
