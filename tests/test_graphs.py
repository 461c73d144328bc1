"""The ready-made graph runs for real (local backend on the tiny model)."""

import importlib.util

import pytest
from conftest import REPO

from sleep_agent import NamespaceError


def test_chat_graph_answers_through_the_configured_backend(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("SLEEP_AGENT_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("SLEEP_AGENT_SERVING", "local")
    spec = importlib.util.spec_from_file_location("chat_graph", REPO / "graphs" / "chat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.graph.invoke({"messages": [("user", "hello")]})
    assert [m.type for m in result["messages"]] == ["human", "ai"]
    assert result["messages"][-1].response_metadata["model_name"] == "base"


def test_sleep_agent_graph_keeps_each_users_memory_apart(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("SLEEP_AGENT_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("SLEEP_AGENT_SERVING", "local")
    monkeypatch.delenv("SLEEP_AGENT_NAMESPACE", raising=False)
    spec = importlib.util.spec_from_file_location("sleep_agent_graph", REPO / "graphs" / "sleep_agent.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.memory._backend is None  # loading the graph started nothing
    told = {"ana": "my name is zorblax .", "ben": "my favorite color is green ."}
    for user, text in told.items():
        result = module.graph.invoke({"messages": [("user", text)]}, {"configurable": {"user_id": user}})
        assert result["messages"][-1].type == "ai" and result["sleep_decision"]["sleep"] is False
    assert module.memory.namespaces() == ["user-ana", "user-ben"]
    for user, text in told.items():
        (episode,) = module.memory.for_namespace(f"user-{user}").buffer.episodes()
        assert episode.namespace == f"user-{user}" and episode.parts[0].content == text
    with pytest.raises(NamespaceError, match="user_id"):  # a run must say whose it is
        module.graph.invoke({"messages": [("user", "hello")]})
