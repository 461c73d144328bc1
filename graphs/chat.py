"""A ready-made chat graph for ``langgraph dev``: one node answering through the served model.

Configured by environment: SLEEP_AGENT_MODEL (default "default"), SLEEP_AGENT_SERVING ("vllm" or
"local", default "local"), SLEEP_AGENT_BASE_URL (attach to a running vLLM server) and
SLEEP_AGENT_API_KEY (its key). The backend starts on the first call, not at import, so loading the
graph is cheap.
"""

from __future__ import annotations

import os
from functools import cache

from langgraph.graph import END, START, MessagesState, StateGraph

from sleep_agent import ServingConfig, SleepConfig, create_backend


@cache
def chat_model():
    serving = ServingConfig(
        backend=os.environ.get("SLEEP_AGENT_SERVING", "local"),
        base_url=os.environ.get("SLEEP_AGENT_BASE_URL"),
        api_key=os.environ.get("SLEEP_AGENT_API_KEY"),
    )
    config = SleepConfig(model=os.environ.get("SLEEP_AGENT_MODEL", "default"), serving=serving)
    return create_backend(config).start().chat_model()


def answer(state: MessagesState) -> dict:
    return {"messages": [chat_model().invoke(state["messages"])]}


builder = StateGraph(MessagesState)
builder.add_node("answer", answer)
builder.add_edge(START, "answer")
builder.add_edge("answer", END)
graph = builder.compile()
