"""sleep-agent: sleepable memory for LangGraph agents.

Only the public names live here. They are imported on first use, so ``import sleep_agent`` stays
fast and works without vLLM; ``from sleep_agent import SleepMemory`` loads what that needs.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "AdapterLoadError": "sleep_agent.errors",
    "BufferConfig": "sleep_agent.config",
    "BufferUnavailableError": "sleep_agent.errors",
    "CycleConfig": "sleep_agent.sleep.settings",
    "DreamConfig": "sleep_agent.sleep.settings",
    "Episode": "sleep_agent.episodes",
    "EpisodeBuffer": "sleep_agent.buffer",
    "FormatError": "sleep_agent.formats",
    "GateConfig": "sleep_agent.sleep.settings",
    "InvalidEpisodeError": "sleep_agent.errors",
    "LoraTrainConfig": "sleep_agent.sleep.settings",
    "ModelNotFoundError": "sleep_agent.errors",
    "NamespaceBusyError": "sleep_agent.errors",
    "NamespaceError": "sleep_agent.errors",
    "RecallConfig": "sleep_agent.config",
    "RetentionConfig": "sleep_agent.config",
    "ServerStartError": "sleep_agent.errors",
    "ServerUnavailableError": "sleep_agent.errors",
    "ServingConfig": "sleep_agent.config",
    "SleepAgentError": "sleep_agent.errors",
    "SleepConfig": "sleep_agent.config",
    "SleepDecision": "sleep_agent.policy",
    "SleepMemory": "sleep_agent.nodes",
    "SleepMemoryMiddleware": "sleep_agent.middleware",
    "SleepPolicy": "sleep_agent.config",
    "SleepReport": "sleep_agent.sleep.cycle",
    "SleepContext": "sleep_agent.sleep.cycle",
    "SleepState": "sleep_agent.nodes",
    "StandardCycle": "sleep_agent.sleep.standard",
    "adapter_name": "sleep_agent.serving",
    "create_backend": "sleep_agent.serving",
    "create_sleep_agent": "sleep_agent.agent",
    "episode_from_messages": "sleep_agent.episodes",
    "prepare_model": "sleep_agent.models",
    "with_sleep_memory": "sleep_agent.agent",
}

__all__ = [
    "AdapterLoadError",
    "BufferConfig",
    "BufferUnavailableError",
    "CycleConfig",
    "DreamConfig",
    "Episode",
    "EpisodeBuffer",
    "FormatError",
    "GateConfig",
    "InvalidEpisodeError",
    "LoraTrainConfig",
    "ModelNotFoundError",
    "NamespaceBusyError",
    "NamespaceError",
    "RecallConfig",
    "RetentionConfig",
    "ServerStartError",
    "ServerUnavailableError",
    "ServingConfig",
    "SleepAgentError",
    "SleepConfig",
    "SleepDecision",
    "SleepMemory",
    "SleepMemoryMiddleware",
    "SleepPolicy",
    "SleepReport",
    "SleepContext",
    "SleepState",
    "StandardCycle",
    "adapter_name",
    "create_backend",
    "create_sleep_agent",
    "episode_from_messages",
    "prepare_model",
    "with_sleep_memory",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'sleep_agent' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return [*__all__, "__version__"]


if TYPE_CHECKING:
    from sleep_agent.agent import create_sleep_agent, with_sleep_memory
    from sleep_agent.buffer import EpisodeBuffer
    from sleep_agent.config import BufferConfig, RecallConfig, ServingConfig, SleepConfig, SleepPolicy
    from sleep_agent.episodes import Episode, episode_from_messages
    from sleep_agent.errors import (
        AdapterLoadError,
        BufferUnavailableError,
        InvalidEpisodeError,
        ModelNotFoundError,
        NamespaceBusyError,
        NamespaceError,
        ServerStartError,
        ServerUnavailableError,
        SleepAgentError,
    )
    from sleep_agent.formats import FormatError
    from sleep_agent.middleware import SleepMemoryMiddleware
    from sleep_agent.models import prepare_model
    from sleep_agent.nodes import SleepMemory, SleepState
    from sleep_agent.policy import SleepDecision
    from sleep_agent.serving import adapter_name, create_backend
    from sleep_agent.sleep.cycle import SleepContext, SleepReport
    from sleep_agent.sleep.settings import CycleConfig, DreamConfig, GateConfig, LoraTrainConfig
    from sleep_agent.sleep.standard import StandardCycle
