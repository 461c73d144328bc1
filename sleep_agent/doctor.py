"""Find and repair what a killed process leaves behind: ``sleep-agent doctor [--repair]``.

Every write of a sleep is atomic (files appear whole, the manifest before the pointer, the buffer
marked last), so a kill never corrupts; it can leave work half done. Per namespace, under its
sleep lock (a running sleep is never touched), the doctor looks for:

- scratch files: staged candidates without a manifest, temporary pointer and manifest files,
  training scratch under ``<home>/tmp/<namespace>``, half-written reports;
- a pointer that cannot be read or names no published version;
- an interrupted publish: the newest version has its manifest, but the pointer never moved to it
  (its parent is the current version and its new episodes are still pending);
- published but never marked: episodes in the current version's manifest still pending;
- episodes marked into a version that was never published;
- forgotten episodes still in a servable version's weights (a forget whose rebuild never ran):
  reported only, since rebuilding needs the model (``SleepMemory(config).rebuild()``);
- a retired version whose weights a kill left on disk (deleted on repair);
- published versions whose manifest or weights are lost or cut short (reported, never served);
- entries under ``adapters/`` or ``tmp/`` that cannot be a namespace (reported, never touched).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sleep_agent.adapters import AdapterRegistry
from sleep_agent.config import SleepConfig, check_namespace
from sleep_agent.errors import AdapterLoadError, NamespaceBusyError
from sleep_agent.locks import NamespaceLock

if TYPE_CHECKING:
    from sleep_agent.buffer import EpisodeBuffer


@dataclass
class Finding:
    namespace: str
    problem: str
    fix: str
    repaired: bool = False

    def __str__(self) -> str:
        state = "repaired" if self.repaired else "to repair"
        return f"[{self.namespace}] {self.problem} ({state}: {self.fix})"


def namespaces(home: Path) -> list[str]:
    """Namespaces with adapters or scratch under ``home`` (entries that cannot be one are strays)."""
    return sorted({p.name for p in _entries(home) if _is_namespace(p)})


def _entries(home: Path) -> list[Path]:
    return [p for sub in ("adapters", "tmp") if (home / sub).is_dir() for p in (home / sub).iterdir()]


def _is_namespace(path: Path) -> bool:
    try:
        check_namespace(path.name)
    except ValueError:
        return False
    return path.is_dir()


def _strays(home: Path) -> list[Finding]:
    """Files or oddly named folders among the namespaces: reported, never deleted (they are not ours)."""
    return [
        Finding("-", f"not a namespace: {path}", "move it out of the home; nothing reads it")
        for path in sorted(_entries(home))
        if not _is_namespace(path)
    ]


def scratch_dir(home: str | Path, namespace: str) -> Path:
    """Where a sleep of ``namespace`` trains; whatever is left here after a sleep is a leftover."""
    return Path(home).expanduser() / "tmp" / namespace


def diagnose(config: SleepConfig, *, repair: bool = False) -> list[Finding]:
    """Every namespace under ``config.home`` (its buffer settings are used to open each buffer)."""
    home = Path(config.home).expanduser()
    findings: list[Finding] = _strays(home)
    for namespace in namespaces(home):
        lock = NamespaceLock(home, namespace)
        try:
            lock.acquire()
        except NamespaceBusyError as e:
            findings.append(Finding(namespace, f"not checked: {e}", "run the doctor when the sleep ends"))
            continue
        try:
            registry = AdapterRegistry(home, namespace)
            buffer = _buffer(config.model_copy(update={"namespace": namespace}))
            pending = {ep.id for ep in buffer.episodes("pending")} if buffer is not None else set()
            findings += _leftovers(home, registry, repair)
            findings += _damaged(registry)
            findings += _unerased(registry, repair)
            findings += _pointer(registry, pending, repair)
            if buffer is not None:
                findings += _marks(buffer, registry, pending, repair)
                findings += _owed_rebuild(buffer, registry)
        finally:
            lock.release()
    return findings


def _leftovers(home: Path, registry: AdapterRegistry, repair: bool) -> list[Finding]:
    namespace = registry.namespace
    paths = registry.leftovers()
    scratch = scratch_dir(home, namespace)
    paths += sorted(scratch.iterdir()) if scratch.is_dir() else []
    reports = home / "reports" / namespace
    paths += sorted(reports.glob("*.tmp")) if reports.is_dir() else []
    findings = []
    for path in paths:
        if repair:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        findings.append(Finding(namespace, f"leftover of an interrupted sleep: {path}", "delete it", repair))
    return findings


def _unerased(registry: AdapterRegistry, repair: bool) -> list[Finding]:
    """Retired versions whose weights a kill left on disk: they hold forgotten memories."""
    findings = []
    for version in registry.history():
        left = registry.unerased(version)
        if left and repair:
            registry.erase(version)
        if left:
            findings.append(
                Finding(
                    registry.namespace,
                    f"v{version} is retired but {len(left)} of its files are still on disk",
                    "delete them (the version held forgotten memories or was pruned)",
                    repair,
                )
            )
    return findings


def _damaged(registry: AdapterRegistry) -> list[Finding]:
    """Published versions whose manifest or weights are lost or cut short: never served, never pointed at.

    Reported, not deleted: the files may be restorable from a backup.
    """
    findings = []
    for version in registry.history():
        damage = None if registry.retired(version) else registry.damage(version)
        if damage:
            findings.append(
                Finding(
                    registry.namespace,
                    f"v{version} cannot be served: {damage}",
                    "restore its files, or delete the folder; until then the newest intact version serves",
                )
            )
    return findings


def _pointer(registry: AdapterRegistry, pending: set[str], repair: bool) -> list[Finding]:
    published = registry.versions()
    pointer = registry.root / "current.json"
    try:
        current = registry.current()
    except AdapterLoadError:
        problem = "the pointer cannot be read"
    else:
        if current is not None:
            return _interrupted_publish(registry, current, pending, repair)
        if not pointer.exists() and not published:
            return []  # nothing published yet: nothing to point at
        problem = "the pointer names no servable version" if pointer.exists() else "no pointer"
    if not published:
        if repair:
            pointer.unlink(missing_ok=True)
        return [Finding(registry.namespace, problem, "remove it", repair)]
    latest = published[-1]
    if repair:
        registry.set_current(latest)
    return [Finding(registry.namespace, problem, f"point at the newest published version, v{latest}", repair)]


def _interrupted_publish(
    registry: AdapterRegistry, current: int, pending: set[str], repair: bool
) -> list[Finding]:
    newer = [v for v in registry.versions() if v > current]
    if not newer:
        return []
    manifest = registry.manifest(newer[-1])
    if manifest.parent != current or len(newer) > 1 or not pending & set(manifest.episodes):
        return []  # a rollback the user chose (its episodes were marked), not a publish cut short
    if repair:
        registry.set_current(manifest.version)
    return [
        Finding(
            registry.namespace,
            f"v{manifest.version} was published but the pointer stayed at v{current}",
            f"finish the publish: point at v{manifest.version}",
            repair,
        )
    ]


def _buffer(config: SleepConfig) -> EpisodeBuffer | None:
    from sleep_agent.buffer import EpisodeBuffer

    if config.buffer.url is None and not (Path(config.home).expanduser() / "chroma").exists():
        return None  # no buffer was ever written here
    return EpisodeBuffer.from_config(config)


def _marks(
    buffer: EpisodeBuffer, registry: AdapterRegistry, pending_ids: set[str], repair: bool
) -> list[Finding]:
    namespace = registry.namespace
    findings = []
    current = registry.current()
    if current is not None:
        listed = set(registry.manifest(current).episodes)
        pending = sorted(pending_ids & listed)
        if pending:
            if repair:
                buffer.mark(pending, "consolidated", adapter_version=current)
            findings.append(
                Finding(
                    namespace,
                    f"{len(pending)} episode(s) in v{current} were never marked consolidated",
                    f"mark them consolidated into v{current}",
                    repair,
                )
            )
    published = set(registry.history())  # retired versions were published: their episodes stay marked
    orphans = [ep.id for ep in buffer.episodes("consolidated") if ep.adapter_version not in published]
    if orphans:
        if repair:
            buffer.mark(orphans, "pending", reason="its adapter version was never published")
        findings.append(
            Finding(
                namespace,
                f"{len(orphans)} episode(s) marked into a version that was never published",
                "mark them pending again, for the next sleep",
                repair,
            )
        )
    return findings


def _owed_rebuild(buffer: EpisodeBuffer, registry: AdapterRegistry) -> list[Finding]:
    held = registry.holders([ep.id for ep in buffer.episodes("deleted")])
    if not held:
        return []
    erased = {i for ids in held.values() for i in ids}
    versions = ", ".join(f"v{v}" for v in held)
    return [
        Finding(
            registry.namespace,
            f"{len(erased)} forgotten episode(s) are still in the weights of {versions}",
            f"rebuild the adapter: SleepMemory(SleepConfig(namespace={registry.namespace!r}, ...)).rebuild()",
        )
    ]
