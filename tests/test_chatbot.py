"""The chat front ends: a session through the real graph, the terminal loop, the web API.

The tiny test Llama is served in-process and trained for real; the gate accepts (the tiny model
learns nothing a real gate would accept). That a new session answers a preference from the
weights is tested on the default model in tests/test_chatbot_browser.py.
"""

from __future__ import annotations

import io
import threading
import time

import pytest
from conftest import tiny_config
from fastapi.testclient import TestClient
from rich.console import Console

from sleep_agent import SleepPolicy
from sleep_agent.chatbot.access import WebUsers
from sleep_agent.chatbot.session import ChatSession, describe_sleep
from sleep_agent.chatbot.terminal import run_terminal
from sleep_agent.chatbot.web import create_app
from sleep_agent.episodes import is_recall_message
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
    said = [m.content for m in state.values["messages"] if m.type == "human" and not is_recall_message(m)]
    assert said == ["what is my name ?"]  # the old session's turns are gone; recall is quoted beside it


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


@pytest.fixture
def web(config, gate_accepts):
    """The web app on one started backend, with three users: alice, bob and an admin."""
    backend = create_backend(config).start()
    users = WebUsers(config.home)
    tokens = {name: users.add(name) for name in ("alice", "bob")}
    tokens["root"] = users.add("root", admin=True)
    app = create_app(config, backend=backend, cycle=StandardCycle(QUICK))
    with TestClient(app, base_url="http://127.0.0.1:8700") as client:
        yield app, client, tokens
    backend.stop()


