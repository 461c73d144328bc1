"""Tasks played at once, each in an environment of its own.

A served model answers concurrent requests in one batch, so tasks played side by side take about as
long as the longest of them, not as all of them one after another. An environment is not shared
between threads (a task's state lives in it), so the pool hands each game its own, built on demand
and kept for the next round: a family whose environment is a process (a JVM, a browser) starts at
most ``parallel`` of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sleep_agent.envs.base import Environment

G = TypeVar("G")
R = TypeVar("R")


class EnvPool:
    """``pool.map(play, games)`` -> ``[play(env, game) for game in games]``, at most ``parallel`` at once."""

    def __init__(self, make_env: Callable[[], Environment], parallel: int = 6) -> None:
        if parallel < 1:
            raise ValueError(f"parallel={parallel}: play at least one task at a time")
        self.make_env = make_env
        self.parallel = parallel
        self._idle: list[Environment] = []
        self._lock = threading.Lock()

    def map(self, play: Callable[[Environment, G], R], games: Sequence[G]) -> list[R]:
        """Each game's result, in the order of ``games``."""
        if not games:
            return []

        def one(game: G) -> R:
            env = self.borrow()
            try:
                result = play(env, game)
            except BaseException:
                env.close()  # its task broke off midway: not trusted with the next one
                raise
            self.give_back(env)
            return result

        pool = ThreadPoolExecutor(max_workers=min(self.parallel, len(games)))
        try:
            return list(pool.map(one, games))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the error now, not after every queued game
            raise
        finally:
            pool.shutdown()

    def borrow(self) -> Environment:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.make_env()

    def give_back(self, env: Environment) -> None:
        with self._lock:
            self._idle.append(env)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for env in idle:
            env.close()
