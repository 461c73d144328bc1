"""Serving backends: one protocol (``base.ServingBackend``), a real vLLM server and in-process peft."""

from __future__ import annotations

from pathlib import Path

from sleep_agent.config import SleepConfig
from sleep_agent.serving.base import ServingBackend, adapter_name
from sleep_agent.serving.router import AdapterRouter


def create_backend(config: SleepConfig, model_path: str | Path | None = None) -> ServingBackend:
    """The backend ``config.serving`` asks for, not yet started (vLLM is imported only here)."""
    from sleep_agent.models import prepare_model

    path = Path(model_path) if model_path else prepare_model(config.model, config.cache_dir)
    served = config.serving
    if served.backend == "local":
        from sleep_agent.serving.local import LocalServer

        return LocalServer(path, drain_timeout_s=served.drain_timeout_s)
    from sleep_agent.serving.vllm import VLLMServer

    return VLLMServer(path, config=served, log_dir=config.home / "logs", key_dir=config.home / "serving")


__all__ = ["AdapterRouter", "ServingBackend", "adapter_name", "create_backend"]
