"""Versioned adapters of a namespace: one directory per version, a manifest beside the weights.

    <home>/adapters/<namespace>/v1/           adapter_config.json, adapter_model.safetensors, manifest.json
    <home>/adapters/<namespace>/v2/
    <home>/adapters/<namespace>/current.json  {"version": 2}   (written last, atomically)

Publishing has two steps. ``stage`` puts the weights at their final path without a manifest, so
the serving backend can load the candidate from a path that will not move (vLLM reads adapter files
again whenever it re-caches one). ``commit`` writes the manifest, which is what makes a version
exist, then moves ``current.json``; ``discard`` removes a refused candidate. Every file appears
whole (written under a temporary name, flushed to disk, renamed, and the rename flushed), so a
crash or a power loss at any point leaves the previous version current, and ``clean`` removes what
a crash left staged. Versions are never rewritten: a rollback moves the pointer.
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
from sleep_agent.formats import FORMAT, FormatError, check_format
from sleep_agent.serving.base import adapter_name, check_adapter_dir

_VERSION_DIR = re.compile(r"^v(\d+)$")
_POINTER = "current.json"
_RETIRED = "retired.json"
_PINNED = "pinned"


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
    trigger: str = "sleep"  # "forget": a rebuild without erased memories
    forgotten: list[str] = field(default_factory=list)
    format: int = FORMAT

    @property
    def served_name(self) -> str:
        return adapter_name(self.namespace, self.version)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / "manifest.json"
        try:
            data = json.loads(path.read_text())
            data["format"] = check_format(data.get("format"), str(path))
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}  # newer keys are dropped
            return cls(**known)
        except FormatError:  # a newer release wrote it: its own message says to upgrade
            raise
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise AdapterLoadError(
                f"{path} cannot be read ({type(e).__name__}: {e}); run `sleep-agent doctor` to see what "
                "to do with that version"
            ) from None


class AdapterRegistry:
    """The published versions of one namespace and which one is current."""

    def __init__(self, home: str | Path, namespace: str) -> None:
        self.namespace = namespace
        self.root = Path(home) / "adapters" / namespace
        self.root.mkdir(parents=True, exist_ok=True)

    def versions(self) -> list[int]:
        """Published versions that can be served, oldest first: not retired, not damaged, not temporary."""
        return [v for v in self.history() if not self.retired(v) and not self.damage(v)]

    def unerased(self, version: int) -> list[Path]:
        """Files a retired version still holds besides its record: a retire cut short by a kill."""
        if not self.retired(version):
            return []
        return sorted(
            p for p in (self.root / f"v{version}").iterdir() if p.name not in ("manifest.json", _RETIRED)
        )

    def retired(self, version: int) -> bool:
        """Its weights were deleted for good (it held forgotten memories); the manifest stays as a record."""
        return (self.root / f"v{version}" / _RETIRED).exists()

    def damage(self, version: int) -> str | None:
        """What makes a published version unservable (a manifest or weights lost or cut short), if anything."""
        directory = self.root / f"v{version}"
        try:
            Manifest.read(directory)
            check_adapter_dir(directory)
            weights = directory / "adapter_model.safetensors"
            if weights.is_file():
                _check_safetensors(weights)
        except (AdapterLoadError, FormatError) as e:
            return str(e)
        return None

    def history(self) -> list[int]:
        """Every version ever published, retired ones included (their manifests stay as a record)."""
        found = []
        for entry in self.root.iterdir():
            match = _VERSION_DIR.match(entry.name)
            if match and entry.is_dir() and (entry / "manifest.json").is_file():
                found.append(int(match.group(1)))
        return sorted(found)

    def retire(self, version: int, reason: str) -> None:
        """Delete a version's weights for good (it holds forgotten memories, or it was pruned); its
        manifest stays.

        A retired version can never be served or rolled back to again.
        """
        directory = self.root / f"v{version}"
        if not (directory / "manifest.json").is_file():
            raise AdapterLoadError(f"{self.namespace} has no published version {version}")
        _write_atomically(directory / _RETIRED, json.dumps({"at": time.time(), "reason": reason}))
        self.erase(version)

    def erase(self, version: int) -> None:
        """Delete what a retired version still holds besides its record (all of it after ``retire``;
        what a kill left when ``retire`` was cut short)."""
        for item in self.unerased(version):
            shutil.rmtree(item) if item.is_dir() else item.unlink()

    def pin(self, version: int, pinned: bool = True) -> None:
        """Keep a version through pruning (``pinned=False`` lets it go again)."""
        marker = self.path(version) / _PINNED
        if pinned:
            _write_atomically(marker, "")
        else:
            marker.unlink(missing_ok=True)

    def pinned(self) -> list[int]:
        return [v for v in self.versions() if (self.root / f"v{v}" / _PINNED).exists()]

    def prune(self, keep: int) -> list[int]:
        """Retire servable versions beyond the newest ``keep``, except the current and pinned ones."""
        if keep < 1:
            raise ValueError(f"keep={keep}: at least the newest version must stay")
        spared = {self.current(), *self.pinned()}
        old = self.versions()[:-keep]
        pruned = [v for v in old if v not in spared]
        for version in pruned:
            self.retire(version, f"pruned: only the newest {keep} versions are kept")
        return pruned

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def holders(self, episode_ids: set[str] | list[str]) -> dict[int, list[str]]:
        """Servable versions whose weights learned any of ``episode_ids``, with the ones each holds."""
        wanted = set(episode_ids)
        if not wanted:
            return {}
        found = {v: sorted(wanted & set(self.manifest(v).episodes)) for v in self.versions()}
        return {v: ids for v, ids in found.items() if ids}

    def clear_current(self) -> None:
        """Serve the base model: no version is current (every memory was forgotten)."""
        (self.root / _POINTER).unlink(missing_ok=True)

    def path(self, version: int) -> Path:
        directory = self.root / f"v{version}"
        if (directory / _RETIRED).exists():
            raise AdapterLoadError(
                f"v{version} of {self.namespace} was retired (it held forgotten memories); "
                f"published: {self.versions() or 'none'}"
            )
        if not (directory / "manifest.json").is_file():
            raise AdapterLoadError(
                f"{self.namespace} has no published version {version}; published: {self.versions() or 'none'}"
            )
        return directory

    def manifest(self, version: int) -> Manifest:
        """The manifest of any version ever published (retired ones included)."""
        directory = self.root / f"v{version}"
        if not (directory / "manifest.json").is_file():
            self.path(version)  # raises, naming the published versions
        return Manifest.read(directory)

    def current(self) -> int | None:
        """The version being served, or None before the first publish."""
        pointer = self.root / _POINTER
        if not pointer.is_file():
            return None
        try:
            data = json.loads(pointer.read_text())
            version = int(data["version"])
        except (ValueError, KeyError, TypeError) as e:
            raise AdapterLoadError(
                f"{pointer} cannot be read ({type(e).__name__}: {e}); run `sleep-agent doctor --repair` "
                "to point it at the newest published version"
            ) from None
        check_format(data.get("format"), str(pointer))
        return version if version in self.versions() else None

    def next_version(self) -> int:
        staged = [int(m.group(1)) for p in self.root.iterdir() if (m := _VERSION_DIR.match(p.name))]
        return max([*self.history(), *staged], default=0) + 1

    def stage(self, candidate: str | Path, version: int) -> Path:
        """Place a trained adapter at ``v<version>/`` without a manifest: loadable, not yet published."""
        candidate = check_adapter_dir(candidate)
        target = self.root / f"v{version}"
        if target.exists():
            raise AdapterLoadError(
                f"{target} exists: versions are never rewritten; stage as {self.next_version()}"
            )
        staging = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=self.root))
        try:
            for item in candidate.iterdir():
                if item.is_file() and item.name != "manifest.json":
                    shutil.copy2(item, staging / item.name)
                    _fsync(staging / item.name)
            _fsync(staging)
            os.replace(staging, target)  # the weights appear whole or not at all
            _fsync(self.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def commit(self, manifest: Manifest, *, make_current: bool = True) -> Path:
        """Publish a staged version: its manifest appears (atomically), then the pointer moves."""
        if manifest.namespace != self.namespace:
            raise ValueError(f"manifest is for namespace {manifest.namespace!r}, not {self.namespace!r}")
        target = self.root / f"v{manifest.version}"
        if (target / "manifest.json").exists():
            raise AdapterLoadError(f"v{manifest.version} of {self.namespace} is already published")
        check_adapter_dir(target)  # raises when nothing was staged there
        _write_atomically(target / "manifest.json", manifest.to_json())
        if make_current:
            self.set_current(manifest.version)
        return target

    def discard(self, version: int) -> None:
        """Remove a staged candidate the gate refused (a published version is never removed)."""
        target = self.root / f"v{version}"
        if (target / "manifest.json").exists():
            raise AdapterLoadError(f"v{version} of {self.namespace} is published; roll back instead")
        shutil.rmtree(target, ignore_errors=True)

    def publish(self, candidate: str | Path, manifest: Manifest, *, make_current: bool = True) -> Path:
        """``stage`` then ``commit``: copy a trained adapter in as ``manifest.version``."""
        if manifest.namespace != self.namespace:
            raise ValueError(f"manifest is for namespace {manifest.namespace!r}, not {self.namespace!r}")
        self.stage(candidate, manifest.version)
        return self.commit(manifest, make_current=make_current)

    def set_current(self, version: int) -> None:
        self.path(version)  # raises when it is not a published version
        if damage := self.damage(version):
            raise AdapterLoadError(f"v{version} of {self.namespace} cannot be served: {damage}")
        pointer = {"version": version, "at": time.time(), "format": FORMAT}
        _write_atomically(self.root / _POINTER, json.dumps(pointer))

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

    def leftovers(self) -> list[Path]:
        """What a crash left: temporary files and staged versions never committed."""
        found = [p for p in self.root.iterdir() if p.name.startswith((".v", ".current-", ".manifest-"))]
        found += [
            p
            for p in self.root.iterdir()
            if _VERSION_DIR.match(p.name) and p.is_dir() and not (p / "manifest.json").exists()
        ]
        return sorted(found)

    def clean(self) -> int:
        """Remove the leftovers; only safe while no sleep of this namespace runs (its lock held)."""
        leftovers = self.leftovers()
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        return len(leftovers)


def _write_atomically(path: Path, text: str) -> None:
    """Write, flush to disk, rename over ``path``, flush the directory: whole after a power loss too."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_safetensors(path: Path) -> None:
    """The header must parse and cover the whole file: a cut-short copy fails here (nothing is loaded)."""
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:  # a light install without the training stack: an empty file is still caught
        if path.stat().st_size < 8:
            raise AdapterLoadError(f"{path} is cut short: {path.stat().st_size} bytes") from None
        return
    try:
        with safe_open(str(path), "np"):
            pass
    except (OSError, SafetensorError) as e:
        raise AdapterLoadError(f"{path} cannot be read as safetensors: {e}") from None


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries (a rename is durable only then), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
