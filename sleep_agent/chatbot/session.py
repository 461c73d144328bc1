"""One user's chat with sleepable memory: the state behind the terminal and the web chat.

A user is a namespace (own buffer, own adapters) of one memory shared by every user, and a session
is a LangGraph thread of one graph shared by every user: each turn names its user in
``configurable``, the way a deployed graph is called. A new session starts with an empty context,
so what the bot still knows there comes from its weights and from recall
(``RecallConfig.include_consolidated`` off: from its weights alone, once it has slept).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from sleep_agent.agent import create_sleep_agent
from sleep_agent.config import SleepConfig
from sleep_agent.nodes import SleepMemory
from sleep_agent.serving.base import ServingBackend
from sleep_agent.sleep.cycle import SleepCycle, SleepReport

log = logging.getLogger(__name__)

DEFAULT_PROMPT = "You are a helpful personal assistant. Answer briefly."


@dataclass
class Reply:
    """What one turn gave: the answer and, when the turn ended in a sleep, what the sleep did."""

    text: str
    adapter: str | None
    slept: SleepReport | None = None


class ChatBot:
    """One memory and one graph for every user: a user is a namespace of the memory's template."""

    def __init__(
        self,
        config: SleepConfig,
        *,
        backend: ServingBackend | None = None,
        cycle: SleepCycle | None = None,
        prompt: str = DEFAULT_PROMPT,
        max_tokens: int = 96,  # per answer: a CPU answers 20-40 tokens a second
    ) -> None:
        self.memory = SleepMemory(
            config.model_copy(update={"namespace": "{user_id}"}), backend=backend, cycle=cycle
        )
        self.prompt, self.max_tokens = prompt, max_tokens
        self._graph: Any = None  # built on the first turn: the chat model starts the server
        self._checkpointer = InMemorySaver()  # threads are deleted when their session ends
        self.rebuilds = Rebuilds()  # kept by the bot: a user's session may end while theirs runs
        self._lock = threading.Lock()

    @property
    def graph(self) -> Any:
        with self._lock:
            if self._graph is None:
                model = self.memory.chat_model(max_tokens=self.max_tokens)
                self._graph = create_sleep_agent(
                    self.memory, prompt=self.prompt, model=model, checkpointer=self._checkpointer
                )
            return self._graph

    def session(self, user: str) -> ChatSession:
        """A new session of ``user`` (a thread of their own) on the shared memory and graph."""
        return ChatSession(self.memory.for_namespace(user), bot=self)

    def end_thread(self, thread: str) -> None:
        """Free a finished conversation's checkpoints (they hold every message of it)."""
        self._checkpointer.delete_thread(thread)

    def close(self) -> None:
        """Wait for every user's sleep, then stop the server if this bot started it."""
        self.memory.close()


@dataclass
class ChatSession:
    """A user's memory and their current thread of the bot's graph. Thread-safe: one turn at a time."""

    memory: SleepMemory  # this user's own
    bot: ChatBot
    thread_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._turns = 0

    @classmethod
    def open(
        cls,
        user: str,
        config: SleepConfig,
        *,
        backend: ServingBackend | None = None,
        cycle: SleepCycle | None = None,
        **kwargs: Any,
    ) -> ChatSession:
        """The session of ``user`` (their namespace) on a bot of its own, with the rest of ``config``.

        ``backend``: a server shared with others (each user is served only their own adapter);
        ``cycle``: the sleep cycle (default: the standard one); ``kwargs``: :class:`ChatBot`'s.
        """
        return ChatBot(config, backend=backend, cycle=cycle, **kwargs).session(user)

    @property
    def user(self) -> str:
        return self.memory.config.namespace

    @property
    def thread(self) -> str:
        """The graph thread of this session, keyed by its user: no id reaches another user's."""
        return f"{self.user}/{self.thread_id}"

    def send(self, text: str, on_sleep: Callable[[dict[str, Any]], None] | None = None) -> Reply:
        """One turn through the graph: recall, answer, record, and sleep if a threshold is reached.

        ``on_sleep(decision)`` is called when the turn is about to fall asleep, before the sleep runs.
        """
        if not text.strip():
            raise ValueError("say something: the message is empty")
        graph = self.bot.graph
        with self._lock:
            before = self.memory.last_report
            answer: AIMessage | None = None
            run = {"configurable": {"user_id": self.user, "thread_id": self.thread}}
            updates = graph.stream({"messages": [HumanMessage(text)]}, run, stream_mode="updates")
            for update in updates:
                for node, change in update.items():
                    for message in (change or {}).get("messages", []):
                        if isinstance(message, AIMessage):
                            answer = message
                    decision = (change or {}).get("sleep_decision") if node == "record" else None
                    if decision and decision.get("sleep") and on_sleep is not None:
                        on_sleep(decision)
            self._turns += 1
            if answer is None:
                raise RuntimeError("the graph finished the turn without an answer")
            report = self.memory.last_report
            return Reply(
                text=str(answer.content).strip(),
                adapter=answer.response_metadata.get("model_name"),
                slept=report if report is not before else None,
            )

    def sleep(self) -> SleepReport:
        """Sleep now on what this user said (the terminal's /sleep)."""
        with self._lock:
            return self.memory.sleep(trigger="requested")

    def sleep_in_background(self) -> bool:
        """Start a sleep in a thread and return at once; False when one already runs.

        The web page's way to sleep: a sleep takes minutes, and a request worker held that long
        is one fewer for every other user.
        """
        return self.memory.sleep_in_background(trigger="requested")

    def forget(self, text: str, *, background: bool = False) -> dict[str, Any]:
        """Erase every memory mentioning ``text``; the adapter is rebuilt without them.

        The erasing is done when this returns. With ``background`` the rebuild runs in a thread
        (after any sleep in progress), and ``rebuilding`` in the result says it started.
        """
        with self._lock:
            if not background:
                return self.memory.forget(text=text)
            result = self.memory.forget(text=text, rebuild=False)
        if result["rebuild_needed"]:
            result["rebuilding"] = self.bot.rebuilds.request(self.user, self.memory)
        return result

    @property
    def busy(self) -> str | None:
        """What runs in the background for this user: "sleeping", "rebuilding" or None."""
        if self.bot.rebuilds.running(self.user):
            return "rebuilding"
        return "sleeping" if self.memory.sleeping else None

    def new_session(self) -> str:
        """A new thread: an empty context, the same memory (the old thread's checkpoints are freed)."""
        with self._lock:
            self.bot.end_thread(self.thread)
            self.thread_id = uuid.uuid4().hex[:8]
            self._turns = 0
            return self.thread_id

    def end(self) -> None:
        """Free this session's conversation; its user's memory stays."""
        with self._lock:
            self.bot.end_thread(self.thread)

    def status(self) -> dict[str, Any]:
        """The memory's status plus this session's thread, turn count and background work."""
        return {**self.memory.status(), "thread_id": self.thread_id, "turns": self._turns, "busy": self.busy}

    def close(self) -> None:
        self.bot.close()


