"""The gate's behaviour check: held-out tasks played by the current version and the candidate.

A sleep on trajectories has no facts whose recall the gate could compare; what matters is whether
the agent now acts better. ``StandardCycle(config, behaviour=BehaviourCheck(...))`` makes the gate
play the same few tasks with both versions and refuse a candidate that plays worse. Every task of
every version is played at once, each in an environment of its own, so that the server batches
their steps: the check lasts about as long as its longest game, not as all of one version's games.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from sleep_agent.envs.base import Environment, Split
from sleep_agent.envs.player import WINDOW, AgentPlayer, Ask
from sleep_agent.envs.pool import EnvPool


class BehaviourCheck:
    """``check([ask_current, ask_candidate])`` -> each version's mean score on ``seeds``.

    ``envs`` is either a factory, which builds one environment per game played at once (at most
    ``parallel``; environments are not shared between threads), or an :class:`EnvPool` shared
    with the caller's own play, so that a family whose environment is a process (a JVM, a
    browser) does not keep two sets of them. Environments are kept for the next sleep; :meth:`close`
    frees those the check built, and leaves a shared pool to its owner. The seeds must be tasks the agent neither trains on nor is evaluated on
    (e.g. train seeds past those played).
    """

    def __init__(
        self,
        envs: Callable[[], Environment] | EnvPool,
        seeds: Sequence[int],
        *,
        split: Split = "train",
        window: int | None = WINDOW,
        parallel: int = 6,
    ) -> None:
        if not seeds:
            raise ValueError("a behaviour check needs at least one task seed")
        # the environments in play at once (each may be a process of its own)
        self._owns_pool = not isinstance(envs, EnvPool)  # a shared pool is closed by its owner
        self.pool = envs if isinstance(envs, EnvPool) else EnvPool(envs, parallel)
        self.seeds = list(seeds)
        self.split = split
        self.window = window
        self.last: list[list[float]] = []  # each version's per-task scores, for the sleep's report
        self._fingerprint: list[Any] | None = None

    def __call__(self, asks: Sequence[Ask]) -> list[float]:
        games = [(ask, seed) for ask in asks for seed in self.seeds]
        scores = self.pool.map(self._score, games)
        n = len(self.seeds)
        self.last = [scores[i * n : (i + 1) * n] for i in range(len(asks))]
        return [statistics.fmean(s) for s in self.last]

    def fingerprint(self) -> list[Any]:
        """What a version's scores depend on besides its weights: the family, its limits, and the
        tasks themselves (a digest of each seed's opening), so that a changed environment is never
        scored from memory. The gate keeps a version's scores under it (greedy play repeats them)."""
        if self._fingerprint is None:
            env = self.pool.borrow()
            try:
                openings = hashlib.sha256()
                for seed in self.seeds:
                    first = env.reset(seed, self.split)
                    openings.update(f"{first.task}\n{first.prompt_text()}\n".encode())
                self._fingerprint = [
                    type(env).__qualname__,
                    env.name,
                    env.instruction,
                    env.step_limit,
                    self.split,
                    self.seeds,
                    self.window,
                    openings.hexdigest(),
                ]
            finally:
                self.pool.give_back(env)
        return self._fingerprint

    def _score(self, env: Environment, game: tuple[Ask, int]) -> float:
        ask, seed = game
        player = AgentPlayer(None, env, recall=False, record=False, ask=ask, window=self.window)
        return player.play(seed, self.split).score

    def close(self) -> None:
        if self._owns_pool:
            self.pool.close()