def as_(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def settled(client, token, user=None):  # noqa: ANN001, ANN201
    """The status once the user's background work has finished."""
    params = {"user": user} if user else {}
    for _ in range(600):
        status = client.get("/api/status", params=params, headers=as_(token)).json()
        if status["busy"] is None:
            return status
        time.sleep(0.1)
    raise AssertionError("the background work did not finish in a minute")


def test_the_web_api_chats_per_user_and_sleeps_and_forgets_in_the_background(web):
    app, client, tokens = web
    alice, bob = as_(tokens["alice"]), as_(tokens["bob"])
    page = client.get("/")
    assert page.status_code == 200 and 'id="last-sleep"' in page.text
    reply = client.post("/api/chat", json={"text": "my name is zorblax"}, headers=alice).json()
    assert reply["adapter"] == "base" and reply["slept"] is None
    assert reply["status"]["episodes"]["pending"] == 1 and reply["status"]["turns"] == 1
    asleep = client.post("/api/sleep", json={}, headers=alice)
    assert asleep.status_code == 202 and asleep.json()["started"] is True  # answered before the sleep ends
    status = settled(client, tokens["alice"])
    assert status["active_adapter"] == "alice@v1" and "adapter v1" in status["last_sleep"][0]
    assert client.get("/api/status", headers=bob).json()["active_adapter"] is None
    (config_home(app) / "adapters" / '"><img src=x onerror=alert(1)>').mkdir(parents=True)
    admin = as_(tokens["root"])
    assert client.get("/api/users", headers=admin).json()["users"] == ["alice"]  # a stray folder is no user
    assert not (config_home(app) / "adapters" / "bob").exists()  # a GET made no user
    assert "innerHTML" not in page.text  # the page builds no HTML from what it is sent
    bob_reply = client.post("/api/chat", json={"text": "my name is quenty"}, headers=bob).json()
    assert (
        bob_reply["adapter"] == "base" and bob_reply["status"]["episodes"]["pending"] == 1
    )  # not alice's v1
    assert client.get("/api/users", headers=admin).json()["users"] == ["alice", "bob"]
    sessions = app.state.sessions
    assert sessions.get("alice").bot is sessions.get("bob").bot
    assert client.post("/api/new", json={}, headers=alice).json()["status"]["turns"] == 0

    forgot = client.post("/api/forget", json={"text": "zorblax"}, headers=alice).json()
    assert forgot["result"]["deleted"] == 1 and forgot["result"]["rebuilding"] is True  # erased already
    status = settled(client, tokens["alice"])
    assert status["rebuild_needed"] is False and status["active_adapter"] is None  # nothing left: base

    sessions.max_sessions = 2  # a third user ends the session used longest ago
    bob_thread = sessions.get("bob").thread
    assert list(sessions.bot._checkpointer.list({"configurable": {"thread_id": bob_thread}}))
    sessions.get("alice")
    client.post("/api/new", json={"user": "carol"}, headers=admin)
    assert list(sessions._sessions) == ["alice", "carol"]
    assert not list(sessions.bot._checkpointer.list({"configurable": {"thread_id": bob_thread}}))
    assert client.get("/api/status", headers=bob).json()["episodes"]["pending"] == 1  # memory kept


def config_home(app):  # noqa: ANN001, ANN201
    return app.state.sessions.config.home


def test_a_user_reaches_only_their_own_memory_and_an_admin_reaches_every_one(web):
    app, client, tokens = web
    alice, bob, admin = as_(tokens["alice"]), as_(tokens["bob"]), as_(tokens["root"])
    client.post("/api/chat", json={"text": "my locker code is 2719"}, headers=alice)
    for method, path, body in [
        ("post", "/api/chat", {"text": "hi"}),
        ("post", "/api/sleep", {}),
        ("post", "/api/forget", {"text": "locker code"}),
        ("post", "/api/new", {}),
        ("get", "/api/status", None),
        ("get", "/api/users", None),
        ("get", "/api/me", None),
    ]:
        kw = {"json": {"user": "alice", **body}} if body is not None else {"params": {"user": "alice"}}
        assert getattr(client, method)(path, **kw).status_code == 401, path  # no token
        assert getattr(client, method)(path, headers=as_("not-a-token"), **kw).status_code == 401, path
        if path not in ("/api/users", "/api/me"):
            assert getattr(client, method)(path, headers=bob, **kw).status_code == 403, path
    assert client.get("/api/users", headers=bob).json()["users"] == ["bob"]  # bob sees no one else
    pending = client.get("/api/status", headers=alice).json()["episodes"]
    assert pending == {"pending": 1, "consolidated": 0, "rejected": 0, "deleted": 0}  # bob changed nothing
    seen = client.get("/api/status", params={"user": "alice"}, headers=admin).json()
    assert seen["episodes"] == pending  # the admin view is explicit: an admin token, a named user

    login = client.post("/api/login", json={"token": tokens["alice"]})  # the page's login: a cookie
    assert login.json() == {"user": "alice", "admin": False}
    assert (
        "httponly" in login.headers["set-cookie"].lower()
        and "samesite=strict" in login.headers["set-cookie"].lower()
    )
    session = client.cookies.get("sleep_agent_session")
    assert session and tokens["alice"] not in login.headers["set-cookie"]  # a session id, not the token
    assert client.get("/api/me").json()["user"] == "alice"
    assert client.get("/api/status", params={"user": "bob"}).status_code == 403
    client.post("/api/logout")
    assert client.get("/api/me").status_code == 401
    client.cookies.set("sleep_agent_session", session)
    assert client.get("/api/me").status_code == 401  # the session ended here, not only in the browser
    client.cookies.clear()
    assert client.post("/api/login", json={"token": "guess"}).status_code == 401
    stored = (config_home(app) / "web" / "users.json").read_text()
    assert (
        tokens["alice"] not in stored
        and oct((config_home(app) / "web" / "users.json").stat().st_mode)[-3:] == "600"
    )
    WebUsers(config_home(app)).remove("alice")
    assert client.get("/api/me", headers=alice).status_code == 401  # a removed user is out at once
    with pytest.raises(ValueError, match="letters"):
        WebUsers(config_home(app)).add("a..b")  # a name no memory may take
    (config_home(app) / "web" / "users.json").write_text("{not json")
    broken = client.get("/api/me", headers=bob)
    assert broken.status_code == 503 and "users.json" in broken.json()["detail"]  # not a 500


def test_the_web_api_refuses_bad_input_and_what_another_site_could_send(web):
    app, client, tokens = web
    alice = as_(tokens["alice"])
    client.post("/api/chat", json={"text": "my name is zorblax"}, headers=alice)
    assert (
        client.post(
            "/api/chat", json={"user": "../etc", "text": "hi"}, headers=as_(tokens["root"])
        ).status_code
        == 400
    )
    assert client.post("/api/chat", json={"text": "   "}, headers=alice).status_code == 400
    assert client.post("/api/chat", json={}, headers=alice).status_code == 422
    before = client.get("/api/status", headers=alice).json()["episodes"]
    rebound = client.post("/api/chat", json={"text": "hi"}, headers={**alice, "host": "evil.example"})
    assert rebound.status_code == 400  # a DNS-rebound name
    cross = client.post(
        "/api/forget", json={"text": "zorblax"}, headers={**alice, "origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    other_port = client.post("/api/new", json={}, headers={**alice, "origin": "http://127.0.0.1:9999"})
    assert other_port.status_code == 403  # another service on this host is another site
    assert (
        client.post("/api/chat", json={"user": "a..b", "text": "hi"}, headers=as_(tokens["root"])).status_code
        == 400
    )
    form = client.post("/api/sleep", content="{}", headers={**alice, "content-type": "text/plain"})
    assert form.status_code == 422  # a form or text body, which a cross-site page can send without asking
    assert client.post("/api/chat", json={"text": "x" * 5000}, headers=alice).status_code == 422
    json_body = {**alice, "content-type": "application/json"}
    huge = client.post("/api/chat", content=b"{" + b" " * 70_000 + b"}", headers=json_body)
    assert huge.status_code == 413

    def chunks():  # no Content-Length: the size is counted as the body comes
        yield b'{"text": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}'

    chunked = client.post("/api/chat", content=chunks(), headers=json_body)
    assert chunked.status_code == 413
    assert client.get("/api/status", headers=alice).json()["episodes"] == before
    same_origin = {**alice, "origin": "http://127.0.0.1:8700"}
    assert client.post("/api/new", json={}, headers=same_origin).status_code == 200


def test_a_forget_while_a_rebuild_runs_is_rebuilt_away_too(session):
    from sleep_agent.adapters import AdapterRegistry

    memory = session.memory
    for fact in ("My locker code is 2719.", "My bike lock code is 8841.", "I work as a baker."):
        memory.buffer.record([("user", fact)])
    assert memory.sleep().adapter_version == 1
    started, go_on, real = threading.Event(), threading.Event(), memory.cycle

    def held(mem, episodes, report):  # the first rebuild has fixed its list of forgotten episodes
        started.set()
        assert go_on.wait(60)
        return real(mem, episodes, report)

    memory.cycle = held
    first = session.forget("locker code", background=True)
    assert first["rebuilding"] is True and started.wait(60)
    memory.cycle = real
    second = session.forget("bike lock", background=True)
    assert second["deleted"] == 1 and second["rebuilding"] is False  # the running thread takes it on
    go_on.set()
    for _ in range(600):
        if session.busy is None:
            break
        time.sleep(0.1)
    assert session.busy is None and not memory.rebuild_needed  # both are out of the weights
    registry = AdapterRegistry(memory.config.home, "alice")
    current = registry.manifest(registry.current())
    assert current.trigger == "forget" and len(current.episodes) == 1  # the baker alone
