"""`langgraph dev` serves the shipped graph to many users: each run's `configurable` names its user.

Real parts: the LangGraph CLI's in-memory API server on ``langgraph.json``, called through the
LangGraph SDK over HTTP; the graph's model is the tiny test Llama served in-process (set through the
environment variables ``graphs/sleep_agent.py`` documents), its memories in embedded Chroma.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sleep_agent.episodes import RECALL_MARKER

REPO = Path(__file__).resolve().parents[1]
LANGGRAPH = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which("langgraph")

pytestmark = pytest.mark.skipif(
    LANGGRAPH is None, reason="langgraph-cli[inmem] is not installed (make test installs it)"
)


@pytest.fixture
def dev_server(tiny_model_dir, tmp_path):
    from sleep_agent.serving.vllm import free_port

    port = free_port()
    env = {
        **os.environ,
        "SLEEP_AGENT_MODEL": str(tiny_model_dir),
        "SLEEP_AGENT_SERVING": "local",
        "SLEEP_AGENT_HOME": str(tmp_path / "home"),
        "LANGSMITH_TRACING": "false",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    }
    log = (tmp_path / "langgraph-dev.log").open("w")
    process = subprocess.Popen(
        [LANGGRAPH, "dev", "--no-browser", "--no-reload", "--port", str(port), "--config", "langgraph.json"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        process.kill()
        pytest.fail(f"langgraph dev did not start:\n{(tmp_path / 'langgraph-dev.log').read_text()[-3000:]}")
    yield url
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def test_langgraph_dev_keeps_each_configurable_users_memory_apart(dev_server):
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=dev_server)

    def turn(user: str | None, text: str) -> dict:
        thread = client.threads.create()
        config = {"configurable": {"user_id": user}} if user else {}
        return client.runs.wait(
            thread["thread_id"],
            "sleep_agent",
            input={"messages": [{"role": "user", "content": text}]},
            config=config,
        )

    turn("ana", "My locker code is 4417.")
    turn("ben", "My locker code is 9902.")
    for user, mine, theirs in (("ana", "4417", "9902"), ("ben", "9902", "4417")):
        state = turn(user, "What is my locker code?")
        recalled = " ".join(m["content"] for m in state["messages"] if m.get("name") == RECALL_MARKER)
        assert mine in recalled and theirs not in recalled, state["messages"]

    with pytest.raises(Exception, match=r"NamespaceError.*'user_id'"):  # no user: refused, naming the key
        turn(None, "Hello?")
