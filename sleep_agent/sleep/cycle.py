"""The contract between the memory and a sleep cycle, and the report a cycle returns.

A cycle receives the pending episodes and says what became of each (consolidated into which
adapter version, or rejected and why). It never writes statuses itself: ``SleepMemory`` marks the
buffer only after the cycle has returned, so a cycle that crashes leaves every episode pending.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from sleep_agent.buffer import EpisodeBuffer
    from sleep_agent.config import SleepConfig
    from sleep_agent.episodes import Episode
    from sleep_agent.serving.base import ServingBackend


@dataclass(frozen=True)
class SleepContext:
    """What a cycle may use of the memory it sleeps for: one namespace's settings, its buffer (read
    only: statuses are the memory's to write), the served model and the prompts the agent runs under.

    The backend and model path are looked up on first use: a cycle that does not serve or train
    (a test's, a rules-only one) starts no server and converts no model.
    """

    config: SleepConfig
    buffer: EpisodeBuffer
    agent_prompts: frozenset[str]
    recall_prompt: str
    serving: Callable[[], ServingBackend]
    model: Callable[[], Path]

    @property
    def namespace(self) -> str:
        return self.config.namespace

    @property
    def backend(self) -> ServingBackend:
        return self.serving()

    @property
    def model_path(self) -> Path:
        return self.model()


class SleepReport(BaseModel):
    """What one sleep did: counts, decisions with reasons, timings and metrics."""

    namespace: str
    trigger: str = Field(description="why the cycle ran (the decision's reason)")
    started_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    episodes_in: int = 0
    consolidated: list[str] = Field(default_factory=list, description="episode ids now in the adapter")
    rejected: dict[str, str] = Field(default_factory=dict, description="episode id -> why it was left out")
    retry: dict[str, str] = Field(
        default_factory=dict, description="episode id -> why it stays pending (a rejected candidate, say)"
    )
    adapter_version: int | None = Field(None, description="the version published, None if nothing was")
    forgotten: list[str] = Field(
        default_factory=list,
        description="consolidated episodes erased by forget(): this sleep rebuilds the adapter without them",
    )
    metrics: dict[str, Any] = Field(default_factory=dict)
    timings_s: dict[str, float] = Field(default_factory=dict, description="seconds per stage")
    error: str | None = Field(None, description="set when the cycle failed; nothing was marked")

    @property
    def duration_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    def save(self, directory: Path) -> Path:
        """Write ``<started_at>.json`` into ``directory`` (whole or not at all)."""
        directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.started_at))
        path = directory / f"{stamp}-{int(self.started_at * 1e6) % 1_000_000:06d}.json"
        scratch = path.with_suffix(".json.tmp")
        scratch.write_text(self.model_dump_json(indent=2))
        scratch.replace(path)
        return path

    @classmethod
    def load_all(cls, directory: Path) -> list[SleepReport]:
        if not directory.is_dir():
            return []
        return [cls.model_validate_json(p.read_text()) for p in sorted(directory.glob("*.json"))]


class SleepCycle(Protocol):
    """Anything callable like this can be a cycle: ``SleepMemory(config, cycle=my_cycle)``."""

    def __call__(
        self, context: SleepContext, episodes: Sequence[Episode], report: SleepReport
    ) -> SleepReport: ...
