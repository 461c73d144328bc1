"""Environments an agent acts in, and the agent that learns across their tasks.

:class:`Environment` is the protocol (reset, observation, admissible actions, step, reward, done,
seeds and splits); :class:`AgentPlayer` plays any environment with a :class:`~sleep_agent.SleepMemory`
recording each task; :class:`BehaviourCheck` lets the gate compare how two versions play. Four
families ship: ``textworld`` (TextWorldExpress text games), ``scienceworld``, ``miniwob`` (web tasks in
a real browser) and ``terminal`` (shell tasks in a throwaway directory); ``docs/agents.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sleep_agent.envs.base import Environment, EnvironmentUnavailableError, Observation, Split

__all__ = [
    "ENVIRONMENTS",
    "AgentPlayer",
    "BehaviourCheck",
    "Environment",
    "EnvironmentUnavailableError",
    "Observation",
    "Split",
    "TaskResult",
    "make_environment",
    "trajectory_cycle_config",
]


def _textworld(**kwargs: Any) -> Environment:
    from sleep_agent.envs.textworld import GameSpec, TextWorld

    return TextWorld(GameSpec(**kwargs))


def _scienceworld(**kwargs: Any) -> Environment:
    from sleep_agent.envs.scienceworld import ScienceWorld

    return ScienceWorld(**kwargs)


def _miniwob(**kwargs: Any) -> Environment:
    from sleep_agent.envs.miniwob import MiniWoB

    return MiniWoB(**kwargs)


def _terminal(**kwargs: Any) -> Environment:
    from sleep_agent.envs.terminal import Terminal

    return Terminal(**kwargs)


ENVIRONMENTS: dict[str, Callable[..., Environment]] = {
    "textworld": _textworld,
    "scienceworld": _scienceworld,
    "miniwob": _miniwob,
    "terminal": _terminal,
}


def make_environment(name: str, **kwargs: Any) -> Environment:
    """One of the shipped families by name (``step_limit=`` and the family's own options)."""
    if name not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {name!r}: choose one of {', '.join(ENVIRONMENTS)}")
    return ENVIRONMENTS[name](**kwargs)


def __getattr__(name: str) -> Any:  # the player imports the memory: only when asked for
    if name in ("AgentPlayer", "TaskResult", "trajectory_cycle_config"):
        from sleep_agent.envs import player

        return getattr(player, name)
    if name == "BehaviourCheck":
        from sleep_agent.envs.check import BehaviourCheck

        return BehaviourCheck
    raise AttributeError(name)
