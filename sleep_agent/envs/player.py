"""A LangGraph agent that acts in an :class:`~sleep_agent.envs.Environment` with sleepable memory.

    recall -> act <-> env -> record -> (sleep ->) END

``act`` asks the served model (the memory's current adapter) for the next action, from the same
prompt a sleep trains it on (:func:`~sleep_agent.sleep.extract.trajectory_prompt`); ``env`` runs it
and returns the observation as a tool result; ``record`` stores the whole task as one episode with
its outcome and reward, so that a sleep imitates the tasks that went well. Held-out tasks are
played with ``record=False``: they never reach the memory.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NotRequired

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from sleep_agent.envs.base import Environment, Observation, Split
from sleep_agent.episodes import episode_from_messages, is_recall_message
from sleep_agent.nodes import SleepMemory, SleepState
from sleep_agent.recalled import with_recall
from sleep_agent.sleep.extract import CALL_END, trajectory_prompt
from sleep_agent.sleep.standard import CycleConfig

TOOL = "act"
# How an agent prompts and a sleep trains: one step of history per prompt, so that a long task
# gives prompts of bounded length, and what the agent sees is what it was trained on.
WINDOW = 1

Prompt = list[dict[str, str]]
Ask = Callable[[Prompt], str]


class AgentState(SleepState):
    """The messages of one task plus where it stands."""

    actions: NotRequired[list[str]]
    done: NotRequired[bool]
    steps: NotRequired[int]


@dataclass(frozen=True)
class TaskResult:
    """How one task went: the benchmark's own score and success, and what it cost."""

    seed: int
    split: str
    won: bool
    score: float
    steps: int
    invalid: int  # replies that named no listed action and were mapped to the nearest one
    seconds: float
    actions: list[str]
    prompt_tokens: list[int]  # per step, when the player was given a token counter


class AgentPlayer:
    """Plays tasks of one environment: ``player.play(seed, split)`` -> :class:`TaskResult`.

    ``memory`` recalls (``recall=True``) and records (``record=True``); ``ask`` overrides which
    model answers (the gate's behaviour check asks a candidate adapter, with no memory at all).
    """

    def __init__(
        self,
        memory: SleepMemory | None,
        env: Environment,
        *,
        recall: bool = True,
        record: bool = True,
        window: int | None = WINDOW,
        max_tokens: int = 48,
        ask: Ask | None = None,
        token_counter: Callable[[Prompt], int] | None = None,
    ) -> None:
        if memory is None and (recall or record or ask is None):
            raise ValueError("a player without a memory needs ask=, recall=False and record=False")
        self.memory = memory
        self.env = env
        self.window = window
        self.max_tokens = max_tokens
        self.token_counter = token_counter
        self._ask = ask
        self._prompt_tokens: list[int] = []
        self.graph = self._build(recall=recall, record=record)

    def play(self, seed: int, split: Split = "train") -> TaskResult:
        started = time.perf_counter()
        self._prompt_tokens = []
        first = self.env.reset(seed, split)
        inputs = {"messages": [HumanMessage(opening(self.env, first))], "actions": first.actions, "steps": 0}
        config: RunnableConfig = {
            "configurable": {"thread_id": f"{split}-{seed}"},
            "recursion_limit": 4 * self.env.step_limit + 10,
        }
        state = self.graph.invoke(inputs, config)
        ai = [m for m in state["messages"] if isinstance(m, AIMessage)]
        return TaskResult(
            seed=seed,
            split=split,
            won=state.get("outcome") == "success",
            score=float(state.get("reward") or 0.0),
            steps=int(state.get("steps", 0)),
            invalid=sum(1 for m in ai if m.additional_kwargs.get("mapped")),
            seconds=time.perf_counter() - started,
            actions=[c["args"]["command"] for m in ai for c in m.tool_calls],
            prompt_tokens=list(self._prompt_tokens),
        )

    def demonstrate(self, seed: int, split: Split = "train") -> bool:
        """Record the task's gold walkthrough as a won episode (learning from demonstrations).

        Returns False (and records nothing) when the environment has no walkthrough or it does
        not win the task.
        """
        if self.memory is None:
            raise ValueError("demonstrations are recorded into a memory: this player has none")
        first = self.env.reset(seed, split)
        gold = self.env.walkthrough()
        if not gold:
            return False
        first = self.env.reset(seed, split)  # the walkthrough may have played the task
        messages: list[BaseMessage] = [HumanMessage(opening(self.env, first))]
        obs = first
        for i, action in enumerate(gold):
            messages.append(_call(action, i))
            obs = self.env.step(action)
            messages.append(_result(obs, i))
            if obs.done:
                break
        if not obs.won:
            return False
        self.memory.buffer.record(
            messages, thread_id=f"demo-{split}-{seed}", outcome="success", reward=obs.score
        )
        return True

    # -- the graph -------------------------------------------------------------------------

    def _build(self, *, recall: bool, record: bool) -> Any:
        builder = StateGraph(AgentState)
        builder.add_node("act", self.act)
        builder.add_node("env", self.step)
        first = "act"
        if recall and self.memory is not None:
            builder.add_node("recall", self.memory.recall_node)
            first = "recall"
            builder.add_edge("recall", "act")
        builder.add_edge(START, first)
        builder.add_edge("act", "env")
        after = "record" if record else END
        builder.add_conditional_edges("env", lambda s: after if s.get("done") else "act", ["act", after])
        if record and self.memory is not None:
            builder.add_node("record", self.memory.record_node)
            builder.add_node("sleep", self.memory.sleep_node)
            builder.add_conditional_edges("record", self.memory.should_sleep, ["sleep", END])
            builder.add_edge("sleep", END)
        return builder.compile()

    def act(self, state: dict[str, Any]) -> dict[str, Any]:
        """The model's next action: mapped onto the listed ones, or as written when none are listed."""
        prompt = self.prompt(state["messages"])
        if self.token_counter is not None:
            self._prompt_tokens.append(self.token_counter(prompt))
        reply = self.ask(prompt)
        action, exact = choose(reply, state.get("actions", []))
        message = _call(action, int(state.get("steps", 0)))
        if not exact:
            message.additional_kwargs["mapped"] = reply
        return {"messages": [message]}

    def ask(self, prompt: Prompt) -> str:
        if self._ask is None:
            assert self.memory is not None
            model = self.memory.chat_model(max_tokens=self.max_tokens)
            # the call ends the reply: what a base model rambles on with after it costs seconds per step
            self._ask = lambda p: str(model.invoke(p, stop=[CALL_END]).content)
        return self._ask(prompt)

    def step(self, state: dict[str, Any]) -> dict[str, Any]:
        """Run the last action; at the end, the outcome and reward the episode is recorded with."""
        call = state["messages"][-1].tool_calls[0]
        obs = self.env.step(call["args"]["command"])
        update: dict[str, Any] = {
            "messages": [_result(obs, int(state.get("steps", 0)), call["id"])],
            "actions": obs.actions,
            "steps": obs.steps,
            "done": obs.done,
        }
        if obs.done:
            update.update(outcome="success" if obs.won else "failure", reward=obs.score)
        return update

    def prompt(self, messages: list[BaseMessage]) -> Prompt:
        """What the model sees: the task so far, with recalled tasks (if any) quoted in its opening
        user turn, never as a system message (``sleep_agent/recalled.py``)."""
        own = [m for m in messages if not is_recall_message(m)]
        namespace = self.memory.config.namespace if self.memory is not None else "player"
        prompt = trajectory_prompt(episode_from_messages(own, namespace=namespace).parts, window=self.window)
        recalled = [str(m.content) for m in messages if is_recall_message(m)]
        opening_turn = next((i for i, m in enumerate(prompt) if m["role"] == "user"), None)
        if not recalled or opening_turn is None:
            return prompt
        (quoted,) = with_recall(recalled[-1], prompt[opening_turn]["content"])
        return [*prompt[:opening_turn], quoted, *prompt[opening_turn + 1 :]]


