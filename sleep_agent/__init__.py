"""sleep-agent: sleepable memory for LangGraph agents.

Only the public names live here; everything heavy (torch, vLLM) is imported on first use.
"""

from sleep_agent.config import ServingConfig, SleepConfig
from sleep_agent.errors import (
    AdapterLoadError,
    ModelNotFoundError,
    ServerStartError,
    SleepAgentError,
)
from sleep_agent.models import prepare_model
from sleep_agent.serving import adapter_name, create_backend

__version__ = "0.1.0"

__all__ = [
    "AdapterLoadError",
    "ModelNotFoundError",
    "ServerStartError",
    "ServingConfig",
    "SleepAgentError",
    "SleepConfig",
    "adapter_name",
    "create_backend",
    "prepare_model",
]
