"""The chat front ends: a session through the real graph, the terminal loop, the web API.

The tiny test Llama is served in-process and trained for real; the gate accepts (the tiny model
learns nothing a real gate would accept). That a new session answers a preference from the
weights is tested on the default model in tests/test_chatbot_browser.py.
"""

from __future__ import annotations

import io

import pytest
from conftest import tiny_config
from fastapi.testclient import TestClient
from rich.console import Console

from sleep_agent import SleepPolicy
from sleep_agent.chatbot.session import ChatSession, describe_sleep
from sleep_agent.chatbot.terminal import run_terminal
from sleep_agent.chatbot.web import create_app
from sleep_agent.serving import create_backend
from sleep_agent.sleep.consolidate import LoraTrainConfig
from sleep_agent.sleep.standard import CycleConfig, StandardCycle

QUICK = CycleConfig(
    training=LoraTrainConfig(rank=4, max_steps=2, batch_size=4),
    anchors=False,
    gate={"max_perplexity_rise": None},
)


@pytest.fixture
def config(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, tmp_path / "home")
    return config.model_copy(update={"policy": SleepPolicy(pending_episodes=2, context_fraction=None)})


@pytest.fixture
def session(config, gate_accepts):
    session = ChatSession.open("alice", config, cycle=StandardCycle(QUICK), max_tokens=8)
    yield session
    session.close()


def test_a_session_answers_falls_asleep_at_its_threshold_and_a_new_one_starts_empty(session):
    asleep = []
    first = session.send("my name is zorblax", on_sleep=asleep.append)
    assert first.slept is None and asleep == [] and first.adapter == "base"
    second = session.send("my favorite color is blue", on_sleep=asleep.append)
    assert [d["reason"] for d in asleep] == [second.slept.trigger] and "pending" in asleep[0]["reason"]
    assert second.slept.adapter_version == 1 and len(second.slept.consolidated) == 2
    lines = describe_sleep(second.slept, session.memory)
    assert "2 of 2 memories now in the weights, adapter v1" in lines[0]
    assert any("learned: my name is zorblax" in line for line in lines)

    thread, old = session.thread_id, session.thread
    assert list(session.bot._checkpointer.list({"configurable": {"thread_id": old}}))  # the turns so far
    assert session.new_session() != thread and session.status()["turns"] == 0
    assert not list(session.bot._checkpointer.list({"configurable": {"thread_id": old}}))  # freed
    third = session.send("what is my name ?")
    assert third.adapter == "alice@v1"  # the new session is answered by the weights
    run = {"configurable": {"user_id": "alice", "thread_id": f"alice/{session.thread_id}"}}
    state = session.bot.graph.get_state(run)
    assert [m.content for m in state.values["messages"] if m.type == "human"] == ["what is my name ?"]


def test_the_terminal_runs_commands_and_reports_what_it_learned(session):
    lines = iter(
        [
            "my name is zorblax",
            "/status",
            "/sleep",
            "/forget zorblax",
            "/forget",
            "/new",
            "/nonsense",
            "/quit",
            "never read",
        ]
    )
    out = io.StringIO()
    run_terminal(session, Console(file=out, width=200), read=lambda: next(lines))
    text = out.getvalue()
    assert "bot (base):" in text and "memories: pending 1" in text and "adapter: base model" in text
    assert "1 of 1 memories now in the weights, adapter v1" in text and "learned: my name is zorblax" in text
    assert "forgot 1 memories" in text and "/forget needs the text" in text
    assert "new session" in text and "/sleep  /forget TEXT" in text and text.rstrip().endswith("bye")
    assert session.memory.buffer.counts()["deleted"] == 1


