"""A ready-made agent with sleepable memory, for ``langgraph dev``: one graph, any number of users.

Each run names its user: ``config={"configurable": {"user_id": "ana"}}`` (or the run's context), and
gets that user's own memory and adapter. Configured by environment: SLEEP_AGENT_NAMESPACE (a
template, default "user-{user_id}"; a plain name makes every run share one memory), SLEEP_AGENT_MODEL (default
"default"), SLEEP_AGENT_SERVING ("vllm" or "local", default "local"), SLEEP_AGENT_BASE_URL (attach
to a running vLLM server; SLEEP_AGENT_API_KEY is its key), SLEEP_AGENT_HOME (default .sleep_agent), SLEEP_AGENT_CHROMA_URL (a
shared `chroma run` server). The model starts on the first turn, not at import.
"""

from __future__ import annotations

import os

from sleep_agent import BufferConfig, ServingConfig, SleepConfig, SleepMemory, create_sleep_agent

config = SleepConfig(
    namespace=os.environ.get("SLEEP_AGENT_NAMESPACE", "user-{user_id}"),
    model=os.environ.get("SLEEP_AGENT_MODEL", "default"),
    serving=ServingConfig(
        backend=os.environ.get("SLEEP_AGENT_SERVING", "local"),
        base_url=os.environ.get("SLEEP_AGENT_BASE_URL"),
        api_key=os.environ.get("SLEEP_AGENT_API_KEY"),
    ),
    home=os.environ.get("SLEEP_AGENT_HOME", ".sleep_agent"),
    buffer=BufferConfig(url=os.environ.get("SLEEP_AGENT_CHROMA_URL")),
)
memory = SleepMemory(config)
graph = create_sleep_agent(memory)
