"""A server that is away (down, restarting) during a reload: the sleep still publishes, the agent keeps
answering on the version it had, and the reload is retried with growing waits.

The tiny test Llama is served in-process; the outage is injected by making the backend's calls fail
the way a refused connection does. The gate accepts every candidate (the tiny model learns nothing
a real gate would accept; what is tested is what happens around the reload).
"""

from __future__ import annotations

import pytest
from conftest import tiny_config
from langchain_core.messages.utils import count_tokens_approximately

from sleep_agent import AdapterLoadError, SleepMemory
from sleep_agent.adapters import AdapterRegistry
from sleep_agent.serving.base import activate_with_retry
from sleep_agent.sleep.consolidate import LoraTrainConfig
from sleep_agent.sleep.standard import CycleConfig, StandardCycle

QUICK = CycleConfig(
    training=LoraTrainConfig(rank=4, max_steps=2, batch_size=4),
    anchors=False,
    gate={"max_perplexity_rise": None},
    reload_attempts=3,
    reload_backoff_s=0.01,
)


@pytest.fixture
def memory(tiny_model_dir, tmp_path, gate_accepts):
    config = tiny_config(tiny_model_dir, tmp_path / "home")
    with SleepMemory(config, cycle=StandardCycle(QUICK), token_counter=count_tokens_approximately) as memory:
        memory.buffer.record([("user", "Aria lives in Portland.")])
        assert memory.sleep().adapter_version == 1
        yield memory


class Outage:
    """Makes ``calls`` of a backend method fail like a refused connection; ``None`` means for good."""

    def __init__(self, real, calls: int | None) -> None:
        self.real, self.left, self.tries = real, calls, 0

    def __call__(self, *args, **kwargs):
        self.tries += 1
        if self.left is None or self.left > 0:
            self.left = None if self.left is None else self.left - 1
            raise ConnectionError("connection refused: the server is restarting")
        return self.real(*args, **kwargs)


def test_a_sleep_publishes_while_the_server_is_away_and_reload_serves_it_later(memory, monkeypatch):
    memory.buffer.record([("user", "Enid works as a baker.")])
    outage = Outage(memory.backend.activate, calls=None)
    monkeypatch.setattr(memory.backend, "activate", outage)
    report = memory.sleep()
    assert report.adapter_version == 2 and outage.tries == QUICK.reload_attempts
    assert "could not serve 'alice@v2' after 3 attempts" in report.metrics["reload_error"]
    assert AdapterRegistry(memory.config.home, "alice").current() == 2  # published: a restart serves it
    assert memory.buffer.episodes("pending") == []  # and its episodes are marked
    assert memory.backend.active_for("alice") == "alice@v1"  # the agent keeps the version it had
    assert memory.chat_model(max_tokens=4).invoke("Hi").response_metadata["model_name"] == "alice@v1"

    monkeypatch.setattr(memory.backend, "activate", Outage(outage.real, calls=2))  # back after 2 tries
    assert memory.reload(attempts=3, backoff_s=0.01) == "alice@v2"
    assert (
        memory.backend.active_for("alice") == "alice@v2" and "alice@v1" not in memory.backend.loaded_adapters
    )


def test_a_restarted_server_gets_the_current_version_loaded_again(memory):
    backend = memory.backend
    backend.stop()  # a restart: the new process holds no adapter
    backend.start()
    assert backend.loaded_adapters == {} and backend.active_for("alice") is None
    assert memory.reload() == "alice@v1"
    assert backend.active_for("alice") == "alice@v1" and "alice@v1" in backend.loaded_adapters


def test_activation_gives_up_after_its_attempts_with_a_clear_error(memory, monkeypatch):
    registry = AdapterRegistry(memory.config.home, "alice")
    monkeypatch.setattr(memory.backend, "activate", Outage(memory.backend.activate, calls=None))
    with pytest.raises(
        AdapterLoadError, match=r"after 2 attempts: connection refused.*previous version keeps"
    ):
        activate_with_retry(memory.backend, "alice@v1", registry.path(1), attempts=2, backoff_s=0.01)


def test_a_chat_model_whose_server_is_away_names_the_fix_and_streams_the_same_error():
    """A real openai client against a port nothing listens on (what a killed vLLM leaves)."""
    from sleep_agent import ServerUnavailableError
    from sleep_agent.serving.router import AdapterRouter
    from sleep_agent.serving.vllm import RoutedChatOpenAI, free_port

    router = AdapterRouter("base")
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = RoutedChatOpenAI(router=router, namespace="alice", base_url=url, api_key="EMPTY", max_retries=0)
    with pytest.raises(ServerUnavailableError, match=r"did not answer.*memory\.reload\(\)") as caught:
        llm.invoke("hello")
    assert isinstance(caught.value, ConnectionError) and url.removesuffix("/v1") in str(caught.value)
    with pytest.raises(ServerUnavailableError):
        list(llm.stream("hello"))
    assert router.inflight("base") == 0  # the failed calls do not hold up a later swap


