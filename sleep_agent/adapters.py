"""Versioned adapters of a namespace: one directory per version, a manifest beside the weights.

    <home>/adapters/<namespace>/v1/           adapter_config.json, adapter_model.safetensors, manifest.json
    <home>/adapters/<namespace>/v2/
    <home>/adapters/<namespace>/current.json  {"version": 2}   (written last, atomically)

A version directory appears only complete (it is written under a temporary name, then renamed),
and ``current.json`` changes only after the directory is in place, so a crash at any point leaves
the previous version current. Versions are never rewritten: a rollback moves the pointer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sleep_agent.errors import AdapterLoadError
from sleep_agent.serving.base import adapter_name, check_adapter_dir

_VERSION_DIR = re.compile(r"^v(\d+)$")
_POINTER = "current.json"


@dataclass
class Manifest:
    """What a version is made of and why it was accepted."""

    namespace: str
    version: int
    parent: int | None
    episodes: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)

    @property
    def served_name(self) -> str:
        return adapter_name(self.namespace, self.version)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        data = json.loads((directory / "manifest.json").read_text())
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}  # newer keys are dropped
        return cls(**known)


class AdapterRegistry:
    """The published versions of one namespace and which one is current."""

    def __init__(self, home: str | Path, namespace: str) -> None:
        self.namespace = namespace
        self.root = Path(home) / "adapters" / namespace
        self.root.mkdir(parents=True, exist_ok=True)

    def versions(self) -> list[int]:
        """Published versions, oldest first (temporary and foreign directories are ignored)."""
        found = []
        for entry in self.root.iterdir():
            match = _VERSION_DIR.match(entry.name)
            if match and entry.is_dir() and (entry / "manifest.json").is_file():
                found.append(int(match.group(1)))
        return sorted(found)

    def path(self, version: int) -> Path:
        directory = self.root / f"v{version}"
        if not (directory / "manifest.json").is_file():
            raise AdapterLoadError(
                f"{self.namespace} has no published version {version}; published: {self.versions() or 'none'}"
            )
        return directory

    def manifest(self, version: int) -> Manifest:
        return Manifest.read(self.path(version))

    def current(self) -> int | None:
        """The version being served, or None before the first publish."""
        pointer = self.root / _POINTER
        if not pointer.is_file():
            return None
        version = int(json.loads(pointer.read_text())["version"])
        return version if version in self.versions() else None

    def next_version(self) -> int:
        return max(self.versions(), default=0) + 1

    def publish(self, candidate: str | Path, manifest: Manifest, *, make_current: bool = True) -> Path:
        """Copy a trained adapter in as ``manifest.version``, then (by default) point current at it."""
        candidate = check_adapter_dir(candidate)
        if manifest.namespace != self.namespace:
            raise ValueError(f"manifest is for namespace {manifest.namespace!r}, not {self.namespace!r}")
        target = self.root / f"v{manifest.version}"
        if target.exists():
            raise AdapterLoadError(
                f"{target} exists: versions are never rewritten; publish as {self.next_version()}"
            )
        staging = Path(tempfile.mkdtemp(prefix=f".v{manifest.version}-", dir=self.root))
        try:
            for item in candidate.iterdir():
                if item.is_file() and item.name != "manifest.json":
                    shutil.copy2(item, staging / item.name)
            (staging / "manifest.json").write_text(manifest.to_json())
            os.replace(staging, target)  # the version appears whole or not at all
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if make_current:
            self.set_current(manifest.version)
        return target

    def set_current(self, version: int) -> None:
        self.path(version)  # raises when it is not a published version
        fd, tmp = tempfile.mkstemp(prefix=".current-", dir=self.root)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": version, "at": time.time()}, f)
        os.replace(tmp, self.root / _POINTER)

    def rollback(self, to: int | None = None) -> int:
        """Point current at ``to`` (default: the version before the current one)."""
        current = self.current()
        if to is None:
            older = [v for v in self.versions() if current is None or v < current]
            if not older:
                raise AdapterLoadError(f"{self.namespace} has no version before v{current} to roll back to")
            to = older[-1]
        self.set_current(to)
        return to

    def clean(self) -> int:
        """Remove staging directories a crash left behind; returns how many."""
        leftovers = [p for p in self.root.iterdir() if p.name.startswith((".v", ".current-"))]
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        return len(leftovers)
