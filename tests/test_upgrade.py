"""A home written by the previous release opens in this one; a newer one is refused clearly.

``tests/data/home_0_1_0`` was written by release 0.1.0 (before storage-format stamps) with the
script ``WRITER`` below, run with that release's code on the path: a buffer with two consolidated episodes
and one pending, and one published adapter version (placeholder weights: the registry is what is
tested, not serving).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sleep_agent import EpisodeBuffer, SleepConfig
from sleep_agent.adapters import AdapterRegistry
from sleep_agent.doctor import diagnose
from sleep_agent.formats import FORMAT, FormatError

DATA = Path(__file__).parent / "data"
WRITTEN = json.loads((DATA / "home_0_1_0.json").read_text())

WRITER = """
import json, sys
from pathlib import Path
from sleep_agent import SleepConfig, EpisodeBuffer
from sleep_agent.adapters import AdapterRegistry, Manifest
home = Path(sys.argv[1])
buffer = EpisodeBuffer.from_config(SleepConfig(namespace="alice", home=home))
a = buffer.record([("user", "My cat is called Pixel."), ("ai", "Noted.")], thread_id="day1")
b = buffer.record([("user", "I work as a glassblower.")], thread_id="day1")
c = buffer.record([("user", "I am learning Welsh.")], thread_id="day2")
buffer.mark([a.id, b.id], "consolidated", adapter_version=1)
adapter = home.parent / "adapter"
adapter.mkdir()
(adapter / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
from safetensors.numpy import save_file
import numpy as np
save_file({"placeholder": np.zeros(1, dtype=np.float32)}, adapter / "adapter_model.safetensors")
AdapterRegistry(home, "alice").publish(adapter, Manifest("alice", 1, None, episodes=[a.id, b.id]))
print(json.dumps({"consolidated": [a.id, b.id], "pending": [c.id]}))
"""


@pytest.fixture
def old_home(tmp_path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(DATA / "home_0_1_0", home)
    return home


def test_a_home_of_release_0_1_0_opens_recalls_records_and_is_stamped(old_home):
    config = SleepConfig(namespace="alice", home=old_home)
    buffer = EpisodeBuffer.from_config(config)
    assert {ep.id for ep in buffer.episodes("consolidated")} == set(WRITTEN["consolidated"])
    assert [ep.id for ep in buffer.episodes("pending")] == WRITTEN["pending"]
    (hit,) = buffer.query("What is my cat called?", k=1, statuses=("consolidated",))
    assert "Pixel" in hit.episode.text
    buffer.record([("user", "I moved to Cardiff.")], thread_id="day3")
    assert buffer.counts()["pending"] == 2
    registry = AdapterRegistry(old_home, "alice")
    assert registry.current() == 1 and registry.manifest(1).episodes == WRITTEN["consolidated"]
    assert diagnose(config) == []  # nothing about an old home looks broken
    assert buffer._pending.metadata["format"] == FORMAT  # stamped on open
    registry.set_current(1)
    assert json.loads((registry.root / "current.json").read_text())["format"] == FORMAT


def test_files_of_a_newer_release_are_refused_with_the_fix(old_home):
    registry = AdapterRegistry(old_home, "alice")
    manifest = registry.root / "v1" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format": FORMAT + 1}))
    with pytest.raises(FormatError, match=r"newer sleep-agent .* upgrade sleep-agent"):
        registry.manifest(1)
    pointer = registry.root / "current.json"
    pointer.write_text(json.dumps({"version": 1, "format": FORMAT + 1}))
    with pytest.raises(FormatError, match=r"current.json was written by a newer sleep-agent"):
        registry.current()
    buffer = EpisodeBuffer.from_config(SleepConfig(namespace="alice", home=old_home))
    buffer._pending.modify(metadata={**buffer._pending.metadata, "format": FORMAT + 1})
    with pytest.raises(FormatError, match=r"collection pending_alice .* newer sleep-agent"):
        EpisodeBuffer.from_config(SleepConfig(namespace="alice", home=old_home))
