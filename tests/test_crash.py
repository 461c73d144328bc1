"""A process killed (SIGKILL) at each stage of a sleep, and while recording, loses nothing.

Each case runs a sleep in a child process that kills itself at one stage, then checks from here:
every episode recorded before the kill is in the buffer, the registry names a published version,
no episode is marked into a version that was not published, the doctor repairs what is left, and
the next sleep completes. The model is the tiny test Llama served in-process (a kill must not
leave a vLLM server behind to clean up in CI), and the gate accepts every candidate: the tiny
model learns nothing a real gate would accept, and what is tested here is the bookkeeping.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import tiny_config
from langchain_core.messages.utils import count_tokens_approximately

from sleep_agent import SleepMemory
from sleep_agent.adapters import AdapterRegistry
from sleep_agent.buffer import EpisodeBuffer
from sleep_agent.doctor import diagnose
from sleep_agent.sleep.consolidate import LoraTrainConfig
from sleep_agent.sleep.standard import CycleConfig, StandardCycle

SETUP = textwrap.dedent(
    """
    import os, signal, sys
    from langchain_core.messages.utils import count_tokens_approximately
    from sleep_agent import SleepConfig, SleepMemory, SleepPolicy
    from sleep_agent.sleep import standard
    from sleep_agent.sleep.consolidate import LoraTrainConfig
    from sleep_agent.sleep.gate import GateResult, Scores
    from sleep_agent.sleep.standard import CycleConfig, StandardCycle

    home, model, stage = sys.argv[1:4]
    accept = GateResult(True, "accepted by the test", Scores(0.0, None, 0), Scores(1.0, None, 0))
    standard.decide = lambda *a, **k: accept
    quick = CycleConfig(training=LoraTrainConfig(rank=4, max_steps=2, batch_size=4), anchors=False,
                        novelty_check=False, gate={"max_perplexity_rise": None})
    config = SleepConfig(namespace="alice", home=home, model=model, serving="local", dreaming=False,
                         policy=SleepPolicy(pending_episodes=None, pending_tokens=None, context_fraction=None))
    memory = SleepMemory(config, cycle=StandardCycle(quick), token_counter=count_tokens_approximately)

    def die(*args, **kwargs):
        print("killing", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    def record(text):
        episode = memory.buffer.record([("user", text)], thread_id="day")
        print("recorded", episode.id, flush=True)
    """
)
FIRST_NIGHT = SETUP + textwrap.dedent(
    """
    record("Aria lives in Portland.")
    memory.sleep()
    memory.close()
    """
)
SECOND_NIGHT = SETUP + textwrap.dedent(
    """
    record("Enid works as a baker.")
    record("Cerise speaks French.")
    if stage == "record":  # killed at an arbitrary point of a stream of writes, mid-write included
        import threading, time
        def keep_recording():
            for i in range(10_000):
                record(f"Visitor {i} likes tea.")
        threading.Thread(target=keep_recording, daemon=True).start()
        time.sleep(3)
        die()
    elif stage == "critic":
        standard.critique = die
    elif stage == "training":
        real_train = standard.train_adapter
        def train_then_die(*args, **kwargs):
            real_train(*args, **kwargs)
            die()
        standard.train_adapter = train_then_die
    elif stage == "staging":
        import sleep_agent.adapters as adapters
        real_copy, copies = adapters.shutil.copy2, []
        def copy_then_die(*args, **kwargs):
            copies.append(real_copy(*args, **kwargs))
            if len(copies) == 1:
                die()
        adapters.shutil.copy2 = copy_then_die
    elif stage == "gate":
        standard.decide = die
    elif stage == "publish":
        from sleep_agent.adapters import AdapterRegistry
        AdapterRegistry.set_current = die
    elif stage == "reload":
        memory.backend.activate = die
    elif stage == "mark":
        real_mark = memory.buffer.mark
        memory.buffer.mark = lambda ids, status, **kw: die() if status == "consolidated" else real_mark(ids, status, **kw)
    memory.sleep()
    print("survived", flush=True)
    """
)
# stage -> the version current after the kill (before the doctor) and after the doctor's repair
CURRENT = {
    "record": (1, 1),
    "critic": (1, 1),
    "training": (1, 1),
    "staging": (1, 1),
    "gate": (1, 1),
    "publish": (1, 2),  # the manifest was written: the doctor finishes the publish
    "reload": (2, 2),
    "mark": (2, 2),
}


def _run(script: str, home: Path, model: Path, stage: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", script, str(home), str(model), stage],
        capture_output=True,
        text=True,
        timeout=600,
    )
    recorded = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("recorded ")]
    assert "survived" not in done.stdout, done.stdout
    return done.returncode, recorded if done.returncode else [done.stderr[-3000:]]


@pytest.fixture(scope="module")
def after_first_night(tiny_model_dir, tmp_path_factory) -> tuple[Path, list[str]]:
    """A home with one published version (v1) and its episode consolidated, written by a child."""
    home = tmp_path_factory.mktemp("first-night") / "home"
    done = subprocess.run(
        [sys.executable, "-c", FIRST_NIGHT, str(home), str(tiny_model_dir), "none"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert AdapterRegistry(home, "alice").current() == 1
    return home, [line.split()[1] for line in done.stdout.splitlines() if line.startswith("recorded ")]


@pytest.mark.parametrize("stage", list(CURRENT))
def test_a_kill_at_any_stage_loses_nothing_and_the_next_sleep_completes(
    stage, after_first_night, tiny_model_dir, tmp_path, gate_accepts
):
    first_home, first_ids = after_first_night
    home = tmp_path / "home"
    shutil.copytree(first_home, home)
    returncode, recorded = _run(SECOND_NIGHT, home, tiny_model_dir, stage)
    assert returncode == -signal.SIGKILL, recorded

    config = tiny_config(tiny_model_dir, home)
    buffer = EpisodeBuffer.from_config(config)
    stored = {ep.id: ep for ep in buffer.episodes(None)}
    assert set(first_ids + recorded) <= set(stored)  # nothing recorded before the kill is lost
    assert len(recorded) >= 2 + 10 * (stage == "record")
    registry = AdapterRegistry(home, "alice")
    before, after = CURRENT[stage]
    assert registry.current() == before
    published = set(registry.versions())
    assert {ep.adapter_version for ep in stored.values() if ep.status == "consolidated"} <= published

    findings = diagnose(config, repair=True)
    assert all(f.repaired for f in findings)
    assert diagnose(config) == []  # nothing is left to repair
    assert registry.current() == after and registry.leftovers() == []
    assert not any((home / "tmp" / "alice").iterdir())
    if stage in ("publish", "reload", "mark"):  # v2 was published: its episodes are marked now
        assert {stored_id: buffer.get([stored_id])[0].status for stored_id in recorded} == dict.fromkeys(
            recorded, "consolidated"
        )

    quick = CycleConfig(
        training=LoraTrainConfig(rank=4, max_steps=2, batch_size=4),
        anchors=False,
        novelty_check=False,
        gate={"max_perplexity_rise": None},
    )
    buffer.record([("user", "Bram plays the cello.")], thread_id="day3")
    with SleepMemory(config, cycle=StandardCycle(quick), token_counter=count_tokens_approximately) as memory:
        report = memory.sleep()
        assert report.adapter_version == after + 1, report.error
        assert memory.backend.active_adapter == f"alice@v{after + 1}"
        assert memory.buffer.episodes("pending") == []


FORGET = SETUP + textwrap.dedent(
    """
    if stage == "rebuild":  # killed while retraining without the forgotten memory
        standard.train_adapter = die
    elif stage == "retire":  # killed after the old version is marked retired, before its weights go
        from sleep_agent import adapters
        def mark_then_die(self, version, reason):
            adapters._write_atomically(self.root / f"v{version}" / adapters._RETIRED, "{}")
            die()
        adapters.AdapterRegistry.retire = mark_then_die
    record("Enid works as a baker.")  # something stays: the rebuild trains a new version
    memory.forget(text="aria lives")
    print("survived", flush=True)
    """
)


@pytest.mark.parametrize("stage", ["rebuild", "retire"])
def test_a_kill_during_a_forget_never_leaves_the_forgotten_memory_served_or_on_disk(
    stage, after_first_night, tiny_model_dir, tmp_path, gate_accepts
):
    first_home, (aria,) = after_first_night
    home = tmp_path / "home"
    shutil.copytree(first_home, home)
    returncode, _ = _run(FORGET, home, tiny_model_dir, stage)
    assert returncode == -signal.SIGKILL

    config = tiny_config(tiny_model_dir, home)
    registry = AdapterRegistry(home, "alice")
    assert EpisodeBuffer.from_config(config).get([aria])[0].status == "deleted"  # erased before the kill
    findings = " | ".join(f.problem for f in diagnose(config, repair=True))
    quick = CycleConfig(
        training=LoraTrainConfig(rank=4, max_steps=2, batch_size=4),
        anchors=False,
        novelty_check=False,
        gate={"max_perplexity_rise": None},
    )
    with SleepMemory(config, cycle=StandardCycle(quick), token_counter=count_tokens_approximately) as memory:
        if stage == "rebuild":  # v1 still holds it: the owed rebuild survives the restart, then runs
            assert "forgotten episode(s) are still in the weights of v1" in findings
            assert memory.rebuild_needed
            assert memory.backend.active_for("alice") is None  # not v1, which holds it: the base model
            memory.rebuild()
            assert memory.backend.active_for("alice") == "alice@v2"
        else:  # the rebuild was published; the doctor finished erasing v1's weights
            assert "v1 is retired but" in findings and registry.current() == 2
        assert not memory.rebuild_needed and registry.versions() == [2]
    assert registry.unerased(1) == [] and not (registry.root / "v1" / "adapter_model.safetensors").exists()