def test_the_web_api_chats_per_user_sleeps_and_refuses_bad_input(config, gate_accepts):
    backend = create_backend(config).start()
    app = create_app(config, backend=backend, cycle=StandardCycle(QUICK))
    with TestClient(app, base_url="http://127.0.0.1:8700") as client:
        page = client.get("/")
        assert page.status_code == 200 and 'id="last-sleep"' in page.text
        reply = client.post("/api/chat", json={"user": "alice", "text": "my name is zorblax"}).json()
        assert reply["adapter"] == "base" and reply["slept"] is None
        assert reply["status"]["episodes"]["pending"] == 1 and reply["status"]["turns"] == 1
        slept = client.post("/api/sleep", json={"user": "alice"}).json()
        assert "adapter v1" in slept["slept"][0] and slept["status"]["active_adapter"] == "alice@v1"
        assert client.get("/api/status", params={"user": "bob"}).json()["active_adapter"] is None
        (config.home / "adapters" / '"><img src=x onerror=alert(1)>').mkdir(parents=True)
        assert client.get("/api/users").json()["users"] == [
            "alice"
        ]  # a GET made no user; a stray folder is none
        assert not (config.home / "adapters" / "bob").exists()
        assert "innerHTML" not in client.get("/").text  # the page builds no HTML from what it is sent
        bob = client.post("/api/chat", json={"user": "bob", "text": "my name is quenty"}).json()
        assert client.get("/api/users").json()["users"] == ["alice", "bob"]
        assert bob["adapter"] == "base" and bob["status"]["episodes"]["pending"] == 1  # not alice's v1
        sessions = app.state.sessions
        alice_s, bob_s = sessions.get("alice"), sessions.get("bob")
        assert alice_s.bot is bob_s.bot and sessions.bot.memory.namespaces() == ["alice", "bob"]
        assert client.post("/api/new", json={"user": "alice"}).json()["status"]["turns"] == 0
        forgot = client.post("/api/forget", json={"user": "alice", "text": "zorblax"}).json()
        assert forgot["result"]["deleted"] == 1

        assert client.post("/api/chat", json={"user": "../etc", "text": "hi"}).status_code == 400
        assert client.post("/api/chat", json={"user": "alice", "text": "   "}).status_code == 400
        assert client.post("/api/chat", json={"user": "alice"}).status_code == 422
        # what a page elsewhere could send through the visitor's browser changes nothing
        before = client.get("/api/status", params={"user": "alice"}).json()["episodes"]
        rebound = client.post(
            "/api/chat", json={"user": "alice", "text": "hi"}, headers={"host": "evil.example"}
        )
        assert rebound.status_code == 400  # a DNS-rebound name
        cross = client.post(
            "/api/forget",
            json={"user": "alice", "text": "quenty"},
            headers={"origin": "https://evil.example"},
        )
        assert cross.status_code == 403
        form = client.post("/api/sleep", content='{"user": "alice"}', headers={"content-type": "text/plain"})
        assert form.status_code == 422  # a form or text body, which a cross-site page can send without asking
        assert client.post("/api/chat", json={"user": "alice", "text": "x" * 5000}).status_code == 422
        huge = client.post(
            "/api/chat", content=b"{" + b" " * 70_000 + b"}", headers={"content-type": "application/json"}
        )
        assert huge.status_code == 413
        assert client.get("/api/status", params={"user": "alice"}).json()["episodes"] == before
        sessions.max_sessions = 2  # a third user ends the session used longest ago
        bob_thread = sessions.get("bob").thread
        assert list(sessions.bot._checkpointer.list({"configurable": {"thread_id": bob_thread}}))
        sessions.get("alice")
        client.post("/api/new", json={"user": "carol"})
        assert list(sessions._sessions) == ["alice", "carol"]
        assert not list(sessions.bot._checkpointer.list({"configurable": {"thread_id": bob_thread}}))
        assert (
            client.get("/api/status", params={"user": "bob"}).json()["episodes"]["pending"] == 1
        )  # memory kept
        same_origin = {"origin": "http://127.0.0.1:8700"}
        assert client.post("/api/new", json={"user": "alice"}, headers=same_origin).status_code == 200
    backend.stop()
