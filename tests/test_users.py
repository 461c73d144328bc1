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


def test_recall_is_quoted_just_before_the_question_and_the_prompt_stays_the_only_system_message() -> None:
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
    # the deployment's prompt stays the only system message; the memory is quoted in the user's
    # turn, just before the question it was recalled for
    assert kinds[0] == ("SystemMessage", False) and kinds[-2:] == [
        ("HumanMessage", True),
        ("HumanMessage", False),
    ]
    assert sum(is_recall for _, is_recall in kinds) == 1  # the previous turn's memory was replaced
    assert not any(isinstance(m, SystemMessage) for m in last[1:])
    assert "Rex" in last[-2].text and last[-1].text == "And my dog's name again?"
    assert [m.text for m in last if isinstance(m, AIMessage)] == ["noted: What is my dog called?"]


# Two template families that take one system message, first, and then strictly alternating turns
# (written here in their shape: an [INST] family that folds the system text into the first user
# turn, and a turn-tag family that has no system role after the first message).
INST_FAMILY = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] + ' ' %}"
    "{% set turns = messages[1:] %}{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}"
    "{% if m['role'] == 'system' %}{{ raise_exception('a system message must come first') }}{% endif %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}"
    "{% if m['role'] == 'user' %}{{ '[INST] ' + (system if loop.first else '') + m['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
)
TURN_FAMILY = (
    "{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + ' ' %}"
    "{% set turns = messages[1:] %}{% else %}{% set first = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}"
    "{% if m['role'] not in ['user', 'assistant'] %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('roles must alternate') }}"
    "{% endif %}{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + ' ' }}"
    "{{ (first if loop.first else '') + m['content'] + ' <end_of_turn> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model ' }}{% endif %}"
)


@pytest.mark.parametrize("template", [INST_FAMILY, TURN_FAMILY], ids=["inst", "turn-tags"])
def test_an_agent_with_a_prompt_and_recall_runs_on_templates_that_take_one_leading_system_message(
    template, tiny_model_dir, tmp_path
) -> None:
    """The agent's prompt, the recall message and the history reach a strict template as one
    leading system message and alternating turns; a second system message would be refused."""
    import shutil

    from conftest import tiny_config
    from transformers import AutoTokenizer

    from sleep_agent import create_sleep_agent

    model_dir = tmp_path / "strict"
    shutil.copytree(tiny_model_dir, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(model_dir)
    with pytest.raises(Exception, match="first|not supported"):  # the template is strict
        tokenizer.apply_chat_template(
            [{"role": "system", "content": "a"}, {"role": "system", "content": "b"}], tokenize=False
        )

    config = tiny_config(model_dir, tmp_path / "home", namespace="user-{user_id}")
    config.recall.k = 2
    with SleepMemory(config, cycle=AcceptAll(), token_counter=count_tokens_approximately) as memory:
        agent = create_sleep_agent(
            memory,
            prompt="You are terse.",
            model=memory.chat_model(max_tokens=4),
            checkpointer=InMemorySaver(),
        )
        agent.invoke({"messages": [("user", "My dog is Rex.")]}, run("ana", "first"))
        second = agent.invoke({"messages": [("user", "What is my dog called?")]}, run("ana", "second"))
        third = agent.invoke({"messages": [("user", "And again?")]}, run("ana", "second"))
    assert "Rex" in recalled(second) and "Rex" in recalled(third)  # recall was in the prompt
    assert [m.type for m in third["messages"] if m.name != RECALL_MARKER] == ["human", "ai", "human", "ai"]
