"""One memory and one compiled graph for many users: the namespace is filled per run.

The fast tests use an echo agent and a cycle that accepts what it is given (as test_nodes does),
so what is checked is the routing: whose buffer a turn lands in, whose memories are recalled,
whose sleep runs. The vLLM test at the end runs the standard cycle for two users at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.messages.utils import count_tokens_approximately
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError

from sleep_agent import (
    NamespaceError,
    RecallConfig,
    ServingConfig,
    SleepConfig,
    SleepMemory,
    SleepPolicy,
    with_sleep_memory,
)
from sleep_agent.episodes import RECALL_MARKER
from tests.test_nodes import QUIET, AcceptAll, echo


def users_memory(template: str = "user-{user_id}", cycle=None, **policy) -> SleepMemory:
    config = SleepConfig(
        namespace=template,
        policy=SleepPolicy(**{**QUIET, **policy}),
        recall=RecallConfig(k=2),
        serving=ServingConfig(max_model_len=256),
    )
    return SleepMemory(config, cycle=cycle or AcceptAll(), token_counter=count_tokens_approximately)


def run(user: str, thread: str = "t") -> dict:
    return {"configurable": {"user_id": user, "thread_id": f"{user}-{thread}"}}


def recalled(result: dict) -> str:
    return "\n".join(m.text for m in result["messages"] if m.name == RECALL_MARKER)


def test_each_run_lands_in_its_own_users_buffer_and_recall_never_crosses() -> None:
    memory = users_memory()
    graph = with_sleep_memory(echo, memory, checkpointer=InMemorySaver())
    graph.invoke({"messages": [("user", "My locker code is 4417.")]}, run("ana"))
    graph.invoke({"messages": [("user", "My locker code is 9902.")]}, run("ben"))

    assert memory.namespaces() == ["user-ana", "user-ben"]
    ana, ben = memory.for_namespace("user-ana"), memory.for_namespace("user-ben")
    assert [ep.text for ep in ana.buffer.episodes("pending")] == [
        "user: My locker code is 4417.\nassistant: noted: My locker code is 4417."
    ]
    assert "9902" not in " ".join(ep.text for ep in ana.buffer.episodes(None))
    assert "4417" not in " ".join(ep.text for ep in ben.buffer.episodes(None))

    asked = graph.invoke({"messages": [("user", "What is my locker code?")]}, run("ana", "t2"))
    assert "4417" in recalled(asked) and "9902" not in recalled(asked)
    asked = graph.invoke({"messages": [("user", "What is my locker code?")]}, run("ben", "t2"))
    assert "9902" in recalled(asked) and "4417" not in recalled(asked)


def test_the_user_can_come_from_the_runs_context() -> None:
    @dataclass
    class Context:
        user_id: str

    memory = users_memory("{user_id}")
    graph = with_sleep_memory(echo, memory)
    graph.invoke({"messages": [("user", "I keep bees.")]}, context=Context(user_id="cleo"))
    graph.invoke({"messages": [("user", "I keep goats.")]}, context={"user_id": "dev"})
    assert memory.namespaces() == ["cleo", "dev"]
    assert memory.for_namespace("cleo").buffer.counts()["pending"] == 1


def test_a_run_without_a_user_is_refused_and_records_nothing() -> None:
    memory = users_memory()
    graph = with_sleep_memory(echo, memory)
    with pytest.raises(NamespaceError, match="user_id"):
        graph.invoke({"messages": [("user", "I keep bees.")]})
    with pytest.raises(NamespaceError, match="not allowed"):
        graph.invoke({"messages": [("user", "I keep bees.")]}, run("../etc"))
    assert memory.namespaces() == []
    with pytest.raises(NamespaceError, match="for_namespace"):
        memory.sleep()  # a template memory sleeps one user at a time
    with pytest.raises(ValidationError, match="plain names"):
        SleepConfig(namespace="user-{user.id}")


def test_a_sleep_consolidates_only_the_runs_user() -> None:
    cycle = AcceptAll()
    memory = users_memory(cycle=cycle, pending_episodes=2)
    graph = with_sleep_memory(echo, memory, checkpointer=InMemorySaver())
    graph.invoke({"messages": [("user", "I live in Oslo.")]}, run("ana"))
    graph.invoke({"messages": [("user", "I live in Lima.")]}, run("ben"))
    result = graph.invoke({"messages": [("user", "I work at a bakery.")]}, run("ana"))

    assert result["sleep_report"]["namespace"] == "user-ana"
    assert len(cycle.calls) == 1 and len(cycle.calls[0]) == 2
    assert memory.for_namespace("user-ana").buffer.counts()["consolidated"] == 2
    assert memory.for_namespace("user-ben").buffer.counts()["pending"] == 1


def test_concurrent_ainvoke_of_two_users_keeps_them_apart() -> None:
    memory = users_memory()
    graph = with_sleep_memory(echo, memory, checkpointer=InMemorySaver())

    async def tell(user: str, facts: list[str]) -> None:
        for fact in facts:
            await graph.ainvoke({"messages": [("user", fact)]}, run(user))

    async def both() -> None:
        await asyncio.gather(
            tell("ana", [f"Ana fact {i}: my tea is green." for i in range(4)]),
            tell("ben", [f"Ben fact {i}: my tea is black." for i in range(4)]),
        )

    asyncio.run(both())
    for user, mine, theirs in (("ana", "green", "black"), ("ben", "black", "green")):
        texts = " ".join(ep.text for ep in memory.for_namespace(f"user-{user}").buffer.episodes(None))
        assert texts.count(mine) == 8 and theirs not in texts  # 4 user turns, 4 echoes


def test_astream_reports_the_sleep_to_the_custom_stream() -> None:
    memory = users_memory(pending_episodes=1)

    class Stages(AcceptAll):
        def __call__(self, memory, episodes, report):  # noqa: ANN001, ANN204
            from sleep_agent import progress

            progress.emit({"stage": "consolidate", "step": 1, "of": 1, "loss": 0.5})
            return super().__call__(memory, episodes, report)

    memory.cycle = Stages()
    memory.for_namespace("user-ana").cycle = memory.cycle
    graph = with_sleep_memory(echo, memory)

    async def collect() -> list:
        return [
            chunk
            async for chunk in graph.astream(
                {"messages": [("user", "I live in Oslo.")]}, run("ana"), stream_mode=["custom", "updates"]
            )
        ]

    chunks = asyncio.run(collect())
    custom = [c for mode, c in chunks if mode == "custom"]
    assert {"sleep_agent": "sleep", "stage": "consolidate", "step": 1, "of": 1, "loss": 0.5} in custom
    assert any(mode == "updates" and "sleep" in c for mode, c in chunks)


def test_recall_goes_after_the_leading_system_messages() -> None:
    memory = users_memory()
    seen: list[list] = []

    def agent(state: dict) -> dict:
        seen.append(list(state["messages"]))
        return echo(state)

    graph = with_sleep_memory(agent, memory, checkpointer=InMemorySaver())
    graph.invoke({"messages": [HumanMessage("My dog is Rex.")]}, run("ana", "first"))
    config = run("ana", "second")
    graph.invoke(
        {"messages": [SystemMessage("You are terse."), HumanMessage("What is my dog called?")]}, config
    )
    graph.invoke({"messages": [HumanMessage("And my dog's name again?")]}, config)

    last = seen[-1]
    kinds = [(type(m).__name__, m.name == RECALL_MARKER) for m in last]
    assert kinds[0] == ("SystemMessage", False) and kinds[1] == ("SystemMessage", True)
    assert sum(is_recall for _, is_recall in kinds) == 1  # the previous turn's memory was replaced
    assert not any(isinstance(m, SystemMessage) for m in last[2:])
    assert "Rex" in last[1].text
    assert [m.text for m in last if isinstance(m, AIMessage)] == ["noted: What is my dog called?"]
