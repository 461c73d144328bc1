"""Text games from TextWorldExpress, one at a time, as an :class:`~sleep_agent.envs.Environment`.

TextWorldExpress generates its games from a seed, offline, in milliseconds; its train, dev and test
folds hold different seeds, so games held out for evaluation are new ones of the same family. The
default family is "coin": find the coin in a few rooms and take it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from sleep_agent.envs.base import EnvironmentUnavailableError, Observation, Split


@dataclass(frozen=True)
class GameSpec:
    """A game family: TextWorldExpress's name, its generation parameters and a step limit."""

    name: str = "coin"
    params: str = "numLocations=3,numDistractorItems=0,includeDoors=0"
    step_limit: int = 12


class TextWorld:
    """``game.reset(seed, split)``, then ``game.step(command)`` until ``done``."""

    name = "textworld"
    instruction = "Reply with one action from the list."

    def __init__(self, spec: GameSpec | None = None) -> None:
        self.spec = spec or GameSpec()
        self.step_limit = self.spec.step_limit
        self._env = _start_engine(self.spec.step_limit)
        self._env.load(gameName=self.spec.name, gameParams=self.spec.params)
        self._steps = 0
        self._task = ""
        self._game: tuple[int, Split] = (0, "train")
        self._state: tuple[str, str] = ("", "")

    def seeds(self, split: Split, n: int, offset: int = 0) -> list[int]:
        """The first ``n`` seeds of a fold (after ``offset``), in the engine's own order."""
        valid = {
            "train": self._env.getValidSeedsTrain,
            "dev": self._env.getValidSeedsDev,
            "test": self._env.getValidSeedsTest,
        }[split]()
        if offset + n > len(valid):
            raise ValueError(
                f"the {split} fold of {self.spec.name} has {len(valid)} seeds, asked for {offset + n}"
            )
        return list(valid[offset : offset + n])

    def reset(self, seed: int, split: Split = "train") -> Observation:
        obs, infos = self._env.reset(seed=seed, gameFold=split, generateGoldPath=True)
        self._game = (seed, split)
        self._steps = 0
        self._task = infos["taskDescription"]
        return self._observe(obs, infos)

    def step(self, command: str) -> Observation:
        obs, _, _, infos = self._env.step(command)
        self._steps += 1
        return self._observe(obs, infos)

    def walkthrough(self) -> list[str]:
        """The current game's gold commands from the start, without detours; the game is reset.

        TextWorldExpress's gold path depends on what the process played before (its generator's
        random state) and can wander ("move north", "move south", "move north"...) before it wins.
        Replayed here with every loop cut back to the first visit of a state, it is the same short
        path on every run, and a demonstration does not teach wandering.
        """
        gold = list(self._env.getGoldActionSequence())
        gold = gold[1:] if gold and gold[0] == "look around" else gold
        seed, split = self._game
        self.reset(seed, split)
        path: list[str] = []
        states = [self._state]
        for command in gold:
            self.step(command)
            if self._state in states:  # back where it was: drop the loop
                cut = states.index(self._state)
                path, states = path[:cut], states[: cut + 1]
            else:
                path.append(command)
                states.append(self._state)
        if not self._wins(path):
            path = gold
        self.reset(seed, split)
        return path

    def close(self) -> None:
        self._env.close()

    def _wins(self, commands: list[str]) -> bool:
        seed, split = self._game
        obs = self.reset(seed, split)
        for command in commands:
            obs = self.step(command)
        return obs.won

    def _observe(self, obs: str, infos: dict[str, Any]) -> Observation:
        self._state = (
            infos.get("look", ""),
            infos.get("inventory", ""),
        )  # where the player is, what it holds
        won = bool(infos.get("tasksuccess"))
        lost = bool(infos.get("taskfailure"))
        return Observation(
            text=obs,
            actions=sorted(infos["validActions"]),  # the engine's order varies; sorted, prompts repeat
            score=float(infos.get("score", 0.0)),
            won=won,
            done=won or lost or self._steps >= self.spec.step_limit,
            steps=self._steps,
            task=self._task,
        )


def _start_engine(step_limit: int) -> Any:
    try:
        from textworld_express import TextWorldExpressEnv
    except ImportError as e:
        raise EnvironmentUnavailableError(
            "the text games need TextWorldExpress: pip install 'sleep-agent[textworld]' (or textworld-express)"
        ) from e
    if shutil.which("java") is None:
        raise EnvironmentUnavailableError(
            "TextWorldExpress runs on Java 17 or newer and no `java` is on PATH: install a JRE "
            "(Debian: apt-get install openjdk-17-jre-headless)"
        )
    # the engine stops a game itself one step after ours, so our limit is the one that ends it
    return TextWorldExpressEnv(envStepLimit=step_limit + 1)
