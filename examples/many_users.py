"""One memory and one compiled graph for many users: two people tell the agent opposite facts at
the same time, each falls asleep on their own memories, and each is then answered from their own
adapter.

    python examples/many_users.py           # vLLM on the default model; two sleeps, ~15 min on 2 CPU cores

The user comes from each run's ``configurable["user_id"]`` and fills the memory's namespace
template (``"user-{user_id}"``), the way a deployed graph is called; every user has their own
buffer and adapter versions on one shared server. ``tests/test_serving_vllm.py`` runs the same
``tell`` and ``ask`` with a short cycle.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from rich.console import Console

FACTS = {"ana": "Remember this: my locker code is 4417.", "ben": "Remember this: my locker code is 9902."}
QUESTION = "What is my locker code?"


async def tell(graph: Any, facts: dict[str, str]) -> dict[str, list]:
    """Each user's fact in a run of their own, all at once; a run that reaches the memory's
    threshold sleeps inside the graph and streams its progress (stage, step, loss)."""

    async def one(user: str, text: str) -> list:
        run = {"configurable": {"user_id": user, "thread_id": f"{user}-tells"}}
        stream = graph.astream({"messages": [("user", text)]}, run, stream_mode=["custom", "updates"])
        return [chunk async for chunk in stream]

    streams = await asyncio.gather(*(one(user, text) for user, text in facts.items()))
    return dict(zip(facts, streams, strict=True))


async def ask(graph: Any, users: list[str], question: str) -> dict[str, Any]:
    """The same question from every user, each in a new thread: the context holds nothing."""

    async def one(user: str) -> Any:
        run = {"configurable": {"user_id": user, "thread_id": f"{user}-asks"}}
        out = await graph.ainvoke({"messages": [("user", question)]}, run)
        return out["messages"][-1]

    replies = await asyncio.gather(*(one(user) for user in users))
    return dict(zip(users, replies, strict=True))


def main() -> None:
    from sleep_agent import RecallConfig, SleepConfig, SleepMemory, SleepPolicy, create_sleep_agent

    console = Console()
    config = SleepConfig(
        namespace="user-{user_id}",
        serving="vllm",
        home=tempfile.mkdtemp(prefix="sleep-agent-users-"),
        policy=SleepPolicy(pending_episodes=1),  # sleep after every told fact, to show it
        recall=RecallConfig(k=0),  # answers from the weights alone
    )
    with SleepMemory(config) as memory:
        graph = create_sleep_agent(memory)
        for user, chunks in asyncio.run(tell(graph, FACTS)).items():
            stages = [
                c["stage"] for mode, c in chunks if mode == "custom" and "step" not in c and "stage" in c
            ]
            console.print(f"[bold]{user}[/] slept: {' -> '.join(dict.fromkeys(stages))}")
        for user, reply in asyncio.run(ask(graph, list(FACTS), QUESTION)).items():
            console.print(f"[bold]{user}[/] ({reply.response_metadata.get('model_name')}): {reply.content}")


if __name__ == "__main__":
    main()
