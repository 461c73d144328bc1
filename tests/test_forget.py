"""Forgetting for real: erased from the buffer and recall at once, the adapter rebuilt without it,
every version that held it deleted, and with nothing left the base model serves.

The tiny test Llama is trained and served in-process by the standard cycle. The gate accepts the
ordinary sleeps here (the tiny model learns nothing a real gate would accept); a forget rebuild is
published whatever the gate says, which is part of what is tested. That the forgotten fact's recall
falls back to the base model's is measured on the default model in tests/test_sleep_cycle.py.
"""

from __future__ import annotations

import threading

import pytest
from conftest import tiny_config
from langchain_core.messages.utils import count_tokens_approximately
from typer.testing import CliRunner

from sleep_agent import AdapterLoadError, SleepMemory
from sleep_agent.adapters import AdapterRegistry
from sleep_agent.cli import app
from sleep_agent.doctor import diagnose
from sleep_agent.sleep import standard
from sleep_agent.sleep.consolidate import LoraTrainConfig
from sleep_agent.sleep.gate import GateResult, Scores
from sleep_agent.sleep.standard import CycleConfig, StandardCycle

QUICK = CycleConfig(
    training=LoraTrainConfig(rank=4, max_steps=2, batch_size=4),
    anchors=False,
    gate={"max_perplexity_rise": None},
)


@pytest.fixture
def memory(tiny_model_dir, tmp_path, gate_accepts):
    config = tiny_config(tiny_model_dir, tmp_path / "home")
    with SleepMemory(config, cycle=StandardCycle(QUICK), token_counter=count_tokens_approximately) as memory:
        yield memory


def test_a_forgotten_fact_leaves_recall_and_every_adapter_that_held_it(memory, monkeypatch):
    aria = memory.buffer.record([("user", "Aria lives in Portland.")]).id
    enid = memory.buffer.record([("user", "Enid works as a baker.")]).id
    assert memory.sleep().adapter_version == 1
    registry = AdapterRegistry(memory.config.home, "alice")

    refuse = GateResult(False, "the test's gate refuses", Scores(1.0, 1.0, 0), Scores(0.0, 0.0, 0))
    monkeypatch.setattr(standard, "decide", lambda *a, **k: refuse)  # erasing is not the gate's call
    result = memory.forget(text="Portland")
    assert result == {"deleted": 1, "consolidated": 1, "rebuilt_version": 2, "rebuild_needed": False}
    everywhere = ("pending", "consolidated", "rejected", "deleted")
    hits = memory.buffer.query("Where does Aria live?", k=5, statuses=everywhere)
    assert hits and all("Portland" not in r.episode.text for r in hits)  # the text itself is erased
    manifest = registry.manifest(2)
    assert manifest.trigger == "forget" and manifest.forgotten == [aria]
    assert aria not in manifest.episodes and enid in manifest.episodes  # rebuilt from what remains
    assert "gate_overridden" in memory.last_report.metrics
    assert registry.current() == 2 and registry.versions() == [2] and registry.history() == [1, 2]
    assert not (registry.root / "v1" / "adapter_model.safetensors").exists()  # the weights are gone
    with pytest.raises(AdapterLoadError, match="retired"):
        memory.rollback(1)
    assert (
        memory.backend.active_for("alice") == "alice@v2" and "alice@v1" not in memory.backend.loaded_adapters
    )
    assert diagnose(memory.config) == []  # a retired version is not a leftover

    assert memory.forget(everything=True)["rebuild_needed"] is False
    assert registry.current() is None and registry.versions() == []  # nothing left: the base model
    assert memory.backend.active_for("alice") is None and memory.backend.loaded_adapters == {}
    assert memory.buffer.counts()["deleted"] == 2


def test_an_episode_forgotten_while_a_sleep_learns_it_is_not_marked_and_is_rebuilt_away(memory):
    started, go_on = threading.Event(), threading.Event()
    real = memory.cycle

    def held(mem, episodes, report):  # the sleep has read its episodes; hold it there
        started.set()
        assert go_on.wait(60)
        return real(mem, episodes, report)

    memory.cycle = held
    pin = memory.buffer.record([("user", "My bank PIN is 4471.")]).id
    assert memory.sleep_in_background()
    assert started.wait(60)
    assert memory.forget(ids=[pin], rebuild=False)["consolidated"] == 0  # still pending when erased
    go_on.set()
    report = memory.wait(60)
    assert report.adapter_version == 1 and pin not in report.consolidated
    assert memory.buffer.get([pin])[0].status == "deleted"  # not brought back by the marking
    assert memory.rebuild_needed  # v1 learned it before it was erased
    memory.cycle = real
    memory.rebuild()
    assert not memory.rebuild_needed and AdapterRegistry(memory.config.home, "alice").versions() == []


