"""The gate's behaviour check: held-out tasks played by the current version and the candidate.

A sleep on trajectories has no facts whose recall the gate could compare; what matters is whether
the agent now acts better. ``StandardCycle(config, behaviour=BehaviourCheck(...))`` makes the gate
play the same few tasks with both versions, side by side (each in an environment of its own, so
the server batches their steps), and refuse a candidate that plays worse.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from sleep_agent.envs.base import Environment, Split
from sleep_agent.envs.player import WINDOW, AgentPlayer, Ask


class BehaviourCheck:
    """``check([ask_current, ask_candidate])`` -> each version's mean score on ``seeds``.

    ``make_env`` builds one environment per version played at once (environments are not shared
    between threads); they are kept for the next sleep and freed by :meth:`close`. The seeds must
    be tasks the agent neither trains on nor is evaluated on (e.g. train seeds past those played).
    """

    def __init__(
        self,
        make_env: Callable[[], Environment],
        seeds: Sequence[int],
        *,
        split: Split = "train",
        window: int | None = WINDOW,
    ) -> None:
        if not seeds:
            raise ValueError("a behaviour check needs at least one task seed")
        self.make_env = make_env
        self.seeds = list(seeds)
        self.split = split
        self.window = window
        self._idle: list[Environment] = []
        self._lock = threading.Lock()
        self.last: list[list[float]] = []  # each version's per-task scores, for the sleep's report

    def __call__(self, asks: Sequence[Ask]) -> list[float]:
        with ThreadPoolExecutor(max_workers=max(1, len(asks))) as pool:
            self.last = list(pool.map(self._scores, asks))
        return [statistics.fmean(s) for s in self.last]

    def _scores(self, ask: Ask) -> list[float]:
        env = self._borrow()
        try:
            player = AgentPlayer(None, env, recall=False, record=False, ask=ask, window=self.window)
            return [player.play(seed, self.split).score for seed in self.seeds]
        finally:
            with self._lock:
                self._idle.append(env)

    def _borrow(self) -> Environment:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.make_env()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for env in idle:
            env.close()
