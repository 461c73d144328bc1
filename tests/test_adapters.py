"""The adapter registry: versions appear whole, current moves last, rollback moves the pointer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sleep_agent.adapters import AdapterRegistry, Manifest
from sleep_agent.errors import AdapterLoadError


def fake_adapter(path: Path, marker: str) -> Path:
    """An adapter directory in the layout peft writes: whole safetensors, placeholder tensors."""
    import numpy as np
    from safetensors.numpy import save_file

    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": 8, "marker": marker}))
    save_file(
        {"w": np.zeros(2, dtype=np.float32)}, path / "adapter_model.safetensors", metadata={"marker": marker}
    )
    return path


def marker_of(directory: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(directory / "adapter_model.safetensors"), "np") as f:
        return f.metadata()["marker"]


def test_publish_numbers_versions_and_moves_current_last(tmp_path: Path):
    reg = AdapterRegistry(tmp_path, "alice")
    assert reg.current() is None and reg.next_version() == 1
    reg.publish(fake_adapter(tmp_path / "a", "one"), Manifest("alice", 1, None, episodes=["e1"]))
    reg.publish(fake_adapter(tmp_path / "b", "two"), Manifest("alice", 2, 1, metrics={"recall": 0.9}))
    assert reg.versions() == [1, 2] and reg.current() == 2
    assert marker_of(reg.path(2)) == "two"
    m = reg.manifest(2)
    assert (m.parent, m.metrics, m.served_name) == (1, {"recall": 0.9}, "alice@v2")


def test_a_version_is_never_rewritten(tmp_path: Path):
    reg = AdapterRegistry(tmp_path, "alice")
    reg.publish(fake_adapter(tmp_path / "a", "one"), Manifest("alice", 1, None))
    with pytest.raises(AdapterLoadError, match="never rewritten"):
        reg.publish(fake_adapter(tmp_path / "b", "two"), Manifest("alice", 1, None))
    assert marker_of(reg.path(1)) == "one"


def test_publishing_without_making_current_keeps_the_old_one_served(tmp_path: Path):
    reg = AdapterRegistry(tmp_path, "alice")
    reg.publish(fake_adapter(tmp_path / "a", "one"), Manifest("alice", 1, None))
    reg.publish(fake_adapter(tmp_path / "b", "two"), Manifest("alice", 2, 1), make_current=False)
    assert reg.current() == 1 and reg.versions() == [1, 2]


def test_a_crash_while_copying_leaves_no_version_and_is_cleaned(tmp_path: Path, monkeypatch):
    reg = AdapterRegistry(tmp_path, "alice")
    reg.publish(fake_adapter(tmp_path / "a", "one"), Manifest("alice", 1, None))
    import sleep_agent.adapters as adapters

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(adapters.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        reg.publish(fake_adapter(tmp_path / "b", "two"), Manifest("alice", 2, 1))
    monkeypatch.undo()
    assert reg.versions() == [1] and reg.current() == 1
    (reg.root / ".v2-leftover").mkdir()  # what a hard kill (no cleanup) would leave
    assert reg.clean() == 1 and reg.versions() == [1]


def test_rollback_moves_the_pointer_and_refuses_when_there_is_nothing_older(tmp_path: Path):
    reg = AdapterRegistry(tmp_path, "alice")
    for v in (1, 2, 3):
        reg.publish(fake_adapter(tmp_path / f"a{v}", str(v)), Manifest("alice", v, v - 1 or None))
    assert reg.rollback() == 2 and reg.current() == 2
    assert reg.rollback(to=3) == 3
    assert reg.rollback(to=1) == 1
    with pytest.raises(AdapterLoadError, match="no version before"):
        reg.rollback()
    with pytest.raises(AdapterLoadError, match="no published version 9"):
        reg.rollback(to=9)
    assert reg.current() == 1


def test_bad_candidates_are_refused_before_anything_is_written(tmp_path: Path):
    reg = AdapterRegistry(tmp_path, "alice")
    with pytest.raises(AdapterLoadError, match="does not exist"):
        reg.publish(tmp_path / "missing", Manifest("alice", 1, None))
    with pytest.raises(ValueError, match="namespace"):
        reg.publish(fake_adapter(tmp_path / "a", "x"), Manifest("bob", 1, None))
    assert reg.versions() == [] and reg.current() is None


def test_manifests_with_unknown_keys_still_open(tmp_path: Path):
    reg = AdapterRegistry(tmp_path, "alice")
    reg.publish(fake_adapter(tmp_path / "a", "one"), Manifest("alice", 1, None))
    path = reg.path(1) / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "from_the_future": True}))
    assert reg.manifest(1).version == 1


def test_a_staged_candidate_is_loadable_but_not_published_until_committed(tmp_path: Path):
    reg = AdapterRegistry(tmp_path, "alice")
    reg.publish(fake_adapter(tmp_path / "a", "one"), Manifest("alice", 1, None))
    staged = reg.stage(fake_adapter(tmp_path / "b", "two"), 2)
    assert staged == reg.root / "v2" and (staged / "adapter_config.json").is_file()
    assert reg.versions() == [1] and reg.current() == 1 and reg.next_version() == 3
    reg.commit(Manifest("alice", 2, 1, episodes=["e2"]))
    assert reg.versions() == [1, 2] and reg.current() == 2 and reg.manifest(2).episodes == ["e2"]
    with pytest.raises(AdapterLoadError, match="published; roll back"):
        reg.discard(2)


def test_a_refused_or_crashed_candidate_leaves_no_trace(tmp_path: Path):
    reg = AdapterRegistry(tmp_path, "alice")
    reg.publish(fake_adapter(tmp_path / "a", "one"), Manifest("alice", 1, None))
    reg.stage(fake_adapter(tmp_path / "b", "two"), 2)
    reg.discard(2)
    assert not (reg.root / "v2").exists() and reg.next_version() == 2
    reg.stage(fake_adapter(tmp_path / "c", "three"), 2)  # then a crash before commit
    assert reg.clean() == 1 and not (reg.root / "v2").exists() and reg.versions() == [1]
    with pytest.raises(AdapterLoadError):
        reg.commit(Manifest("alice", 2, 1))  # nothing staged
    assert reg.current() == 1


def test_an_unreadable_pointer_names_the_doctor_which_repairs_it_and_leaves_a_rollback_alone(tmp_path: Path):
    from typer.testing import CliRunner

    from sleep_agent.cli import app

    home = tmp_path / "home"
    reg = AdapterRegistry(home, "alice")
    for v in (1, 2, 3):
        reg.publish(fake_adapter(tmp_path / f"a{v}", str(v)), Manifest("alice", v, v - 1 or None))
    reg.rollback(to=1)  # chosen by the user: v2 and v3 are newer, but this is no publish cut short
    runner = CliRunner()
    clean = runner.invoke(app, ["doctor", "--home", str(home)])
    assert clean.exit_code == 0 and "nothing to repair" in clean.stdout and reg.current() == 1

    (reg.root / "current.json").write_text("{not json")
    with pytest.raises(AdapterLoadError, match="sleep-agent doctor --repair"):
        reg.current()
    found = runner.invoke(app, ["doctor", "--home", str(home)])
    assert found.exit_code == 1 and "the pointer cannot be read" in found.stdout
    repaired = runner.invoke(app, ["doctor", "--home", str(home), "--repair"])
    assert (
        repaired.exit_code == 0 and "repaired: point at the newest published version, v3" in repaired.stdout
    )
    assert reg.current() == 3


@pytest.mark.parametrize(
    "damage",
    ["weights deleted", "weights cut short", "empty manifest", "manifest not json"],
)
def test_a_damaged_version_is_never_served_and_the_doctor_reports_it_and_points_at_an_intact_one(
    tmp_path: Path, damage: str
):
    """A version whose files were lost or cut short (a disk fault, a copy by hand) must not be served."""
    from sleep_agent.config import SleepConfig
    from sleep_agent.doctor import diagnose

    home = tmp_path / "home"
    reg = AdapterRegistry(home, "alice")
    for v in (1, 2):
        reg.publish(fake_adapter(tmp_path / f"a{v}", str(v)), Manifest("alice", v, v - 1 or None))
    weights, manifest = reg.root / "v2" / "adapter_model.safetensors", reg.root / "v2" / "manifest.json"
    if damage == "weights deleted":
        weights.unlink()
    elif damage == "weights cut short":
        weights.write_bytes(weights.read_bytes()[:-4])
    else:
        manifest.write_text("" if damage == "empty manifest" else "{cut")

    assert reg.versions() == [1] and reg.current() is None and reg.damage(2)
    with pytest.raises(AdapterLoadError, match="cannot be served"):
        reg.set_current(2)
    findings = diagnose(SleepConfig(namespace="alice", home=home), repair=True)
    problems = " | ".join(f.problem for f in findings)
    assert "v2 cannot be served" in problems and "names no servable version" in problems
    assert reg.current() == 1  # repaired onto the newest intact version, never onto v2
    assert reg.root.joinpath("v2").is_dir()  # reported, not deleted: the files may be restorable


def test_the_doctor_reports_stray_entries_among_namespaces_and_checks_the_rest(tmp_path: Path):
    from sleep_agent.config import SleepConfig
    from sleep_agent.doctor import diagnose

    home = tmp_path / "home"
    reg = AdapterRegistry(home, "alice")
    reg.publish(fake_adapter(tmp_path / "a1", "1"), Manifest("alice", 1, None))
    (home / "adapters" / ".DS_Store").write_bytes(b"\0")
    (home / "adapters" / "notes.txt").write_text("mine")
    (home / "adapters" / "bad name").mkdir()
    (reg.root / "current.json").unlink()
    findings = diagnose(SleepConfig(namespace="alice", home=home), repair=True)
    strays = sorted(
        Path(f.problem.split(": ", 1)[1]).name for f in findings if f.problem.startswith("not a namespace")
    )
    assert strays == [".DS_Store", "bad name", "notes.txt"]
    assert (home / "adapters" / "notes.txt").read_text() == "mine"  # not ours: never deleted
    assert reg.current() == 1  # the real namespace was still checked and repaired


def test_rollback_waits_for_no_sleep_it_is_refused_while_one_holds_the_namespace(tmp_path: Path):
    from typer.testing import CliRunner

    from sleep_agent.cli import app
    from sleep_agent.locks import NamespaceLock

    home = tmp_path / "home"
    reg = AdapterRegistry(home, "alice")
    for v in (1, 2):
        reg.publish(fake_adapter(tmp_path / f"a{v}", str(v)), Manifest("alice", v, v - 1 or None))
    sleeping = NamespaceLock(home, "alice")
    sleeping.acquire()
    try:
        refused = CliRunner().invoke(
            app, ["adapters", "rollback", "--home", str(home), "--namespace", "alice"]
        )
        assert refused.exit_code != 0 and "being slept" in refused.output and reg.current() == 2
    finally:
        sleeping.release()
    done = CliRunner().invoke(app, ["adapters", "rollback", "--home", str(home), "--namespace", "alice"])
    assert done.exit_code == 0 and reg.current() == 1


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names flushed files through /proc")
def test_publishing_flushes_files_and_directories_to_disk(tmp_path: Path, monkeypatch):
    """A rename is durable only once its directory is flushed: every publish step must fsync."""
    import os

    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd)
    )
    reg = AdapterRegistry(tmp_path / "home", "alice")
    reg.publish(fake_adapter(tmp_path / "a1", "1"), Manifest("alice", 1, None))
    names = [Path(p).name for p in synced]
    assert any(n.startswith(".v1-") for n in names)  # the staged weights' directory, before its rename
    assert names.count("alice") >= 2 and "v1" in names  # renames: the weights and pointer, the manifest
    assert any(n.startswith(".manifest-") for n in names) and any(n.startswith(".current-") for n in names)


def test_pruning_keeps_the_newest_the_current_and_the_pinned_versions(tmp_path: Path):
    from typer.testing import CliRunner

    from sleep_agent.cli import app

    home = tmp_path / "home"
    reg = AdapterRegistry(home, "alice")
    for v in range(1, 7):
        reg.publish(fake_adapter(tmp_path / f"a{v}", str(v)), Manifest("alice", v, v - 1 or None))
    reg.rollback(to=2)  # the user serves an old one: it must survive
    pinned = CliRunner().invoke(app, ["adapters", "pin", "1", "--home", str(home), "--namespace", "alice"])
    assert pinned.exit_code == 0 and reg.pinned() == [1]
    assert reg.prune(keep=2) == [3, 4]
    assert reg.versions() == [1, 2, 5, 6] and reg.current() == 2
    assert reg.manifest(3).version == 3 and not (reg.root / "v3" / "adapter_model.safetensors").exists()
    with pytest.raises(AdapterLoadError, match="retired"):
        reg.rollback(to=3)
    with pytest.raises(ValueError, match="keep"):
        reg.prune(keep=0)