def test_a_rebuild_owed_by_a_forget_survives_a_restart_and_the_doctor_reports_it(memory, tmp_path):
    secret = memory.buffer.record([("user", "My locker code is 2719.")]).id
    memory.buffer.record([("user", "Enid works as a baker.")])
    assert memory.sleep().adapter_version == 1
    assert memory.forget(ids=[secret], rebuild=False)["rebuild_needed"] is True
    memory.close()  # the process ends before the rebuild

    config = memory.config
    with SleepMemory(config, cycle=StandardCycle(QUICK), token_counter=count_tokens_approximately) as again:
        assert again.rebuild_needed and again.forgotten_in_weights() == [secret]
        assert again.status()["rebuild_needed"] is True
        [finding] = diagnose(config, repair=True)
        assert "1 forgotten episode(s) are still in the weights of v1" in finding.problem
        assert not finding.repaired  # the doctor has no model to rebuild with
        cli = CliRunner().invoke(app, ["doctor", "--home", str(config.home), "--repair"])
        assert cli.exit_code == 1 and "rebuild()" in cli.stdout  # not fixed: the exit status says so
        report = again.rebuild()
        assert report.forgotten == [secret] and report.adapter_version == 2
        assert not again.rebuild_needed and diagnose(config) == []
        assert AdapterRegistry(config.home, "alice").versions() == [2]


def trajectory(memory, city: str):  # noqa: ANN001, ANN201
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    return memory.buffer.record(
        [
            HumanMessage(f"Check the weather in {city}."),
            AIMessage("", tool_calls=[{"name": "weather", "args": {"city": city}, "id": "c1"}]),
            ToolMessage("OK", tool_call_id="c1", name="weather"),
            AIMessage("Done."),
        ],
        outcome="success",
    )


def test_an_episode_learned_only_by_replay_is_in_the_manifest_and_forgetting_it_retires_both(memory):
    # a game-like memory: trajectories are its only training material, replayed at every rebuild
    memory.cycle = StandardCycle(QUICK.model_copy(update={"fact_sources": []}))
    oslo = trajectory(memory, "Oslo").id
    assert memory.sleep().adapter_version == 1
    lima = trajectory(memory, "Lima").id
    second = memory.sleep()
    assert second.adapter_version == 2 and second.consolidated == [lima]
    registry = AdapterRegistry(memory.config.home, "alice")
    assert set(registry.manifest(2).episodes) == {oslo, lima}  # oslo is in v2 by replay alone

    result = memory.forget(ids=[oslo])
    assert result["rebuilt_version"] == 3 and not result["rebuild_needed"]
    assert registry.manifest(3).episodes == [lima]
    assert registry.versions() == [3]  # v1 and v2 both held oslo: their weights are gone


def files_holding(root, needle: str) -> list[str]:  # noqa: ANN001
    """Every file under ``root`` whose bytes hold ``needle`` (UTF-8, any case)."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes().lower()
        if needle.lower().encode() in data:
            found.append(str(path.relative_to(root)))
    return found


def test_after_a_forget_the_text_is_in_no_file_under_the_home(memory):
    secret = "Quillfeather Lane"
    memory.buffer.record([("user", f"I moved to 12 {secret} last spring.")])
    memory.buffer.record([("user", "Enid works as a baker.")])
    assert memory.sleep().adapter_version == 1
    for i in range(5):  # later writes: the secret is not the last thing Chroma logged
        memory.buffer.record([("user", f"Note {i}: the meeting moved to room {i}.")])
    home = memory.config.home
    assert files_holding(home, secret)  # it was on disk: the check can see it

    memory.forget(text=secret)
    assert files_holding(home, secret) == []
    counts = memory.buffer.counts()
    assert counts["deleted"] == 1 and sum(counts.values()) == 7  # nothing else was lost
    memory.buffer.record([("user", "Enid moved to Lisbon.")])  # the database works on after the scrub
    assert "Lisbon" in memory.buffer.query("Where did Enid move?", k=1)[0].episode.text
    memory.close()
    with SleepMemory(
        memory.config, cycle=StandardCycle(QUICK), token_counter=count_tokens_approximately
    ) as again:
        assert (
            sum(again.buffer.counts().values()) == 8
            and again.buffer.find_ids(secret, include_deleted=True) == []
        )