def trajectory_cycle_config(base: CycleConfig | None = None) -> CycleConfig:
    """How an agent that learns to act sleeps: on its won trajectories only (each task's world is
    new, so nothing in its text is worth learning as a fact), one step of history per sample as it
    prompts, and a training sized for a handful of samples rather than for hundreds of facts.

    Batches of 4 and 10 optimiser steps at least: a few demonstrations get as many updates as
    before in about half the tokens (batches of 8 over 7 samples trained 13k tokens; 40 steps took
    356 s and won no more held-out games). At most 30 steps: a family with long observations
    (ScienceWorld lists 30 actions a step) once trained 67 steps over 204k tokens for one sleep and
    did no better than after 30. At twice the rate, and as many anchors as samples. ``base``: other
    settings.
    """
    base = base or CycleConfig()
    return base.model_copy(
        update={
            "fact_sources": [],
            "tool_calls": "text",  # the player prompts with the text form (trajectory_prompt)
            "trajectory_window": WINDOW,
            "anchor_ratio": 1.0,
            "training": base.training.model_copy(
                update={
                    "max_length": 768,
                    "epochs": 3.0,
                    "min_steps": 10,
                    "max_steps": 30,
                    "batch_size": 4,
                    "learning_rate": 1e-3,
                }
            ),
        }
    )


def opening(env: Environment, first: Observation) -> str:
    """The first user turn: the task, how to reply, the first observation."""
    return f"{first.task.strip()} {env.instruction}\n{first.prompt_text()}"


_CALL = re.compile(r"\{.*\}", re.DOTALL)
_COMMAND = re.compile(r'"command"\s*:\s*"((?:[^"\\]|\\.)*)"')
_FENCE = re.compile(r"^```\w*\s*|\s*```$")


def written_action(reply: str) -> str:
    """The action a reply writes: the ``command`` of its ``call act({...})``, else its first line."""
    found = _CALL.search(reply)
    if found:
        try:
            args = json.loads(found.group(0))
            if isinstance(args, dict) and isinstance(args.get("command"), str):
                return args["command"].strip()
        except json.JSONDecodeError:
            pass
    match = _COMMAND.search(reply)
    if match:
        try:
            return str(json.loads(f'"{match.group(1)}"')).strip()
        except json.JSONDecodeError:
            return match.group(1).strip()
    lines = [line for line in _FENCE.sub("", reply.strip()).splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def choose(reply: str, actions: list[str]) -> tuple[str, bool]:
    """The listed action the reply names, or the one sharing most words with it (exact: False).

    With no list (free-form actions, a shell command) the written action is the action.
    Word overlap rather than embeddings: listed actions are a few words from a small vocabulary,
    and the choice must be the same on every run.
    """
    text = written_action(reply)
    if not actions:
        return text, True
    said = text.strip(".").lower()
    for action in actions:
        if said == action.lower():
            return action, True
    words = set(re.findall(r"[a-z0-9]+", said))

    def overlap(action: str) -> float:
        own = set(re.findall(r"[a-z0-9]+", action.lower()))
        return len(words & own) / len(words | own) if words else 0.0

    return max(actions, key=overlap), False


def _call(action: str, step: int) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": TOOL, "args": {"command": action}, "id": f"step-{step}"}])


def _result(obs: Observation, step: int, call_id: str | None = None) -> ToolMessage:
    return ToolMessage(obs.prompt_text(), name=TOOL, tool_call_id=call_id or f"step-{step}")
