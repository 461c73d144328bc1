"""Ready-made graphs: the memory wiring around any agent, and a ReAct-style agent that has it.

agent = create_sleep_agent(memory, tools=[search])           # compiled, ready to invoke
graph = with_sleep_memory(my_compiled_agent, memory)          # or wrap an agent you already have
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from sleep_agent.nodes import SleepMemory, SleepState


def with_sleep_memory(
    agent: Callable[..., Any] | CompiledStateGraph,
    memory: SleepMemory,
    *,
    state_schema: type = SleepState,
    checkpointer: Any = None,
    name: str = "agent",
) -> CompiledStateGraph:
    """Wrap an agent node or graph: START -> recall -> agent -> record -> (sleep ->) END.

    ``agent`` reads and extends ``messages`` like any LangGraph node; a compiled graph with a
    ``messages`` key works as a subgraph. The memory nodes run natively under ``invoke`` and
    ``ainvoke``; a memory with a namespace template serves each run's own user.
    """
    builder = StateGraph(state_schema)
    builder.add_node("recall", RunnableLambda(memory.recall_node, afunc=memory.arecall_node, name="recall"))
    builder.add_node(name, agent)
    builder.add_node("record", RunnableLambda(memory.record_node, afunc=memory.arecord_node, name="record"))
    builder.add_node("sleep", RunnableLambda(memory.sleep_node, afunc=memory.asleep_node, name="sleep"))
    builder.add_edge(START, "recall")
    builder.add_edge("recall", name)
    builder.add_edge(name, "record")
    builder.add_conditional_edges("record", memory.should_sleep, ["sleep", END])
    builder.add_edge("sleep", END)
    return builder.compile(checkpointer=checkpointer)


def create_sleep_agent(
    memory: SleepMemory,
    *,
    tools: Sequence[BaseTool | Callable[..., Any]] = (),
    prompt: str | None = None,
    model: BaseChatModel | None = None,
    checkpointer: Any = None,
) -> CompiledStateGraph:
    """A ReAct-style agent (model, then tools while it calls them) with sleepable memory.

    ``model`` defaults to ``memory.chat_model()``, created on the first turn, so building the graph
    does not start a server.
    """
    tools = list(tools)
    bound: list[Any] = []
    if prompt:
        memory.agent_prompts.add(prompt)

    def llm() -> Any:
        if not bound:
            base = model if model is not None else memory.chat_model()
            if tools:
                try:
                    base = base.bind_tools(tools)
                except NotImplementedError as e:
                    raise TypeError(
                        f"{type(base).__name__} cannot call tools; serve the model with vLLM "
                        "(serving='vllm') or pass model= a chat model that supports bind_tools"
                    ) from e
            bound.append(base)
        return bound[0]

    def prompted(state: dict[str, Any]) -> list[Any]:
        messages = list(state["messages"])
        return [SystemMessage(prompt), *messages] if prompt else messages

    def call_model(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [llm().invoke(prompted(state), config)]}

    async def acall_model(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        model = bound[0] if bound else await asyncio.to_thread(llm)  # the first turn starts the server
        return {"messages": [await model.ainvoke(prompted(state), config)]}

    inner = StateGraph(SleepState)
    inner.add_node("model", RunnableLambda(call_model, afunc=acall_model, name="model"))
    inner.add_edge(START, "model")
    if tools:
        inner.add_node("tools", ToolNode(tools))
        inner.add_conditional_edges("model", tools_condition, ["tools", END])
        inner.add_edge("tools", "model")
    else:
        inner.add_edge("model", END)
    return with_sleep_memory(inner.compile(), memory, checkpointer=checkpointer)
