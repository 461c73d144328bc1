"""The adapter registry: versions appear whole, current moves last, rollback moves the pointer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sleep_agent.adapters import AdapterRegistry, Manifest
from sleep_agent.errors import AdapterLoadError


def fake_adapter(path: Path, marker: str) -> Path:
    """An adapter directory in the layout peft writes (contents are not loaded here)."""
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": 8, "marker": marker}))
    (path / "adapter_model.safetensors").write_bytes(marker.encode())
    return path


def test_publish_numbers_versions_and_moves_current_last(tmp_path: Path):
    reg = AdapterRegistry(tmp_path, "alice")
    assert reg.current() is None and reg.next_version() == 1
    reg.publish(fake_adapter(tmp_path / "a", "one"), Manifest("alice", 1, None, episodes=["e1"]))
    reg.publish(fake_adapter(tmp_path / "b", "two"), Manifest("alice", 2, 1, metrics={"recall": 0.9}))
    assert reg.versions() == [1, 2] and reg.current() == 2
    assert (reg.path(2) / "adapter_model.safetensors").read_bytes() == b"two"
    m = reg.manifest(2)
    assert (m.parent, m.metrics, m.served_name) == (1, {"recall": 0.9}, "alice@v2")


def test_a_version_is_never_rewritten(tmp_path: Path):
    reg = AdapterRegistry(tmp_path, "alice")
    reg.publish(fake_adapter(tmp_path / "a", "one"), Manifest("alice", 1, None))
    with pytest.raises(AdapterLoadError, match="never rewritten"):
        reg.publish(fake_adapter(tmp_path / "b", "two"), Manifest("alice", 1, None))
    assert (reg.path(1) / "adapter_model.safetensors").read_bytes() == b"one"


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
