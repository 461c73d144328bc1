"""Progress of a sleep for whoever watches: LangGraph's custom stream inside a graph run, and the log.

A stage calls :func:`emit` with a small dict (``{"stage": "consolidate", "step": 12, "of": 130,
"loss": 1.9}``). Inside a graph run streamed with ``stream_mode="custom"`` the event reaches the
caller; anywhere else it is only logged, so a cycle never needs to know who runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("sleep_agent.progress")


def emit(event: dict[str, Any]) -> None:
    """Send one progress event to the current graph run's custom stream, if there is one."""
    event = {"sleep_agent": "sleep", **event}
    log.info(
        "%s", " ".join(f"{k}={v}" for k, v in event.items() if k != "sleep_agent"), extra={"event": event}
    )
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


def describe(event: dict[str, Any]) -> str:
    """One line for a person watching: ``consolidate: step 12/130, loss 1.90``."""
    stage = event.get("stage", "sleep")
    if "loss" in event:
        return f"{stage}: step {event.get('step')}/{event.get('of')}, loss {event['loss']:.3f}"
    if "answered" in event:
        return f"{stage}: {event['answered']}/{event['of']} questions answered"
    if "accepted" in event:
        verdict = "published" if event["accepted"] else "refused"
        return f"{stage}: {verdict} ({event.get('reason')})"
    if event.get("status") == "done":
        return f"{stage}: done in {event.get('seconds', 0):.0f} s"
    if event.get("status") == "started":
        return f"{stage}..."
    return f"{stage}: " + ", ".join(f"{k} {v}" for k, v in event.items() if k not in ("stage", "sleep_agent"))


@contextmanager
def shown_on(status: Any) -> Iterator[None]:
    """Show every sleep event of this process on a ``rich`` status line while the block runs.

    For code that sleeps outside a streamed graph run (the command line, ``memory.sleep()``); a
    graph run streamed with ``stream_mode="custom"`` gets the same events as stream chunks.
    """

    class _Line(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            event = getattr(record, "event", None)
            if event is not None:
                status.update(f"sleeping: {describe(event)}")

    handler, level = _Line(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
