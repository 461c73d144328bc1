"""Sleepable memory for LangChain 1.x agents built with ``create_agent``, in one line.

    from langchain.agents import create_agent
    agent = create_agent(memory.chat_model(), tools=[...], middleware=[SleepMemoryMiddleware(memory)])

Before the agent runs, the memories relevant to the user's message go into the prompt; after it
has answered, the turn (tool calls and results included) is recorded, and when the policy says
so the memory sleeps. The user is the run's (a namespace template resolves per run), as with the
graph nodes. ``with_sleep_memory`` does the same for plain graphs.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any, NotRequired

try:
    from langchain.agents.middleware import AgentMiddleware, AgentState
except ImportError as e:  # pragma: no cover - depends on the environment
    from sleep_agent.errors import MissingDependencyError

    raise MissingDependencyError(
        "SleepMemoryMiddleware needs LangChain 1.x (create_agent): pip install 'sleep-agent[agents]'"
    ) from e
from langchain_core.language_models import BaseChatModel
from langgraph.config import get_config

from sleep_agent.nodes import SleepMemory

log = logging.getLogger(__name__)


class SleepAgentState(AgentState):
    """The agent's state plus what the memory reports back, and how the episode ended (for
    behaviour cloning: only trajectories that ended well are learned)."""

    sleep_decision: NotRequired[dict[str, Any]]
    sleep_report: NotRequired[dict[str, Any]]
    sleep_requested: NotRequired[bool]
    outcome: NotRequired[str]
    reward: NotRequired[float]


class SleepMemoryMiddleware(AgentMiddleware):
    """Recall before the agent, record after it, and sleep when the policy says so.

    ``model``: the agent's chat model, if you want it checked now. A model the memory does not
    serve (an API model) still gets recall, but a sleep would train an adapter nobody uses: that
    is said at once with a warning (and again at the first model call otherwise).
    """

    state_schema = SleepAgentState

    def __init__(self, memory: SleepMemory, *, model: BaseChatModel | None = None) -> None:
        super().__init__()
        self.memory = memory
        self._checked = False
        if model is not None:
            self._check(model)

    @property
    def name(self) -> str:
        return "SleepMemoryMiddleware"

    # -- hooks -------------------------------------------------------------------------------

    def before_agent(self, state: dict[str, Any], runtime: Any) -> dict[str, Any] | None:
        return self.memory.for_run(get_config())._recall_node(state) or None

    async def abefore_agent(self, state: dict[str, Any], runtime: Any) -> dict[str, Any] | None:
        config = get_config()  # opening a user's memory blocks too: all of it in a worker thread
        return await asyncio.to_thread(lambda: self.memory.for_run(config)._recall_node(state)) or None

    def after_agent(self, state: dict[str, Any], runtime: Any) -> dict[str, Any] | None:
        return self._record_and_sleep(state, get_config())

    async def aafter_agent(self, state: dict[str, Any], runtime: Any) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._record_and_sleep, state, get_config())

    def wrap_model_call(self, request: Any, handler: Any) -> Any:
        self._check(request.model)
        return handler(request)

    async def awrap_model_call(self, request: Any, handler: Any) -> Any:
        self._check(request.model)
        return await handler(request)

    # -- internals ---------------------------------------------------------------------------

    def _record_and_sleep(self, state: dict[str, Any], config: Any) -> dict[str, Any]:
        scope = self.memory.for_run(config)
        update = scope._record_node(state, config)
        if scope._should_sleep({**state, **update}, config) == "sleep":
            update.update(scope._sleep_node({**state, **update}))
        return update

    def _check(self, model: Any) -> None:
        if self._checked:
            return
        self._checked = True
        if not served_by(self.memory, model):
            warnings.warn(
                f"the agent's model ({type(model).__name__}) is not served by this memory: recall and "
                "recording work, but a sleep trains an adapter that model never uses. Pass "
                "memory.chat_model() to create_agent to answer from what the agent slept on.",
                stacklevel=3,
            )


def served_by(memory: SleepMemory, model: Any) -> bool:
    """Whether ``model`` answers through the memory's serving backend (with its adapters)."""
    from sleep_agent.serving.local import LocalChatModel
    from sleep_agent.serving.vllm import RoutedChatOpenAI

    bound = getattr(model, "bound", model)  # bind_tools wraps the model in a RunnableBinding
    return isinstance(bound, RoutedChatOpenAI | LocalChatModel)
