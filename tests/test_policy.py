"""Each trigger fires at its threshold, not one step before, and names itself."""

from __future__ import annotations

import pytest

from sleep_agent.config import SleepPolicy
from sleep_agent.policy import decide

POLICY = SleepPolicy(context_fraction=0.5, pending_episodes=4, pending_tokens=100, idle_seconds=60)
QUIET = dict(context_tokens=0, context_window=1000, pending_episodes=1, pending_tokens=10, idle_s=0.0)


@pytest.mark.parametrize(
    ("field", "below", "at", "reason"),
    [
        ("context_tokens", 499, 500, "context"),
        ("pending_episodes", 3, 4, "pending_episodes"),
        ("pending_tokens", 99, 100, "pending_tokens"),
        ("idle_s", 59.9, 60.0, "idle"),
    ],
)
def test_a_threshold_fires_at_its_value_and_not_before(field, below, at, reason):
    before = decide(POLICY, **{**QUIET, field: below})
    assert (before.sleep, before.reason) == (False, "awake")
    fired = decide(POLICY, **{**QUIET, field: at})
    assert (fired.sleep, fired.reason) == (True, reason)
    assert str(at if field != "idle_s" else 60) in fired.detail


def test_a_request_wins_and_a_running_cycle_blocks_another():
    assert decide(POLICY, **QUIET, requested=True).reason == "requested"
    blocked = decide(POLICY, **{**QUIET, "pending_episodes": 10}, sleeping=True)
    assert (blocked.sleep, blocked.reason) == (False, "already_sleeping")


def test_nothing_pending_means_no_sleep_except_for_a_full_context():
    empty = {**QUIET, "pending_episodes": 0, "pending_tokens": 0, "idle_s": 1e6}
    assert decide(POLICY, **empty).sleep is False
    assert decide(POLICY, **{**empty, "context_tokens": 900}).reason == "context"


def test_a_threshold_set_to_none_never_fires():
    off = SleepPolicy(context_fraction=None, pending_episodes=None, pending_tokens=None, idle_seconds=None)
    heavy = dict(
        context_tokens=10**6, context_window=1000, pending_episodes=10**6, pending_tokens=10**9, idle_s=1e9
    )
    assert decide(off, **heavy).sleep is False


def test_the_decision_is_plain_data_for_the_graph_state():
    d = decide(POLICY, **{**QUIET, "pending_episodes": 4}).to_dict()
    assert d["sleep"] is True and d["pending_episodes"] == 4 and isinstance(d["detail"], str)
