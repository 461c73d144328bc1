"""The gate's behaviour check: held-out tasks played by the current version and the candidate.

A sleep on trajectories has no facts whose recall the gate could compare; what matters is whether
the agent now acts better. ``StandardCycle(config, behaviour=BehaviourCheck(...))`` makes the gate
play the same few tasks with both versions and refuse a candidate that plays worse. Every task of
every version is played at once, each in an environment of its own, so that the server batches
their steps: the check lasts about as long as its longest game, not as all of one version's games.
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
        parallel: int = 6,
    ) -> None:
        if not seeds:
            raise ValueError("a behaviour check needs at least one task seed")
        if parallel < 1:
            raise ValueError(f"parallel={parallel}: play at least one task at a time")
        self.make_env = make_env
        self.seeds = list(seeds)
        self.split = split
        self.window = window
        self.parallel = parallel  # environments in play at once (each may be a process of its own)
        self._idle: list[Environment] = []
        self._lock = threading.Lock()
        self.last: list[list[float]] = []  # each version's per-task scores, for the sleep's report

    def __call__(self, asks: Sequence[Ask]) -> list[float]:
        games = [(ask, seed) for ask in asks for seed in self.seeds]
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(games))) as pool:
            scores = list(pool.map(lambda game: self._score(*game), games))
        n = len(self.seeds)
        self.last = [scores[i * n : (i + 1) * n] for i in range(len(asks))]
        return [statistics.fmean(s) for s in self.last]

    def _score(self, ask: Ask, seed: int) -> float:
        env = self._borrow()
        try:
            player = AgentPlayer(None, env, recall=False, record=False, ask=ask, window=self.window)
            return player.play(seed, self.split).score
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
