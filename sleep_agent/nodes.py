"""SleepMemory: the LangGraph nodes an agent builder adds to a graph, and the memory behind them.

    builder.add_node("recall", memory.recall_node)     # relevant pending memories into the prompt
    builder.add_node("record", memory.record_node)     # the last turn into the buffer
    builder.add_node("sleep", memory.sleep_node)       # consolidate (blocking or in the background)
    builder.add_conditional_edges("record", memory.should_sleep)   # -> "sleep" or END

Nodes are plain callables over state, each with an async twin (``arecall_node``...). They work
with ``MessagesState``; with :class:`SleepState` the sleep decision and the last report are also
kept in the graph state.

One memory serves many users when its namespace is a template: ``SleepConfig(namespace=
"user-{user_id}")`` is filled on every call from ``config["configurable"]`` or the run's
``context``, and each user gets their own buffer, lock, adapters and sleeps on one shared server.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NotRequired

from langchain_core.messages import BaseMessage, HumanMessage, RemoveMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, MessagesState
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.runtime import CONFIG_KEY_RUNTIME

from sleep_agent.buffer import EpisodeBuffer, Recalled
from sleep_agent.config import SleepConfig, check_namespace, resolve_namespace
from sleep_agent.episodes import Episode, TokenCounter, is_recall_message, is_user_message, last_turn
from sleep_agent.errors import NamespaceBusyError, NamespaceError, SleepAgentError
from sleep_agent.locks import NamespaceLock
from sleep_agent.policy import SleepDecision, decide
from sleep_agent.recalled import DEFAULT_RECALL_PROMPT, recall_message
from sleep_agent.sleep.cycle import SleepContext, SleepCycle, SleepReport
from sleep_agent.text import fold

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from sleep_agent.adapters import AdapterRegistry
    from sleep_agent.serving.base import ServingBackend

log = logging.getLogger(__name__)

# forget(text=...) refuses shorter pieces: "e" once erased nearly every memory of a user.
FORGET_MIN_CHARS = 4


class SleepState(MessagesState):
    """``MessagesState`` plus what the memory nodes report back."""

    sleep_decision: NotRequired[dict[str, Any]]
    sleep_report: NotRequired[dict[str, Any]]
    sleep_requested: NotRequired[bool]
    outcome: NotRequired[str]
    reward: NotRequired[float]


class SleepMemory:
    """Episodic buffer, sleep policy, sleep cycle and served model for one namespace, or for a
    namespace per user when ``config.namespace`` is a template (see :meth:`for_run`)."""

    def __init__(
        self,
        config: SleepConfig | None = None,
        *,
        cycle: SleepCycle | None = None,
        backend: "ServingBackend | None" = None,
        token_counter: TokenCounter | None = None,
        recall_prompt: str = DEFAULT_RECALL_PROMPT,
    ) -> None:
        self.config = config or SleepConfig()
        if "{memories}" not in recall_prompt:
            raise ValueError("recall_prompt must contain '{memories}', where the recalled episodes go")
        self.recall_prompt = recall_prompt
        if cycle is None:
            from sleep_agent.sleep.standard import StandardCycle

            cycle = StandardCycle(self.config.cycle)
        self.cycle: SleepCycle = cycle
        self._backend = backend
        self._owns_backend = backend is None
        self._attached = False
        self._token_counter = token_counter
        self._parent: SleepMemory | None = None
        self._scopes: dict[str, SleepMemory] = {}
        self._scopes_lock = threading.Lock()
        self._buffer: EpisodeBuffer | None = None
        self._namespace_lock: NamespaceLock | None = None
        if not self.config.per_run:
            self._buffer = EpisodeBuffer.from_config(self.config, token_counter=self.count_tokens)
            self._namespace_lock = NamespaceLock(self.config.home, self.config.namespace)
        self._sleep_lock = threading.Lock()
        self._sleep_thread: threading.Thread | None = None
        self._requested = threading.Event()
        self._consolidated_messages: set[str] = set()
        self._last_activity: float | None = None
        self._last_decision: dict[str, SleepDecision] = {}
        self.last_report: SleepReport | None = None
        # erased episodes learned by a custom cycle that keeps no manifests (not persisted)
        self._forgotten_unlisted: set[str] = set()
        # system prompts the agent answers under (create_sleep_agent adds its own): a sleep also
        # trains the memories under them, since a small model's learned answers shift with the prompt
        self.agent_prompts: set[str] = set()

    # -- the nodes -------------------------------------------------------------------------

    def recall_node(self, state: dict[str, Any], config: RunnableConfig | None = None) -> dict[str, Any]:
        """Put the memories relevant to the last user message into the prompt.

        The memory message replaces the one injected on the previous turn, so the state never
        holds more than one; it sits at the front, after the agent's own system messages, which
        chat templates that take one leading system message need. Memories already in the state's
        messages are not repeated.
        """
        return self.for_run(config)._recall_node(state)

    async def arecall_node(
        self, state: dict[str, Any], config: RunnableConfig | None = None
    ) -> dict[str, Any]:
        """Async twin of :meth:`recall_node` (Chroma's client is sync: it runs in a worker thread,
        and so does opening a new user's memory)."""
        return await asyncio.to_thread(lambda: self.for_run(config)._recall_node(state))

    def record_node(self, state: dict[str, Any], config: RunnableConfig | None = None) -> dict[str, Any]:
        """Record the last turn (from the last user message on) and decide whether to sleep."""
        return self.for_run(config)._record_node(state, config)

    async def arecord_node(
        self, state: dict[str, Any], config: RunnableConfig | None = None
    ) -> dict[str, Any]:
        """Async twin of :meth:`record_node`."""
        return await asyncio.to_thread(lambda: self.for_run(config)._record_node(state, config))

    def should_sleep(
        self, state: dict[str, Any], config: RunnableConfig | None = None
    ) -> Literal["sleep", "__end__"]:
        """Route to ``"sleep"`` or END, from the decision ``record_node`` made."""
        return self.for_run(config)._should_sleep(state, config)

    def sleep_node(self, state: dict[str, Any], config: RunnableConfig | None = None) -> dict[str, Any]:
        """Run a cycle: blocking (the default), or in a thread with ``policy.background=True``.

        A blocking sleep inside a graph run writes its progress to LangGraph's custom stream
        (``stream_mode="custom"``): one event per stage, training step and gate result.
        """
        return self.for_run(config)._sleep_node(state)

    async def asleep_node(
        self, state: dict[str, Any], config: RunnableConfig | None = None
    ) -> dict[str, Any]:
        """Async twin of :meth:`sleep_node`: the cycle runs in a worker thread, so other runs on
        the event loop (other users' turns) go on while it trains."""
        return await asyncio.to_thread(lambda: self.for_run(config)._sleep_node(state))

    def _recall_node(self, state: dict[str, Any]) -> dict[str, Any]:
        messages: list[BaseMessage] = state.get("messages", [])
        updates: list[BaseMessage] = [
            RemoveMessage(id=m.id) for m in messages if is_recall_message(m) and m.id
        ]
        updates += self._trim(messages)
        query = _last_human_text(messages)
        if query and self.config.recall.k > 0:
            in_context = {m.id for m in messages if m.id}
            recalled = [
                r
                for r in self.recall(query)
                if not (r.episode.message_ids and set(r.episode.message_ids) <= in_context)
            ]
            text = self._format_memories(recalled)
            if text:
                return {"messages": _with_recall_before_question(messages, updates, recall_message(text))}
        return {"messages": updates} if updates else {}

    def _record_node(self, state: dict[str, Any], config: RunnableConfig | None) -> dict[str, Any]:
        messages: list[BaseMessage] = state.get("messages", [])
        turn = last_turn(messages)
        previous_activity = self._last_activity
        if turn:
            self.buffer.record(
                turn,
                thread_id=_thread_id(config),
                outcome=state.get("outcome"),
                reward=state.get("reward"),
            )
        now = time.time()
        idle_s = None if previous_activity is None else now - previous_activity
        self._last_activity = now
        decision = self.decide(messages, idle_s=idle_s, requested=bool(state.get("sleep_requested")))
        self._last_decision[_thread_id(config)] = decision
        return {"sleep_decision": decision.to_dict()}

    def _should_sleep(
        self, state: dict[str, Any], config: RunnableConfig | None
    ) -> Literal["sleep", "__end__"]:
        decision = state.get("sleep_decision")
        if decision is None:  # a MessagesState graph drops the key; the memory kept it
            kept = self._last_decision.get(_thread_id(config))
            decision = kept.to_dict() if kept else self.decide(state.get("messages", [])).to_dict()
        return "sleep" if decision["sleep"] else END

    def _sleep_node(self, state: dict[str, Any]) -> dict[str, Any]:
        decision = state.get("sleep_decision") or {}
        trigger = decision.get("reason", "requested")
        if self.config.policy.background:
            started = self.sleep_in_background(trigger=trigger)
            return {"sleep_requested": False, "sleep_decision": {**decision, "background": started}}
        try:
            report = self.sleep(trigger=trigger)
        except NamespaceBusyError as e:  # another process is consolidating; this turn goes on
            log.info("not sleeping: %s", e)
            return {"sleep_requested": False, "sleep_decision": {**decision, "skipped": str(e)}}
        messages: list[BaseMessage] = state.get("messages", [])
        return {
            "messages": self._trim(messages),
            "sleep_requested": False,
            "sleep_report": report.model_dump(),
        }

    # -- users -----------------------------------------------------------------------------

    def for_run(self, config: RunnableConfig | None = None) -> "SleepMemory":
        """The memory of the user a run is for: this one, or (namespace template) that user's own.

        The template is filled from the run's ``context`` and ``config["configurable"]`` (context
        wins); called without a config inside a graph run or chat model call, the current run's is
        used. Raises :class:`NamespaceError` when the run names no user.
        """
        if not self.config.per_run:
            return self
        if config is None:
            from langchain_core.runnables.config import ensure_config

            config = ensure_config()
        return self.for_namespace(resolve_namespace(self.config.namespace, run_values(config)))

    def for_namespace(self, namespace: str) -> "SleepMemory":
        """One user's memory by namespace (this memory itself when it has a fixed namespace).

        Every user of a template memory shares its cycle, token counter, agent prompts and serving
        backend (one server, an adapter per user); buffers, locks, adapters and sleeps are theirs.
        """
        if not self.config.per_run:
            if namespace != self.config.namespace:
                raise NamespaceError(
                    f"this memory is for namespace {self.config.namespace!r}, not {namespace!r}; give it "
                    "a template such as SleepConfig(namespace='user-{user_id}') to serve many users"
                )
            return self
        with self._scopes_lock:
            scope = self._scopes.get(namespace)
            if scope is None:
                scope = SleepMemory(
                    self.config.model_copy(update={"namespace": check_namespace(namespace)}),
                    cycle=self.cycle,
                    token_counter=self.count_tokens,
                    recall_prompt=self.recall_prompt,
                )
                scope._parent = self
                scope._owns_backend = False
                scope.agent_prompts = self.agent_prompts
                self._scopes[namespace] = scope
            return scope

    def namespaces(self) -> list[str]:
        """The namespaces this memory has served since it was built (a template memory's users)."""
        return sorted(self._scopes) if self.config.per_run else [self.config.namespace]

    @property
    def buffer(self) -> EpisodeBuffer:
        """This namespace's episodes (a template memory has none of its own: see :meth:`for_run`)."""
        if self._buffer is None:
            raise self._per_run_error("buffer")
        return self._buffer

    def _one_namespace(self, what: str) -> str:
        if self.config.per_run:
            raise self._per_run_error(what)
        return self.config.namespace

    def _per_run_error(self, what: str) -> NamespaceError:
        return NamespaceError(
            f"this memory serves one namespace per user ({self.config.namespace!r}), so {what} belongs to "
            "one of them: use memory.for_namespace('...') or memory.for_run(config) first"
        )

    # -- the memory ------------------------------------------------------------------------

    def recall_text(self, query: str) -> str:
        """The memory message recall_node would inject for ``query`` ("" when nothing is recalled)."""
        return self._format_memories(self.recall(query))

    def recall(self, query: str) -> list[Recalled]:
        """The episodes recall_node would consider for ``query``, nearest first."""
        statuses = ("pending", "consolidated") if self.config.recall.include_consolidated else ("pending",)
        return self.buffer.query(
            query, k=self.config.recall.k, statuses=statuses, max_distance=self.config.recall.max_distance
        )

    def decide(
        self, messages: Sequence[BaseMessage] = (), *, idle_s: float | None = None, requested: bool = False
    ) -> SleepDecision:
        """The sleep decision for a conversation holding ``messages``, with its reason."""
        pending = self.buffer.pending_stats()
        return decide(
            self.config.policy,
            context_tokens=self.count_tokens(messages) if messages else 0,
            context_window=self.config.context_window,
            pending_episodes=pending.episodes,
            pending_tokens=pending.tokens,
            idle_s=idle_s,
            requested=requested or self._requested.is_set(),
            sleeping=self.sleeping,
        )

    def request_sleep(self) -> None:
        """Make the next ``should_sleep`` route to sleep, whatever the thresholds say."""
        self._one_namespace("request_sleep()")
        self._requested.set()

    def maybe_sleep(self) -> SleepReport | None:
        """For a scheduler: sleep if a threshold (idle time included) is reached now."""
        pending = self.buffer.pending_stats()
        idle_s = None if pending.last_recorded_at is None else time.time() - pending.last_recorded_at
        decision = self.decide(idle_s=idle_s)
        return self.sleep(trigger=decision.reason) if decision.sleep else None

    def sleep(self, *, trigger: str = "requested", forgotten: Sequence[str] = ()) -> SleepReport:
        """Run one sleep cycle now over the pending episodes and mark what became of them.

        ``forgotten``: consolidated episodes erased since the last sleep (see :meth:`forget`).
        """
        lock = self._require_lock("sleep()")
        if not self._sleep_lock.acquire(blocking=False):
            raise SleepAgentError("a sleep cycle is already running for this memory; wait() for it first")
        try:
            with lock:  # NamespaceBusyError when another memory or process sleeps it
                return self._run_cycle(trigger, forgotten)
        finally:
            self._sleep_lock.release()

    def sleep_in_background(self, *, trigger: str = "requested") -> bool:
        """Start a cycle in a thread; the agent keeps serving the previous adapter meanwhile.

        Returns False (and starts nothing) when a cycle of this namespace is already running, here
        or in another memory or process.
        """
        lock = self._require_lock("sleep_in_background()")
        if not self._sleep_lock.acquire(blocking=False):
            return False
        try:
            lock.acquire()
        except NamespaceBusyError as e:
            self._sleep_lock.release()
            log.info("not sleeping: %s", e)
            return False

        def run() -> None:
            try:
                self._run_cycle(trigger)
            except Exception:  # the report holds the error; a background thread has no caller
                log.exception("background sleep cycle failed")
            finally:
                lock.release()
                self._sleep_lock.release()

        self._sleep_thread = threading.Thread(target=run, name=f"sleep-{self.config.namespace}", daemon=True)
        self._sleep_thread.start()
        return True

    async def asleep(self, *, trigger: str = "requested") -> SleepReport:
        """Async twin of :meth:`sleep`: the cycle runs in a worker thread, the event loop goes on."""
        return await asyncio.to_thread(self.sleep, trigger=trigger)

    def _require_lock(self, what: str) -> NamespaceLock:
        if self._namespace_lock is None:
            raise self._per_run_error(what)
        return self._namespace_lock

    @property
    def sleeping(self) -> bool:
        """Whether a cycle runs (for a template memory: any user's)."""
        return self._sleep_lock.locked() or any(m.sleeping for m in list(self._scopes.values()))

    def wait(self, timeout: float | None = None) -> SleepReport | None:
        """Wait for a background cycle to finish (a template memory: every user's); returns its report."""
        for scope in list(self._scopes.values()):
            scope.wait(timeout)
        if self._sleep_thread is not None:
            self._sleep_thread.join(timeout)
        return self.last_report

    def forget(
        self,
        ids: Sequence[str] | None = None,
        *,
        text: str | None = None,
        everything: bool = False,
        rebuild: bool = True,
    ) -> dict[str, Any]:
        """Erase episodes by id, by a piece of their text, or ``everything`` of this namespace.

        Text is matched ignoring case, Unicode form and spacing, and must be at least
        ``FORGET_MIN_CHARS`` characters long.

        They leave the buffer and recall at once. Those already consolidated are in the adapter
        too: with ``rebuild`` (the default) a sleep retrains the adapter without them, publishes it
        whatever the gate says, and deletes the weights of every earlier version that held them;
        with nothing left, the base model serves. ``rebuild=False`` leaves that to :meth:`rebuild`
        (``rebuild_needed`` in the result and in :meth:`status`).
        """
        if ids is None and text is None and not everything:
            raise ValueError("forget() needs ids=[...], text='...' or everything=True")
        if isinstance(ids, str | bytes):
            raise TypeError(
                f"forget(ids=...) takes a list of episode ids, got the string {ids!r}; use ids=[...]"
            )
        if text is not None and (not isinstance(text, str) or len(fold(text)) < FORGET_MIN_CHARS):
            raise ValueError(
                f"forget(text=...) needs at least {FORGET_MIN_CHARS} characters to look for, got {text!r}: "
                "a shorter piece matches almost every memory (use everything=True to erase them all)"
            )
        targets = list(ids or [])
        if text is not None:
            targets += self.buffer.find_ids(text)
        if everything:
            targets += [ep.id for ep in self.buffer.episodes(None) if ep.status != "deleted"]
        episodes = self.buffer.get(targets)
        consolidated = [ep.id for ep in episodes if ep.status == "consolidated"]
        deleted = self.buffer.delete([ep.id for ep in episodes if ep.status != "deleted"], reason="forgotten")
        published = set(self._registry().history())
        self._forgotten_unlisted.update(
            ep.id for ep in episodes if ep.status == "consolidated" and ep.adapter_version not in published
        )
        result: dict[str, Any] = {"deleted": deleted, "consolidated": len(consolidated)}
        if rebuild and self.forgotten_in_weights():
            try:
                report = self.rebuild()
                result["rebuilt_version"] = report.adapter_version
            except Exception as e:  # erased all the same; the adapter waits for rebuild()
                log.exception("rebuilding without the forgotten memories failed")
                result["rebuild_error"] = f"{type(e).__name__}: {e}"
        result["rebuild_needed"] = self.rebuild_needed
        return result

    @property
    def rebuild_needed(self) -> bool:
        """Forgotten memories are still in some adapter's weights until :meth:`rebuild` succeeds."""
        return bool(self.forgotten_in_weights())

    def forgotten_in_weights(self) -> list[str]:
        """Erased episodes that a servable adapter version still learned.

        Read from the buffer and the manifests, not kept in this object: a process that restarts
        between a forget and its rebuild still knows the rebuild is owed (so does the doctor).
        """
        erased = [ep.id for ep in self.buffer.episodes("deleted")]
        held = self._registry().holders(erased)
        return sorted({i for ids in held.values() for i in ids} | self._forgotten_unlisted)

    def rebuild(self) -> SleepReport:
        """Retrain the adapter without the forgotten memories (and learn what is pending meanwhile)."""
        self.wait()  # a background sleep finishes first: its episodes are then part of the rebuild
        report = self.sleep(trigger="forget", forgotten=self.forgotten_in_weights())
        self._forgotten_unlisted -= set(report.forgotten)
        return report

    def _registry(self) -> "AdapterRegistry":
        from sleep_agent.adapters import AdapterRegistry

        return AdapterRegistry(self.config.home, self._one_namespace("the adapter registry"))

    def status(self) -> dict[str, Any]:
        """Counts per status, pending load, active adapter, whether sleeping, the last report.

        A template memory reports each user it has served under ``users``.
        """
        if self.config.per_run:
            return {
                "namespace": self.config.namespace,
                "users": {ns: self._scopes[ns].status() for ns in self.namespaces()},
                "sleeping": self.sleeping,
            }
        pending = self.buffer.pending_stats()
        return {
            "namespace": self.config.namespace,
            "episodes": self.buffer.counts(),
            "pending_tokens": pending.tokens,
            "active_adapter": self._backend.active_for(self.config.namespace) if self._backend else None,
            "sleeping": self.sleeping,
            "rebuild_needed": self.rebuild_needed,
            "disk_bytes": self._disk_bytes(),
            "last_report": self.last_report.model_dump() if self.last_report else None,
        }

    def _disk_bytes(self) -> dict[str, int]:
        """What this namespace keeps on disk, by kind (its episodes share the Chroma database)."""
        reports = (
            sum(p.stat().st_size for p in self.reports_dir.glob("*.json")) if self.reports_dir.is_dir() else 0
        )
        return {"adapters": self._registry().disk_bytes(), "reports": reports}

    # -- the model -------------------------------------------------------------------------

    @property
    def backend(self) -> "ServingBackend":
        """The serving backend, started on first use (vLLM takes about a minute on CPU)."""
        if self._backend is None and self._parent is not None:  # one server for every user
            self._backend = self._parent.backend
        if self._backend is None:
            from sleep_agent.serving import create_backend

            self._backend = create_backend(self.config)
            self._backend.start()
            self._serve_current_version()
        elif not self._attached and not self.config.per_run:
            # a shared server: serve this namespace's version if it has none
            self._backend.start()
            if self._backend.active_for(self.config.namespace) is None:
                self._serve_current_version()
        self._attached = True
        return self._backend.start()  # idempotent

    @property
    def model_path(self) -> Path:
        """The checkpoint directory of the served model (prepared on first use)."""
        existing = getattr(self._backend, "model_path", None)
        if existing is not None:
            return Path(existing)
        from sleep_agent.models import prepare_model

        return prepare_model(self.config.model, self.config.cache_dir)

    def reload(self, *, attempts: int = 5, backoff_s: float = 1.0) -> str | None:
        """Serve this namespace's current version again: after a server restart, or a reload that failed.

        Retries with growing waits while the server is away; returns the served name (None: the
        base model, nothing published yet).
        """
        from sleep_agent.adapters import AdapterRegistry
        from sleep_agent.serving.base import activate_with_retry, adapter_name

        registry = AdapterRegistry(self.config.home, self._one_namespace("reload()"))
        version = registry.current()
        if version is None:
            return None
        name = adapter_name(self.config.namespace, version)
        activate_with_retry(
            self.backend, name, registry.path(version), attempts=attempts, backoff_s=backoff_s
        )
        return name

    def _serve_current_version(self) -> None:
        # After a restart the server holds no adapter: serve the version the registry calls current.
        from sleep_agent.adapters import AdapterRegistry
        from sleep_agent.serving.base import adapter_name

        if self.config.per_run:  # each user's version is served when that user is first seen
            return
        registry = AdapterRegistry(self.config.home, self.config.namespace)
        version = registry.current()
        if version is not None and version in registry.holders(self.forgotten_in_weights()):
            # a forget's rebuild never finished (the process was killed): that version holds what the
            # user erased, so the base model answers until rebuild() serves the version without it
            log.warning(
                "%s@v%d holds forgotten memories; serving the base model until rebuild()",
                self.config.namespace,
                version,
            )
            return
        if version is not None and self._backend is not None:
            self._backend.activate(adapter_name(self.config.namespace, version), registry.path(version))

    def chat_model(self, **kwargs: Any) -> "BaseChatModel":
        """A LangChain chat model bound to this namespace's adapter; it follows each new version.

        On a server shared by several memories, it never answers with another namespace's adapter.
        A template memory's chat model picks the adapter of the user each call's run is for.
        """
        if self.config.per_run:
            return self.backend.chat_model(namespace=self._namespace_of_current_run, **kwargs)
        return self.backend.chat_model(namespace=self.config.namespace, **kwargs)

    def _namespace_of_current_run(self) -> str:
        scope = self.for_run()
        scope.backend  # noqa: B018 -- serves this user's current version on the shared server
        return scope.config.namespace

    def count_tokens(self, messages: Sequence[BaseMessage]) -> int:
        """Tokens of ``messages`` as the served model counts them, chat template included."""
        if self._token_counter is None:
            self._token_counter = _model_token_counter(self.config)
        return int(self._token_counter(messages))

    def close(self) -> None:
        """Wait for a running cycle (every user's), then stop the backend this memory started."""
        self.wait()
        if self._backend is not None and self._owns_backend:
            self._backend.stop()

    def __enter__(self) -> "SleepMemory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _run_cycle(self, trigger: str, forgotten: Sequence[str] = ()) -> SleepReport:
        self._requested.clear()
        episodes = self.buffer.episodes("pending")
        report = SleepReport(
            namespace=self.config.namespace,
            trigger=trigger,
            episodes_in=len(episodes),
            forgotten=list(forgotten),
        )
        try:
            report = self.cycle(self._sleep_context(), episodes, report)
            self._apply(report, episodes)
        except Exception as e:
            report.error = f"{type(e).__name__}: {e}"
            raise
        finally:
            report.finished_at = time.time()
            self.last_report = report
            self._save_report(report)
        self._prune()
        return report

    def _prune(self) -> None:
        """Keep what ``config.retention`` says (run under the namespace lock, after a sleep)."""
        keep = self.config.retention
        try:
            if keep.keep_versions is not None:
                pruned = self._registry().prune(keep.keep_versions)
                if pruned:
                    log.info("pruned adapter versions %s of %s", pruned, self.config.namespace)
            if keep.keep_reports is not None and self.reports_dir.is_dir():
                for old in sorted(self.reports_dir.glob("*.json"))[: -keep.keep_reports]:
                    old.unlink(missing_ok=True)
        except OSError:  # a full or read-only disk must not fail a finished sleep
            log.exception("pruning %s failed", self.config.namespace)

    def _sleep_context(self) -> SleepContext:
        return SleepContext(
            config=self.config,
            buffer=self.buffer,
            agent_prompts=frozenset(self.agent_prompts),
            recall_prompt=self.recall_prompt,
            serving=lambda: self.backend,
            model=lambda: self.model_path,
        )

    def _save_report(self, report: SleepReport) -> None:
        # a failed save must not turn a finished sleep into a failed one
        try:
            report.save(self.reports_dir)
        except OSError:
            log.exception("could not save the sleep report under %s", self.reports_dir)

    @property
    def reports_dir(self) -> Path:
        """Where every sleep's report is kept as JSON: ``HOME/reports/<namespace>/``."""
        namespace = self._one_namespace("reports")
        return Path(self.config.home).expanduser().resolve() / "reports" / namespace

    def reports(self) -> list[SleepReport]:
        """Reports of earlier sleeps, oldest first (failed ones included, with their error)."""
        return SleepReport.load_all(self.reports_dir)

    def rollback(self, version: int | None = None) -> str:
        """Serve an earlier adapter version (the previous one by default); returns its served name.

        The registry's pointer moves first, so a restart serves the same version. Refused with
        :class:`NamespaceBusyError` while a sleep of the namespace runs (it is about to move the pointer).
        """
        from sleep_agent.adapters import AdapterRegistry
        from sleep_agent.serving.base import adapter_name

        namespace = self._one_namespace("rollback()")
        lock = NamespaceLock(self.config.home, namespace)
        lock.acquire()
        try:
            registry = AdapterRegistry(self.config.home, namespace)
            target = registry.rollback(version)
            name = adapter_name(namespace, target)
            if self._backend is not None:
                self._backend.activate(name, registry.path(target))
            return name
        finally:
            lock.release()

    def _apply(self, report: SleepReport, episodes: Sequence[Episode]) -> None:
        known = {ep.id: ep for ep in episodes}
        unknown = [i for i in [*report.consolidated, *report.rejected, *report.retry] if i not in known]
        if unknown:
            raise SleepAgentError(f"the cycle reported episodes it was not given: {unknown[:5]}")
        # an episode forgotten while the cycle ran stays forgotten; the new manifest lists it, so
        # forgotten_in_weights() owes a rebuild for it (a cycle without manifests: remembered here)
        erased = {ep.id for ep in self.buffer.get([*known]) if ep.status == "deleted"}
        if report.adapter_version not in self._registry().history():
            self._forgotten_unlisted.update(erased & set(report.consolidated))
        report.consolidated = [i for i in report.consolidated if i not in erased]
        report.rejected = {i: r for i, r in report.rejected.items() if i not in erased}
        report.retry = {i: r for i, r in report.retry.items() if i not in erased}
        if report.consolidated:
            if report.adapter_version is None:
                raise SleepAgentError("the cycle consolidated episodes but published no adapter_version")
            self.buffer.mark(report.consolidated, "consolidated", adapter_version=report.adapter_version)
            for episode_id in report.consolidated:
                self._consolidated_messages.update(known[episode_id].message_ids)
        for episode_id, reason in report.rejected.items():
            self.buffer.mark([episode_id], "rejected", reason=reason)
        for episode_id, reason in report.retry.items():
            self.buffer.mark([episode_id], "pending", reason=reason)

    def _trim(self, messages: Sequence[BaseMessage]) -> list[RemoveMessage]:
        """Removals for consolidated turns, keeping the last ``keep_last_turns`` turns."""
        keep = self.config.policy.keep_last_turns
        if keep is None or not self._consolidated_messages:
            return []
        starts = [i for i, m in enumerate(messages) if is_user_message(m)]
        cut = starts[-keep] if 0 < keep <= len(starts) else (len(messages) if keep == 0 else 0)
        return [RemoveMessage(id=m.id) for m in messages[:cut] if m.id in self._consolidated_messages]

    def _format_memories(self, recalled: Sequence[Recalled]) -> str:
        from sleep_agent.sleep.critic import recallable

        budget = self.config.recall.max_tokens - self.count_tokens([recall_message(self.recall_prompt)])
        lines: list[str] = []
        for r in recalled:
            shown = [p.render() for p in recallable(r.episode.parts_from(*self.config.recall.sources))]
            if not shown or not _tells_something(r.episode):
                continue
            line = "- " + "\n".join(shown).replace("\n", "\n  ")
            cost = self.count_tokens([HumanMessage(line)])
            if cost > budget:  # too long for what is left; a shorter, less near one may still fit
                continue
            lines.append(line)
            budget -= cost
        return self.recall_prompt.format(memories="\n".join(lines)) if lines else ""


def _with_recall_before_question(
    messages: Sequence[BaseMessage], removals: Sequence[RemoveMessage], recall: HumanMessage
) -> list[BaseMessage]:
    """The state's messages rewritten with ``recall`` just before the last user message, the
    question it was recalled for (the served chat models merge the two into one user turn)."""
    gone = {r.id for r in removals}
    kept = [m for m in messages if m.id not in gone and not is_recall_message(m)]
    at = next(
        (i for i in range(len(kept) - 1, -1, -1) if isinstance(kept[i], HumanMessage)),
        len(kept),
    )
    return [RemoveMessage(id=REMOVE_ALL_MESSAGES), *kept[:at], recall, *kept[at:]]


def _tells_something(episode: Episode) -> bool:
    """Whether the user or a tool stated anything: a turn of questions alone ("What is my diet?")
    holds no memory, and recalled into later prompts it only crowds them with other questions."""
    from sleep_agent.sleep.critic import statements_of

    return any(statements_of(p.content) for p in episode.parts_from("user", "tool")) or bool(
        episode.parts_from("tool")
    )


def _model_token_counter(config: SleepConfig) -> TokenCounter:
    # The model's own tokenizer makes context_fraction mean what it says; if the model cannot be
    # prepared here (an attached server with a remote model, say), an estimate is better than failing.
    from sleep_agent.models import chat_token_counter, prepare_model

    try:
        return chat_token_counter(prepare_model(config.model, config.cache_dir))
    except Exception as e:
        log.warning("counting tokens approximately (chars/4): the model's tokenizer is unavailable: %s", e)
        return count_tokens_approximately


def run_values(config: RunnableConfig | None) -> dict[str, Any]:
    """What a namespace template is filled from: ``configurable`` overlaid with the run's context."""
    configurable = dict((config or {}).get("configurable") or {})
    values = {k: v for k, v in configurable.items() if not k.startswith("__")}
    runtime = configurable.get(CONFIG_KEY_RUNTIME)
    context = getattr(runtime, "context", None)
    if isinstance(context, Mapping):
        values.update(context)
    elif context is not None:  # a dataclass or pydantic context schema
        values.update({k: v for k, v in vars(context).items() if not k.startswith("_")})
    return values


def _thread_id(config: RunnableConfig | None) -> str:
    return str(((config or {}).get("configurable") or {}).get("thread_id", "default"))


def _last_human_text(messages: Sequence[BaseMessage]) -> str:
    for m in reversed(messages):
        if is_user_message(m):
            return m.text
    return ""
