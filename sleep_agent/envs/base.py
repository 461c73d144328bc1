"""The environment protocol: what an agent benchmark must offer for an agent to learn across tasks.

An environment plays one task at a time. ``reset(seed, split)`` starts a task and returns the first
:class:`Observation`; ``step(action)`` acts and returns the next one, until ``done``. Seeds name
tasks, splits keep the tasks an agent trains on apart from those it is tested on, and ``score`` is
the benchmark's own success metric in [0, 1] (``won`` is its pass/fail reading). A benchmark harness
plugs its own environment in by writing these few methods (``docs/agents.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from sleep_agent.errors import SleepAgentError

Split = Literal["train", "dev", "test"]


class EnvironmentUnavailableError(SleepAgentError, RuntimeError):
    """An environment cannot run here (a package, Java or a browser is missing); says how to fix it."""


@dataclass(frozen=True)
class Observation:
    """What the agent sees after a step, and how the task stands.

    ``actions``: the admissible actions when the task has a list of them; empty when actions are
    free-form (a shell command), and then the agent's reply is the action.
    """

    text: str
    actions: list[str] = field(default_factory=list)
    score: float = 0.0
    won: bool = False
    done: bool = False
    steps: int = 0
    task: str = ""

    def prompt_text(self) -> str:
        """The observation as the agent reads it: the text, then the actions it allows (if listed)."""
        if not self.actions:
            return self.text.strip()
        return f"{self.text.strip()}\nActions: {', '.join(self.actions)}"


@runtime_checkable
class Environment(Protocol):
    """One family of tasks. ``instruction`` tells the agent how to reply (one line, appended to the
    task); ``step_limit`` ends a task that has not ended itself."""

    name: str
    instruction: str
    step_limit: int

    def seeds(self, split: Split, n: int, offset: int = 0) -> list[int]:
        """The first ``n`` task seeds of a split, after ``offset``: fixed, so runs repeat exactly.
        Raises ``ValueError`` when the split has fewer."""
        ...

    def reset(self, seed: int, split: Split = "train") -> Observation: ...

    def step(self, action: str) -> Observation: ...

    def walkthrough(self) -> list[str] | None:
        """A gold action sequence that solves the current task from its start, or None when the
        benchmark has none. Used to record demonstrations; may reset the task."""
        ...

    def close(self) -> None:
        """Free what the environment holds (a browser, a JVM, a work directory)."""
        ...


def seeds_in(splits: dict[str, range], split: Split, n: int, offset: int = 0) -> list[int]:
    """``seeds()`` for a family whose splits are disjoint seed ranges."""
    seeds = splits[split]
    if n < 0 or offset < 0 or offset + n > len(seeds):
        raise ValueError(f"the {split} split has {len(seeds)} seeds, asked for {offset + n}")
    return list(seeds[offset : offset + n])


def check_seed(splits: dict[str, range], split: Split, seed: int) -> None:
    """Refuse a seed from another split: a held-out task must never be played as a training one."""
    if seed not in splits[split]:
        span = splits[split]
        raise ValueError(f"seed {seed} is not a {split} seed ({span.start}..{span.stop - 1})")
