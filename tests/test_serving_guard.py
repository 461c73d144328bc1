"""A spawned server dies with the process that started it, however that process ends; its key is its owner's.

The server here is a stand-in (a Python process that starts a child of its own, the way vLLM starts
its engine): the guard is what is tested, and a real vLLM takes a minute per start. The real server
is covered by the same code path in tests/test_serving_vllm.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# The owner starts the guarded "server" exactly as VLLMServer._spawn does, prints the group id and
# waits to be killed. It takes Ctrl-C as an interactive program does: under a shell's background
# job (`make test &`) a process starts with SIGINT ignored, and would outlive the test's SIGINT.
OWNER = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from sleep_agent.serving.vllm import GUARD_MODULE
    server = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"
    proc = subprocess.Popen(
        [sys.executable, "-m", GUARD_MODULE, "--", sys.executable, "-c", server],
        start_new_session=True,
    )
    print(proc.pid, flush=True)
    time.sleep(600)
    """
)


def _group_members(group: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":  # pgrp, state
            members.append(int(entry.name))
    return members


def _wait_for(condition, timeout_s: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process groups from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_a_spawned_server_and_its_children_end_when_the_owner_is_killed(sig):
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    group = int(owner.stdout.readline())
    try:
        assert _wait_for(lambda: len(_group_members(group)) == 3, 30)  # guard, server, engine
        os.kill(owner.pid, sig)
        owner.wait(timeout=10)
        assert _wait_for(lambda: not _group_members(group), 30), _group_members(group)
    finally:
        for pid in _group_members(group):
            os.kill(pid, signal.SIGKILL)
        owner.kill()


def test_the_guard_passes_on_the_servers_exit_code():
    """A server that fails to start must still be reported as exited, with its code."""
    guard = subprocess.run(
        [
            sys.executable,
            "-m",
            "sleep_agent.serving.guard",
            "--",
            sys.executable,
            "-c",
            "raise SystemExit(3)",
        ],
        timeout=30,
    )
    assert guard.returncode == 3


def test_the_guard_without_a_command_says_how_to_call_it():
    guard = subprocess.run(
        [sys.executable, "-m", "sleep_agent.serving.guard"], capture_output=True, text=True, timeout=30
    )
    assert guard.returncode == 2 and "usage" in guard.stderr


def test_a_started_servers_key_is_written_for_its_owner_only(tmp_path):
    from sleep_agent.serving.vllm import write_key

    path = tmp_path / "serving" / "vllm-8000.key"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)  # a file left by someone else's umask keeps no wider mode
    assert write_key(path, "s3cret").read_text() == "s3cret"
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("localhost", False), ("0.0.0.0", True)])
def test_serving_beyond_this_machine_is_warned_about(host, warned):
    from sleep_agent.cli import _loopback

    assert _loopback(host) is not warned


def test_the_key_guard_vllm_loads_refuses_every_route_but_health_without_the_key(monkeypatch):
    """The middleware itself, on a plain Starlette app (the real server is checked in
    tests/test_serving_vllm.py); vLLM's own check covers only /v1 and a few prefixes."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from sleep_agent.serving.keyguard import KeyOnEveryRoute

    monkeypatch.setenv("VLLM_API_KEY", "s3cret")
    ok = lambda request: PlainTextResponse("ok")  # noqa: E731
    app = Starlette(
        routes=[Route(p, ok, methods=["GET", "POST"]) for p in ("/health", "/invocations", "/tokenize")]
    )
    app.add_middleware(KeyOnEveryRoute)
    client = TestClient(app)
    assert client.get("/health").status_code == 200
    for path in ("/invocations", "/tokenize"):
        assert client.post(path).status_code == 401
        assert client.post(path, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.post(path, headers={"authorization": "Bearer s3cret"}).status_code == 200
