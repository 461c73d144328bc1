"""The serving protocol: a couple of abstract methods, the swap logic shared by every backend."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sleep_agent.errors import AdapterLoadError
from sleep_agent.serving.router import AdapterRouter

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

log = logging.getLogger(__name__)

Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": "..."}


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 128
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    tools: tuple[dict[str, Any], ...] = ()  # OpenAI-format tool schemas, rendered by the chat template


@dataclass(frozen=True)
class SwapTiming:
    """How long each part of a swap took, in seconds."""

    load_s: float
    drain_s: float
    unload_s: float


Namespace = str | Callable[[], str | None] | None
"""A chat model's namespace: fixed, or looked up per call (a memory serving many users)."""


def namespace_now(namespace: Namespace) -> str | None:
    """The namespace a call goes to now."""
    return namespace() if callable(namespace) else namespace


def one_system_message(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """``messages`` with every system message merged into one at the front.

    The agent's prompt and the recalled memories are two system messages; the chat templates of
    Gemma, Mistral and others take at most one, and only first.
    """
    from langchain_core.messages import SystemMessage

    system = [m for m in messages if isinstance(m, SystemMessage)]
    if len(system) <= 1 and (not system or messages[0] is system[0]):
        return list(messages)
    merged = SystemMessage("\n\n".join(m.text for m in system if m.text))
    return [merged, *(m for m in messages if not isinstance(m, SystemMessage))]


def template_ready(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """What every served chat model sends: recall merged into its question, one system message
    first; strict chat templates (Gemma, Mistral) take nothing else."""
    from sleep_agent.recalled import recall_in_question

    return one_system_message(recall_in_question(messages))


def adapter_name(namespace: str, version: int) -> str:
    """The served name of one adapter version: ``<namespace>@v<N>``."""
    if version < 1:
        raise ValueError(f"adapter version must be >= 1, got {version}")
    return f"{namespace}@v{version}"


def check_adapter_dir(path: str | Path) -> Path:
    """Fail early, with the fix, when ``path`` is not a peft adapter directory."""
    path = Path(path)
    if not path.is_dir():
        raise AdapterLoadError(
            f"adapter directory {str(path)!r} does not exist; pass the folder that "
            "save_pretrained() wrote (it holds adapter_config.json)"
        )
    if not (path / "adapter_config.json").is_file():
        raise AdapterLoadError(
            f"{str(path)!r} is not a peft adapter: adapter_config.json is missing "
            "(save the adapter with PeftModel.save_pretrained)"
        )
    if not any((path / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise AdapterLoadError(f"{str(path)!r} has no adapter weights (adapter_model.safetensors)")
    return path


class ServingBackend(ABC):
    """A model behind a chat interface, with LoRA adapters loadable and unloadable by name.

    Implementations provide ``start``/``stop``, ``_load``/``_unload`` and ``_chat``; switching the
    active adapter, draining and unloading old names is shared and lives here.
    """

    #: True when adapters can be loaded while requests are being answered.
    supports_hot_reload: bool = True
    #: True when requests run concurrently (rather than one at a time behind a lock).
    concurrent_requests: bool = True

    def __init__(self, base_name: str, drain_timeout_s: float = 120.0) -> None:
        self.router = AdapterRouter(base_name)
        self.drain_timeout_s = drain_timeout_s
        self._loaded: dict[str, Path] = {}

    # -- the abstract surface -------------------------------------------------------------
    @abstractmethod
    def start(self) -> ServingBackend:
        """Make the backend ready to answer; return self."""

    @abstractmethod
    def stop(self) -> None:
        """Release the model and any process; safe to call twice."""

    @abstractmethod
    def _load(self, name: str, path: Path) -> None: ...

    @abstractmethod
    def _unload(self, name: str) -> None: ...

    @abstractmethod
    def _chat(self, messages: Sequence[Message], model: str, params: GenerationParams) -> str: ...

    @abstractmethod
    def chat_model(self, *, namespace: Namespace = None, **kwargs: Any) -> BaseChatModel:
        """A LangChain chat model that always answers with ``namespace``'s active adapter.

        ``namespace=None`` follows whichever adapter was activated last (a server with one user);
        a callable is asked on every call (a memory serving many users).
        """

    # -- shared behaviour ------------------------------------------------------------------
    @property
    def base_name(self) -> str:
        return self.router.base_name

    @property
    def active_adapter(self) -> str | None:
        return self.router.active

    def active_for(self, namespace: str) -> str | None:
        """The adapter ``namespace``'s requests go to, or None when the base model answers them."""
        return self.router.active_for(namespace)

    @property
    def loaded_adapters(self) -> dict[str, Path]:
        return dict(self._loaded)

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Load an adapter under a new served name (names are never reused for other weights)."""
        if "@" not in name:
            raise ValueError(
                f"adapter name {name!r} must be versioned, '<namespace>@v<N>' (see adapter_name())"
            )
        if name in self._loaded:
            raise AdapterLoadError(
                f"adapter {name!r} is already loaded from {self._loaded[name]}; "
                "publish new weights under a new version name instead of reloading"
            )
        path = self._resolve_adapter_path(path)
        self._load(name, path)
        self._loaded[name] = path

    def unload_adapter(self, name: str, *, wait: bool = True) -> float:
        """Unload ``name`` once its in-flight requests finish; return seconds spent waiting."""
        if name not in self._loaded:
            raise AdapterLoadError(
                f"adapter {name!r} is not loaded; loaded: {sorted(self._loaded) or 'none'}"
            )
        if name in self.router.active_names():
            raise AdapterLoadError(
                f"adapter {name!r} is active; activate another version before unloading it"
            )
        started = time.perf_counter()
        if wait and not self.router.wait_idle(name, self.drain_timeout_s):
            raise AdapterLoadError(
                f"adapter {name!r} still has {self.router.inflight(name)} requests after "
                f"{self.drain_timeout_s:.0f} s; raise serving.drain_timeout_s or retry later"
            )
        drained = time.perf_counter() - started
        self._unload(name)
        del self._loaded[name]
        return drained

    def activate(
        self,
        name: str | None,
        path: str | Path | None = None,
        *,
        retire_previous: bool = True,
        namespace: str | None = None,
    ) -> SwapTiming:
        """Make ``name`` the adapter new requests of its namespace use (loading it from ``path`` if needed).

        The namespace's previous adapter keeps answering the requests already sent to it and is
        unloaded after they finish; other namespaces' adapters are untouched. ``name=None``
        switches ``namespace`` (or, without one, every namespace) back to the base model.
        """
        t0 = time.perf_counter()
        if name is not None and name not in self._loaded:
            if path is None:
                raise AdapterLoadError(f"adapter {name!r} is not loaded; pass its directory as path=")
            self.load_adapter(name, path)
        t1 = time.perf_counter()
        previous = self.router.set_active(name, namespace)
        drain_s = unload_s = 0.0
        if retire_previous and previous is not None and previous != name and previous in self._loaded:
            drain_s = self.unload_adapter(previous)
            unload_s = time.perf_counter() - t1 - drain_s
        log.info("active adapter: %s (was %s)", name or self.base_name, previous or self.base_name)
        return SwapTiming(load_s=t1 - t0, drain_s=drain_s, unload_s=unload_s)

    def chat(
        self,
        messages: Sequence[Message] | str,
        *,
        adapter: str | None = None,
        namespace: str | None = None,
        max_tokens: int = 128,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
    ) -> str:
        """Answer a conversation (or one user message) with ``adapter`` or ``namespace``'s active one."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        params = GenerationParams(max_tokens=max_tokens, temperature=temperature, stop=tuple(stop))
        with self.router.request(adapter, namespace) as target:
            return self._chat(messages, target, params)

    def resync(self) -> None:
        """Forget adapters the server no longer holds (it restarted); the next activate loads them again.

        A backend in this process cannot lose its adapters behind our back: nothing to do.
        """
        return None

    def _resolve_adapter_path(self, path: str | Path) -> Path:
        return check_adapter_dir(path).resolve()

    def __enter__(self) -> ServingBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def activate_with_retry(
    backend: ServingBackend,
    name: str,
    path: str | Path,
    *,
    attempts: int = 5,
    backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
) -> SwapTiming:
    """``backend.activate`` again and again, waiting longer each time, while the server is away.

    A server that is restarting refuses loads for a minute or so; a reload must outlast that rather
    than fail the sleep that already published. Re-syncs first, so a restarted server gets the
    adapter loaded again instead of a name it forgot.
    """
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        try:
            backend.resync()
            return backend.activate(name, path)
        except Exception as exc:  # connection refused, HTTP 5xx, timeouts: all look alike here
            if attempt == attempts:
                raise AdapterLoadError(
                    f"could not serve {name!r} after {attempts} attempts: {exc}; the previous version keeps "
                    "answering; memory.reload() tries again"
                ) from exc
            log.warning(
                "serving %s failed (attempt %d of %d): %s; retrying in %.1f s",
                name,
                attempt,
                attempts,
                exc,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, max_backoff_s)
    raise AssertionError("unreachable")  # the loop returns or raises
