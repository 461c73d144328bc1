"""A LangGraph agent that plays a text game with sleepable memory.

    recall -> act <-> game -> record -> (sleep ->) END

``act`` asks the served model (the memory's current adapter) for the next command, from the same
prompt a sleep trains it on (:func:`~sleep_agent.sleep.extract.trajectory_prompt`); ``game`` runs it
and returns the observation as a tool result; ``record`` stores the whole game as one episode with
its outcome, so that a sleep imitates the games that were won. Held-out games are played with
``record=False``: they never reach the memory.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NotRequired

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from sleep_agent.episodes import episode_from_messages, is_recall_message
from sleep_agent.games.textworld import Fold, Observation, TextGame
from sleep_agent.nodes import SleepMemory, SleepState
from sleep_agent.recalled import with_recall
from sleep_agent.sleep.extract import trajectory_prompt
from sleep_agent.sleep.standard import CycleConfig

INSTRUCTION = "Reply with one command from the list."
TOOL = "act"
# The game agent's training settings, shared by its sleeps and its prompts: no facts from the game's
# text (every game's world is new), one step of history per prompt.
WINDOW = 1


class GameState(SleepState):
    """The messages of one game plus where it stands."""

    commands: NotRequired[list[str]]
    done: NotRequired[bool]
    steps: NotRequired[int]


@dataclass(frozen=True)
class GameResult:
    """How one game went."""

    seed: int
    fold: str
    won: bool
    score: float
    steps: int
    invalid: int  # replies that named no listed command and were mapped to the nearest one
    seconds: float
    commands: list[str]
    prompt_tokens: list[int]  # per step, when the player was given a token counter


class GamePlayer:
    """Plays games of one family with a memory: ``player.play(seed)`` -> :class:`GameResult`."""

    def __init__(
        self,
        memory: SleepMemory,
        game: TextGame,
        *,
        recall: bool = True,
        record: bool = True,
        window: int | None = WINDOW,
        max_tokens: int = 24,
        token_counter: Callable[[list[dict[str, str]]], int] | None = None,
    ) -> None:
        self.memory = memory
        self.token_counter = token_counter
        self._prompt_tokens: list[int] = []
        self.game = game
        self.window = window
        self.max_tokens = max_tokens
        self.graph = self._build(recall=recall, record=record)
        self._model: Any = None

    def play(self, seed: int, fold: Fold = "train") -> GameResult:
        started = time.perf_counter()
        self._prompt_tokens = []
        first = self.game.reset(seed, fold)
        inputs = {"messages": [HumanMessage(opening(first))], "commands": first.commands, "steps": 0}
        config: RunnableConfig = {
            "configurable": {"thread_id": f"{fold}-{seed}"},
            "recursion_limit": 4 * self.game.spec.step_limit + 10,
        }
        state = self.graph.invoke(inputs, config)
        calls = [
            c["args"]["command"] for m in state["messages"] if isinstance(m, AIMessage) for c in m.tool_calls
        ]
        invalid = sum(
            1 for m in state["messages"] if isinstance(m, AIMessage) and m.additional_kwargs.get("mapped")
        )
        return GameResult(
            seed=seed,
            fold=fold,
            won=state.get("outcome") == "success",
            score=float(state.get("reward") or 0.0),
            steps=int(state.get("steps", 0)),
            invalid=invalid,
            seconds=time.perf_counter() - started,
            commands=calls,
            prompt_tokens=list(self._prompt_tokens),
        )

    def demonstrate(self, seed: int, fold: Fold = "train") -> bool:
        """Record the game's gold walkthrough as a won episode (learning from demonstrations).

        Returns False (and records nothing) if the walkthrough does not win the game.
        """
        first = self.game.reset(seed, fold)
        messages: list[BaseMessage] = [HumanMessage(opening(first))]
        obs = first
        for i, command in enumerate(self.game.walkthrough()):
            messages.append(_call(command, i))
            obs = self.game.step(command)
            messages.append(_result(obs, i))
            if obs.done:
                break
        if not obs.won:
            return False
        self.memory.buffer.record(
            messages, thread_id=f"demo-{fold}-{seed}", outcome="success", reward=obs.score
        )
        return True

    # -- the graph -------------------------------------------------------------------------

    def _build(self, *, recall: bool, record: bool) -> Any:
        builder = StateGraph(GameState)
        builder.add_node("act", self.act)
        builder.add_node("game", self.step)
        first = "act"
        if recall:
            builder.add_node("recall", self.memory.recall_node)
            first = "recall"
            builder.add_edge("recall", "act")
        builder.add_edge(START, first)
        builder.add_edge("act", "game")
        after_game = "record" if record else END
        builder.add_conditional_edges(
            "game", lambda s: after_game if s.get("done") else "act", ["act", after_game]
        )
        if record:
            builder.add_node("record", self.memory.record_node)
            builder.add_node("sleep", self.memory.sleep_node)
            builder.add_conditional_edges("record", self.memory.should_sleep, ["sleep", END])
            builder.add_edge("sleep", END)
        return builder.compile()

    def act(self, state: dict[str, Any]) -> dict[str, Any]:
        """The model's next command, mapped onto the listed ones."""
        messages: list[BaseMessage] = state["messages"]
        prompt = self.prompt(messages)
        if self.token_counter is not None:
            self._prompt_tokens.append(self.token_counter(prompt))
        if self._model is None:
            self._model = self.memory.chat_model(max_tokens=self.max_tokens)
        reply = str(self._model.invoke(prompt).content)
        command, exact = choose(reply, state.get("commands", []))
        step = int(state.get("steps", 0))
        message = _call(command, step)
        if not exact:
            message.additional_kwargs["mapped"] = reply
        return {"messages": [message]}

    def step(self, state: dict[str, Any]) -> dict[str, Any]:
        """Run the last command in the game; at the end, the outcome the episode is recorded with."""
        last = state["messages"][-1]
        call = last.tool_calls[0]
        obs = self.game.step(call["args"]["command"])
        update: dict[str, Any] = {
            "messages": [_result(obs, int(state.get("steps", 0)), call["id"])],
            "commands": obs.commands,
            "steps": obs.steps,
            "done": obs.done,
        }
        if obs.done:
            update.update(outcome="success" if obs.won else "failure", reward=obs.score)
        return update

    def prompt(self, messages: list[BaseMessage]) -> list[dict[str, str]]:
        """What the model sees: the game so far, with recalled games (if any) quoted in its opening
        user turn, never as a system message (``sleep_agent/recalled.py``)."""
        game = [m for m in messages if not is_recall_message(m)]
        parts = episode_from_messages(game, namespace=self.memory.config.namespace).parts
        prompt = trajectory_prompt(parts, window=self.window)
        recalled = [str(m.content) for m in messages if is_recall_message(m)]
        opening = next((i for i, m in enumerate(prompt) if m["role"] == "user"), None)
        if not recalled or opening is None:
            return prompt
        (quoted,) = with_recall(recalled[-1], prompt[opening]["content"])
        return [*prompt[:opening], quoted, *prompt[opening + 1 :]]