def test_a_server_gone_during_the_gate_fails_the_sleep_cleanly_and_the_next_one_publishes(
    memory, monkeypatch
):
    backend = memory.backend
    registry = AdapterRegistry(memory.config.home, "alice")
    enid = memory.buffer.record([("user", "Enid works as a baker.")]).id
    real_load, real_chat = backend.load_adapter, backend.chat

    def load_then_go_away(*args, **kwargs):  # the candidate is loaded, then the server dies
        result = real_load(*args, **kwargs)
        monkeypatch.setattr(backend, "chat", Outage(real_chat, calls=None))
        return result

    monkeypatch.setattr(backend, "load_adapter", load_then_go_away)
    with pytest.raises(ConnectionError, match="restarting"):
        memory.sleep()
    assert "ConnectionError" in memory.last_report.error
    assert registry.current() == 1 and registry.versions() == [1]  # the ungated candidate is not published
    assert registry.leftovers() == [] and "alice@v2" not in backend.loaded_adapters  # and is withdrawn
    assert [ep.id for ep in memory.buffer.episodes("pending")] == [enid]  # kept for the next sleep
    assert backend.active_for("alice") == "alice@v1"

    monkeypatch.setattr(backend, "load_adapter", real_load)
    monkeypatch.setattr(backend, "chat", real_chat)  # the server is back
    assert memory.sleep().adapter_version == 2 and memory.buffer.episodes("pending") == []


def test_the_served_chat_model_answers_from_one_event_loop_after_another(tmp_path):
    """Each ``asyncio.run`` (a script's turn, a worker thread) gets working connections: a pool kept
    from a closed loop fails with "Event loop is closed". An OpenAI-speaking HTTP server stands in for
    vLLM (the client, not the server, is under test)."""
    import asyncio
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sleep_agent.serving.vllm import VLLMServer

    class Completions(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: connections stay in the client's pool

        def do_POST(self) -> None:  # noqa: N802
            model = json.loads(self.rfile.read(int(self.headers["content-length"])))["model"]
            body = json.dumps(
                {
                    "id": "1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": model},
                            "finish_reason": "stop",
                        }
                    ],
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Completions)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        server = VLLMServer(tmp_path, log_dir=tmp_path)
        server.base_url = f"http://127.0.0.1:{http.server_port}"
        llm = server.chat_model(namespace="alice", max_retries=0)
        answers = [asyncio.run(llm.ainvoke("hello")).content for _ in range(3)]
    finally:
        http.shutdown()
    assert answers == ["base", "base", "base"]  # the router's model for alice (no adapter yet)


def test_a_failed_reload_after_a_forget_rebuild_serves_the_base_model_not_the_old_version(
    memory, monkeypatch
):
    """The old version holds what was forgotten: with the rebuild not served, nobody may get the old one."""
    memory.buffer.record([("user", "Enid works as a baker.")])
    assert memory.sleep().adapter_version == 2
    outage = Outage(memory.backend.activate, calls=None)
    monkeypatch.setattr(memory.backend, "activate", outage)
    result = memory.forget(text="aria lives")
    report = memory.last_report
    assert result["rebuilt_version"] == 3 and "reload_error" in report.metrics
    assert report.metrics["serving_base_until_reload"] is True
    assert memory.backend.active_for("alice") is None  # the base model answers, not alice@v2
    assert "alice@v2" not in memory.backend.loaded_adapters
    reply = memory.chat_model(max_tokens=4).invoke("Where does Aria live?")
    assert reply.response_metadata["model_name"] == memory.backend.base_name
    assert not memory.rebuild_needed  # v1 and v2 are retired: no servable version holds it

    monkeypatch.setattr(memory.backend, "activate", outage.real)  # the server is back
    assert memory.reload(attempts=2, backoff_s=0.01) == "alice@v3"


def test_replies_are_bounded_by_default_and_a_call_may_ask_for_more_or_no_bound(tmp_path):
    """A small model left unbounded rambles to the window, and the context trigger then sleeps on the
    first turn; the vLLM backend's chat models stop at ServingConfig.max_tokens unless asked."""
    from sleep_agent import ServingConfig
    from sleep_agent.serving.vllm import VLLMServer, free_port

    attached = {"base_url": f"http://127.0.0.1:{free_port()}"}
    backend = VLLMServer(tmp_path, config=ServingConfig(**attached), log_dir=tmp_path / "logs")
    assert backend.chat_model().max_tokens == 512
    assert backend.chat_model(max_tokens=48).max_tokens == 48
    unbounded = VLLMServer(
        tmp_path, config=ServingConfig(**attached, max_tokens=None), log_dir=tmp_path / "logs"
    )
    assert unbounded.chat_model().max_tokens is None
