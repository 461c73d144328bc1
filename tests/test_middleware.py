"""create_agent (LangChain 1.x) with SleepMemoryMiddleware: recall, record and sleep per run's user.

The agent's model is the tiny Llama served in-process; the cycle accepts what it is given (as in
test_nodes), so what is checked is the wiring. A real sleep of a create_agent agent's tool trajectory
on vLLM is in tests/test_serving_vllm.py.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import tiny_config
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages.utils import count_tokens_approximately

from sleep_agent import NamespaceError, SleepMemory, SleepPolicy
from sleep_agent.episodes import RECALL_MARKER
from sleep_agent.serving.local import parse_tool_calls
from tests.test_nodes import AcceptAll

pytest.importorskip("langchain.agents")
from langchain.agents import create_agent  # noqa: E402

from sleep_agent.middleware import SleepMemoryMiddleware  # noqa: E402


@pytest.fixture
def memory(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, tmp_path / "home", namespace="{user_id}")
    config.policy = SleepPolicy(pending_episodes=2, pending_tokens=None, context_fraction=None)
    config.recall.k = 2
    with SleepMemory(config, cycle=AcceptAll(), token_counter=count_tokens_approximately) as memory:
        yield memory


def run(user: str, thread: str = "t") -> dict:
    return {"configurable": {"user_id": user, "thread_id": f"{user}-{thread}"}}


def test_each_user_is_recalled_recorded_and_slept_apart(memory):
    agent = create_agent(memory.chat_model(max_tokens=4), middleware=[SleepMemoryMiddleware(memory)])
    agent.invoke({"messages": [("user", "my favorite color is blue .")]}, run("ana"))
    agent.invoke({"messages": [("user", "my favorite color is red .")]}, run("ben"))

    out = agent.invoke({"messages": [("user", "what is my favorite color ?")]}, run("ana", "t2"))
    (recalled,) = [m for m in out["messages"] if m.name == RECALL_MARKER]
    assert "blue" in recalled.text and "red" not in recalled.text
    at = [m.name for m in out["messages"]].index(RECALL_MARKER)  # quoted just before the question
    assert (
        out["messages"][at].type == "human" and out["messages"][at + 1].text == "what is my favorite color ?"
    )
    assert out["messages"][-1].type == "ai"
    assert out["messages"][-1].response_metadata["model_name"] == "base"  # nobody has an adapter yet

    # ana's second recorded turn reached pending_episodes=2: her memory slept, ben's did not
    assert out["sleep_report"]["namespace"] == "ana" and out["sleep_report"]["adapter_version"] == 1
    assert memory.for_namespace("ana").buffer.counts()["consolidated"] == 2
    assert memory.for_namespace("ben").buffer.counts()["pending"] == 1
    with pytest.raises(NamespaceError):
        agent.invoke({"messages": [("user", "hello")]})


def test_the_async_hooks_serve_concurrent_users(memory):
    agent = create_agent(memory.chat_model(max_tokens=4), middleware=[SleepMemoryMiddleware(memory)])

    async def both() -> None:
        await asyncio.gather(
            agent.ainvoke({"messages": [("user", "my name is zorblax .")]}, run("ana")),
            agent.ainvoke({"messages": [("user", "my name is quenty .")]}, run("ben")),
        )

    asyncio.run(both())
    for user, name, other in (("ana", "zorblax", "quenty"), ("ben", "quenty", "zorblax")):
        text = " ".join(ep.text for ep in memory.for_namespace(user).buffer.episodes(None))
        assert name in text and other not in text


def test_a_model_the_memory_does_not_serve_is_named_at_build_time(memory):
    api_model = FakeListChatModel(responses=["hi"])
    with pytest.warns(UserWarning, match="not served by this memory"):
        SleepMemoryMiddleware(memory, model=api_model)
    agent = create_agent(api_model, middleware=[SleepMemoryMiddleware(memory)])
    with pytest.warns(UserWarning, match="not served by this memory"):  # or at the first call
        agent.invoke({"messages": [("user", "hello there")]}, run("ana"))
    assert memory.for_namespace("ana").buffer.counts()["pending"] == 1  # recording works all the same


def test_the_local_model_takes_tools_and_reads_the_calls_it_writes(memory):
    from langchain_core.tools import tool

    @tool
    def weather(city: str) -> str:
        """Today's weather in a city."""
        return city

    bound = memory.chat_model(max_tokens=4).bind_tools([weather])
    assert bound.kwargs["tools"][0]["function"]["name"] == "weather"
    with pytest.raises(NotImplementedError, match="vLLM"):
        memory.chat_model().bind_tools([weather], tool_choice="required")

    text, calls = parse_tool_calls(
        'Let me look. <tool_call>{"name": "weather", "arguments": {"city": "Oslo"}}</tool_call>'
    )
    assert text == "Let me look." and [(c["name"], c["args"]) for c in calls] == [
        ("weather", {"city": "Oslo"})
    ]
    assert parse_tool_calls("<tool_call>not json</tool_call>") == ("<tool_call>not json</tool_call>", [])
