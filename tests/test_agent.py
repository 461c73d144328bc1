"""create_sleep_agent: the ReAct loop runs tools, then the memory records the whole turn.

A 135M model does not call tools reliably, so the tool loop is driven by a scripted chat model
(the one place a fake stands in); memory, buffer and graph are real.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from sleep_agent import SleepConfig, SleepMemory, create_sleep_agent


class ScriptedToolModel(GenericFakeChatModel):
    def bind_tools(self, tools, **kwargs):  # the script already knows which tool it calls
        return self


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Rainy and 12 C in {city}"


def script() -> Iterator[AIMessage]:
    yield AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Vellmora"}, "id": "call-1"}])
    yield AIMessage("It is rainy in Vellmora today.")


def test_tools_run_and_the_whole_turn_is_recorded_with_its_sources():
    memory = SleepMemory(SleepConfig(namespace="alice"), token_counter=count_tokens_approximately)
    agent = create_sleep_agent(
        memory,
        tools=[weather],
        prompt="You are a weather assistant.",
        model=ScriptedToolModel(messages=script()),
        checkpointer=InMemorySaver(),
    )
    out = agent.invoke({"messages": [("user", "Weather in Vellmora?")]}, {"configurable": {"thread_id": "w"}})
    assert out["messages"][-1].content == "It is rainy in Vellmora today."
    (episode,) = memory.buffer.episodes()
    assert [p.source for p in episode.parts] == ["user", "assistant", "tool", "assistant"]
    assert episode.parts[2].content == "Rainy and 12 C in Vellmora" and episode.parts[2].name == "weather"
    assert "You are a weather assistant." not in episode.text  # the prompt is not something lived
    assert out["sleep_decision"]["sleep"] is False


def test_a_model_that_cannot_call_tools_is_a_clear_error():
    memory = SleepMemory(SleepConfig(namespace="alice"), token_counter=count_tokens_approximately)
    no_tools = GenericFakeChatModel(messages=iter([AIMessage("hi")]))  # bind_tools not implemented
    agent = create_sleep_agent(memory, tools=[weather], model=no_tools)
    with pytest.raises(TypeError, match="cannot call tools"):
        agent.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "x"}})
    assert len(memory.buffer) == 0  # nothing half-recorded


def test_building_the_agent_starts_no_server():
    memory = SleepMemory(
        SleepConfig(namespace="alice", serving="vllm"), token_counter=count_tokens_approximately
    )
    create_sleep_agent(memory)
    assert memory.status()["active_adapter"] is None and memory._backend is None