def game_cycle_config(base: CycleConfig | None = None) -> CycleConfig:
    """How a game player sleeps: its won trajectories only (each game's rooms are new, so nothing
    in their text is worth learning as a fact), one step of history per sample, as it prompts.
    ``base``: other settings to start from."""
    base = base or CycleConfig()
    return base.model_copy(
        update={
            "fact_sources": [],
            "tool_calls": "text",  # the player prompts with the text form (trajectory_prompt)
            "trajectory_window": WINDOW,
            "training": base.training.model_copy(update={"max_length": 512}),
        }
    )


def opening(first: Observation) -> str:
    """The first user turn: the task, the instruction, the first observation."""
    return f"{first.task.strip()} {INSTRUCTION}\n{first.prompt_text()}"


_COMMAND = re.compile(r'"command"\s*:\s*"([^"]*)"')


def choose(reply: str, commands: list[str]) -> tuple[str, bool]:
    """The listed command the reply names, or the one sharing most words with it (exact: False).

    Word overlap rather than embeddings: commands are a few words from a small fixed vocabulary,
    and the choice must be the same on every run.
    """
    match = _COMMAND.search(reply)
    text = (match.group(1) if match else reply).strip().strip(".").lower()
    for command in commands:
        if text == command.lower():
            return command, True
    words = set(re.findall(r"[a-z]+", text))

    def overlap(command: str) -> float:
        own = set(command.lower().split())
        return len(words & own) / len(words | own) if words else 0.0

    best = max(commands, key=overlap) if commands else "look around"
    return best, False


def _call(command: str, step: int) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": TOOL, "args": {"command": command}, "id": f"step-{step}"}])


def _result(obs: Observation, step: int, call_id: str | None = None) -> ToolMessage:
    return ToolMessage(obs.prompt_text(), name=TOOL, tool_call_id=call_id or f"step-{step}")
