"""What does not change between sleeps, computed once and kept on disk.

The base model's answers to the anchor prompts and its perplexity on the reference text depend only
on the model and the prompts: every sleep of every namespace on that model shares them. Each value
is a JSON file named by a hash of what it depends on, written whole (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
import json
import logging
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
    if directory is None:
        return compute()
    path = memo_path(directory, kind, *parts)
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:  # a damaged file is recomputed, never trusted
            log.warning("recomputing %s: %s is unreadable (%s)", kind, path, e)
    value = compute()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(value))
        scratch.replace(path)
    except OSError as e:  # a read-only cache costs time, not correctness
        log.warning("could not keep %s in %s: %s", kind, directory, e)
    return value
