"""One sleep per namespace at a time: across memories in one process, and across processes.

The cycle here is the small accepting one of test_nodes (held open by an event), since what is
tested is who may run a cycle, not what the cycle does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from test_nodes import AcceptAll, graph_of, make_memory, turns

from sleep_agent import NamespaceBusyError
from sleep_agent.locks import NamespaceLock


def test_a_second_memory_of_the_namespace_cannot_sleep_while_the_first_does():
    gate = threading.Event()
    first = make_memory("alice", cycle=AcceptAll(gate))
    second = make_memory("alice", background=False)
    turns(graph_of(first), ["My cat is called Pixel.", "I work as a glassblower."])
    assert first.sleep_in_background()
    try:
        with pytest.raises(NamespaceBusyError, match=rf"'alice' is being slept by pid {os.getpid()}"):
            second.sleep()
        assert second.sleep_in_background() is False
        assert not second.sleeping  # its own lock was handed back after the refusal
    finally:
        gate.set()
        first.wait(timeout=60)
    assert first.last_report.consolidated and second.buffer.counts()["pending"] == 0
    second.sleep()  # free again once the first finished


def test_a_graph_turn_goes_on_when_another_memory_is_sleeping_the_namespace():
    gate = threading.Event()
    first = make_memory("alice", cycle=AcceptAll(gate))
    turns(graph_of(first), ["a"])
    assert first.sleep_in_background()
    try:
        second = make_memory("alice", pending_episodes=1)
        out = turns(graph_of(second), ["b"])[-1]
        assert out["messages"][-1].content == "noted: b"
        assert "being slept" in out["sleep_decision"]["skipped"]
    finally:
        gate.set()
        first.wait(timeout=60)


def test_different_namespaces_sleep_at_the_same_time():
    gates = {ns: threading.Event() for ns in ("alice", "bob")}
    memories = {ns: make_memory(ns, cycle=AcceptAll(gate)) for ns, gate in gates.items()}
    for ns, memory in memories.items():
        turns(graph_of(memory), [f"{ns} likes tea"])
        assert memory.sleep_in_background(), ns
    assert all(m.sleeping for m in memories.values())
    for gate in gates.values():
        gate.set()
    for memory in memories.values():
        assert memory.wait(timeout=60).adapter_version == 1


HOLDER = textwrap.dedent(
    """
    import sys, time
    from sleep_agent.locks import NamespaceLock
    lock = NamespaceLock(sys.argv[1], "alice")
    lock.acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


def test_another_process_holding_the_namespace_blocks_until_it_dies(tmp_path):
    home = tmp_path / ".sleep_agent"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        memory = make_memory("alice")
        turns(graph_of(memory), ["My cat is called Pixel."])
        with pytest.raises(NamespaceBusyError, match=rf"pid {holder.pid} on "):
            memory.sleep()
        assert memory.buffer.counts()["pending"] == 1  # nothing was touched
        os.kill(holder.pid, signal.SIGKILL)  # a killed sleep must not leave the namespace locked
        holder.wait(10)
        report = memory.sleep()
        assert report.adapter_version == 1 and memory.buffer.counts()["pending"] == 0
    finally:
        if holder.poll() is None:
            holder.kill()


def test_the_lock_is_not_tied_to_the_thread_that_took_it(tmp_path):
    lock = NamespaceLock(tmp_path, "alice")
    lock.acquire()
    released = threading.Thread(target=lock.release)
    released.start()
    released.join(10)
    deadline = time.monotonic() + 5
    other = NamespaceLock(tmp_path, "alice")
    while True:  # taken again at once by another holder, from this thread
        try:
            other.acquire()
            break
        except NamespaceBusyError:
            assert time.monotonic() < deadline, "the lock released in another thread stayed held"
            time.sleep(0.05)
    other.release()
    assert not (tmp_path / "locks" / "alice.holder").exists()