class Rebuilds:
    """Each user's rebuild after a forget, one thread per user at most.

    A forget that arrives while a rebuild runs is not lost: that rebuild fixed its list of
    forgotten episodes when it started, so the thread goes round again until nothing is owed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owed: set[str] = set()
        self._threads: dict[str, threading.Thread] = {}

    def request(self, user: str, memory: SleepMemory) -> bool:
        """Owe ``user`` a rebuild; returns whether a new thread started (else the running one will)."""
        with self._lock:
            self._owed.add(user)
            if self.running(user):
                return False
            self._threads[user] = threading.Thread(
                target=self._run, args=(user, memory), name=f"rebuild-{user}", daemon=True
            )
            self._threads[user].start()
            return True

    def running(self, user: str) -> bool:
        thread = self._threads.get(user)
        return thread is not None and thread.is_alive()

    def _run(self, user: str, memory: SleepMemory) -> None:
        # Whether to go on is decided under the lock that request() takes, and the thread leaves
        # _threads in the same breath: a forget in between starts a new thread rather than being lost.
        for _ in range(3):  # a rebuild that keeps failing stops; rebuild_needed still says it is owed
            with self._lock:
                if user not in self._owed:
                    self._threads.pop(user, None)
                    return
                self._owed.discard(user)
            try:
                failed = bool(memory.rebuild().error)
            except Exception:  # the sleep report holds the error; a thread has no caller to tell
                log.exception("rebuilding %s's adapter after a forget failed", user)
                failed = True
            with self._lock:
                if failed:
                    self._threads.pop(user, None)
                    return
                if memory.rebuild_needed:
                    self._owed.add(user)
        with self._lock:
            self._threads.pop(user, None)


def describe_sleep(report: SleepReport, memory: SleepMemory | None = None) -> list[str]:
    """A report in a few lines for people: what was learned, what was left out and why."""
    if report.error:
        return [f"the sleep failed: {report.error}"]
    lines = []
    took = f" in {report.duration_s:.0f} s" if report.duration_s is not None else ""
    if report.adapter_version is not None:
        lines.append(
            f"slept ({report.trigger}){took}: {len(report.consolidated)} of {report.episodes_in} "
            f"memories now in the weights, adapter v{report.adapter_version}"
        )
    else:
        lines.append(f"slept ({report.trigger}){took}: nothing new published")
    if memory is not None and report.consolidated:
        for episode in memory.buffer.get(report.consolidated):
            said = " ".join(p.content for p in episode.parts if p.source == "user")
            lines.append(f"  learned: {said[:100]}")
    reason = report.metrics.get("gate_reason")
    if reason:
        lines.append(f"  gate: {reason}")
    reasons = Counter([*report.rejected.values(), *report.retry.values()])
    lines += [f"  left out ({count}): {why}" for why, count in sorted(reasons.items())]
    return lines
