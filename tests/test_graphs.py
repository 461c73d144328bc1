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
