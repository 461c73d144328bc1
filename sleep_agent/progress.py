"""Progress of a sleep for whoever watches: LangGraph's custom stream inside a graph run, and the log.

A stage calls :func:`emit` with a small dict (``{"stage": "consolidate", "step": 12, "of": 130,
"loss": 1.9}``). Inside a graph run streamed with ``stream_mode="custom"`` the event reaches the
caller; anywhere else it is only logged, so a cycle never needs to know who runs it.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("sleep_agent.progress")


def emit(event: dict[str, Any]) -> None:
    """Send one progress event to the current graph run's custom stream, if there is one."""
    event = {"sleep_agent": "sleep", **event}
    log.info("%s", " ".join(f"{k}={v}" for k, v in event.items() if k != "sleep_agent"))
    try:
        from langgraph.config import get_stream_writer

        writer = get_stream_writer()
    except (ImportError, RuntimeError):  # not inside a graph run
        return
    writer(event)


def training_callback() -> Any:
    """A transformers ``TrainerCallback`` that emits each logged step with its loss."""
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any
        ) -> None:
            if logs and "loss" in logs:
                emit(
                    {
                        "stage": "consolidate",
                        "step": state.global_step,
                        "of": state.max_steps,
                        "loss": round(float(logs["loss"]), 4),
                    }
                )

    return _Progress()
