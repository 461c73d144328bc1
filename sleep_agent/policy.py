"""When to sleep: a pure function of a few measurements, so every decision can be explained."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from sleep_agent.config import SleepPolicy

Reason = Literal[
    "requested", "context", "pending_episodes", "pending_tokens", "idle", "awake", "already_sleeping"
]


@dataclass(frozen=True)
class SleepDecision:
    """Whether to sleep now, the first threshold that fired, and the numbers it was read from."""

    sleep: bool
    reason: Reason
    detail: str
    context_tokens: int = 0
    pending_episodes: int = 0
    pending_tokens: int = 0
    idle_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    policy: SleepPolicy,
    *,
    context_tokens: int,
    context_window: int,
    pending_episodes: int,
    pending_tokens: int,
    idle_s: float | None = None,
    requested: bool = False,
    sleeping: bool = False,
) -> SleepDecision:
    """Check the triggers in a fixed order; the first that is reached is the reason."""
    numbers = dict(
        context_tokens=context_tokens,
        pending_episodes=pending_episodes,
        pending_tokens=pending_tokens,
        idle_s=idle_s,
    )
    if sleeping:
        return SleepDecision(False, "already_sleeping", "a sleep cycle is already running", **numbers)
    if requested:
        return SleepDecision(True, "requested", "sleep was requested", **numbers)
    if policy.context_fraction is not None:
        limit = int(policy.context_fraction * context_window)
        if context_tokens >= limit:
            return SleepDecision(
                True,
                "context",
                f"context holds {context_tokens} tokens >= {policy.context_fraction:g} of the "
                f"{context_window}-token window ({limit})",
                **numbers,
            )
    if pending_episodes == 0:
        return SleepDecision(False, "awake", "nothing is pending", **numbers)
    if policy.pending_episodes is not None and pending_episodes >= policy.pending_episodes:
        return SleepDecision(
            True,
            "pending_episodes",
            f"{pending_episodes} episodes pending >= {policy.pending_episodes}",
            **numbers,
        )
    if policy.pending_tokens is not None and pending_tokens >= policy.pending_tokens:
        return SleepDecision(
            True, "pending_tokens", f"{pending_tokens} pending tokens >= {policy.pending_tokens}", **numbers
        )
    if policy.idle_seconds is not None and idle_s is not None and idle_s >= policy.idle_seconds:
        return SleepDecision(True, "idle", f"idle for {idle_s:.0f} s >= {policy.idle_seconds:g} s", **numbers)
    return SleepDecision(False, "awake", "no threshold reached", **numbers)
