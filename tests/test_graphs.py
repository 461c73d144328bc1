"""The ready-made graph runs for real (local backend on the tiny model)."""

import importlib.util

from conftest import REPO


def test_chat_graph_answers_through_the_configured_backend(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("SLEEP_AGENT_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("SLEEP_AGENT_SERVING", "local")
    spec = importlib.util.spec_from_file_location("chat_graph", REPO / "graphs" / "chat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.graph.invoke({"messages": [("user", "hello")]})
    assert [m.type for m in result["messages"]] == ["human", "ai"]
    assert result["messages"][-1].response_metadata["model_name"] == "base"


def test_sleep_agent_graph_answers_and_records_the_turn(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("SLEEP_AGENT_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("SLEEP_AGENT_SERVING", "local")
    monkeypatch.setenv("SLEEP_AGENT_NAMESPACE", "graphs-test")
    spec = importlib.util.spec_from_file_location("sleep_agent_graph", REPO / "graphs" / "sleep_agent.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.memory._backend is None  # loading the graph started nothing
    result = module.graph.invoke({"messages": [("user", "where does zorblax quenty live ?")]})
    assert result["messages"][-1].type == "ai"
    (episode,) = module.memory.buffer.episodes()
    assert (
        episode.namespace == "graphs-test" and episode.parts[0].content == "where does zorblax quenty live ?"
    )
    assert result["sleep_decision"]["sleep"] is False
