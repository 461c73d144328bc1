"""Validated configuration: one class per subsystem, every field with a default and a help line."""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from sleep_agent.errors import NamespaceError
from sleep_agent.sleep.settings import CycleConfig

NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


def is_namespace(value: object) -> bool:
    """Whether ``value`` may name a namespace (it becomes part of paths and adapter names)."""
    return isinstance(value, str) and bool(NAMESPACE_PATTERN.match(value)) and ".." not in value


def check_namespace(value: str) -> str:
    """``value`` if it may name a namespace, else a ``ValueError`` that says what may."""
    if not is_namespace(value):
        raise ValueError(
            f"namespace={value!r} is not allowed: use 1-63 letters, digits, '_', '.' or '-', "
            "starting and ending with a letter or digit, no '..' (it becomes part of directory, collection "
            "and adapter names)"
        )
    return value


def template_fields(template: str) -> list[str]:
    """The ``{names}`` a namespace template is filled from ([] for a plain namespace)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def resolve_namespace(template: str, values: Mapping[str, Any]) -> str:
    """Fill a namespace template such as ``"user-{user_id}"`` from one run's values.

    Raises :class:`NamespaceError` naming the missing key and where to put it, or the filled value
    that is not a namespace.
    """
    fields = template_fields(template)
    missing = [f for f in fields if values.get(f) in (None, "")]
    if missing:
        raise NamespaceError(
            f"the memory's namespace {template!r} needs {', '.join(repr(m) for m in missing)} for this run: "
            f"pass config={{'configurable': {{{missing[0]!r}: ...}}}} (or context={{{missing[0]!r}: ...}}) "
            "to invoke/stream"
        )
    filled = template.format_map({f: str(values[f]) for f in fields})
    try:
        return check_namespace(filled)
    except ValueError as e:
        raise NamespaceError(f"{e} (filled from the template {template!r})") from e


def default_cache_dir() -> Path:
    """Where prepared models are kept: $SLEEP_AGENT_CACHE, else the user cache directory."""
    env = os.environ.get("SLEEP_AGENT_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sleep-agent"


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class ServingConfig(_Config):
    """How the model is served. ``backend="vllm"`` starts a server unless ``base_url`` is given."""

    backend: Literal["vllm", "local"] = Field(
        default_factory=lambda: os.environ.get("SLEEP_AGENT_SERVING", "vllm"),
        validate_default=True,
        description="'vllm' (real server) or 'local' (in-process); default $SLEEP_AGENT_SERVING, else 'vllm'",
    )
    base_url: str | None = Field(
        None, description="attach to a running vLLM server, e.g. http://127.0.0.1:8000"
    )
    api_key: SecretStr | None = Field(
        None,
        description="key of the vLLM server: the one attached to with base_url (None: it has none); a "
        "server this process starts gets this one, else a generated one written to <home>/serving/ "
        "readable by its owner only",
    )
    host: str = Field("127.0.0.1", description="interface a started server listens on")
    port: int | None = Field(
        None, ge=1, le=65535, description="port of a started server; None picks a free one"
    )
    max_model_len: int = Field(2048, ge=128, description="context window the server allocates")
    max_lora_rank: int = Field(16, ge=1, le=512, description="largest adapter rank the server accepts")
    max_loras: int = Field(2, ge=1, description="adapters active in one batch (old and new during a swap)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="'auto' is float32 on CPU and bfloat16 on GPU"
    )
    kv_cache_gb: int = Field(2, ge=1, description="KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE)")
    startup_timeout_s: float = Field(600.0, gt=0, description="how long to wait for the server to be healthy")
    request_timeout_s: float = Field(300.0, gt=0, description="timeout of one chat request")
    max_tokens: int | None = Field(
        512,
        ge=1,
        description="longest reply of the vLLM backend's chat models unless a call asks otherwise (None: up to "
        "the window; a small model that rambles then fills the context, and context_fraction puts it to sleep)",
    )
    drain_timeout_s: float = Field(120.0, gt=0, description="how long an old adapter waits for its requests")
    tool_call_parser: str | None = Field(
        "auto",
        description="vLLM's --tool-call-parser, so that bind_tools works: 'auto' picks one from the model's "
        "chat template and family (hermes, mistral, llama3_json, granite...), a name sets it, None starts "
        "the server without tool calling",
    )
    extra_args: list[str] = Field(default_factory=list, description="more vLLM server arguments, verbatim")

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url={value!r} must start with http:// or https://, e.g. http://127.0.0.1:8000"
            )
        return value.rstrip("/").removesuffix("/v1") if value else value


class BufferConfig(_Config):
    """Where episodes are kept: embedded Chroma under ``home`` unless ``url`` names a server."""

    url: str | None = Field(
        None,
        description="a `chroma run` server, e.g. http://127.0.0.1:8001 (how several processes share one buffer)",
    )
    max_episode_tokens: int = Field(
        8192, ge=16, description="an episode longer than this is refused with an error, not truncated"
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                f"buffer url={value!r} must start with http:// or https://, e.g. http://127.0.0.1:8001"
            )
        return value.rstrip("/") if value else value


class RecallConfig(_Config):
    """What ``recall_node`` puts in the prompt."""

    k: int = Field(4, ge=0, description="at most this many memories per turn (0 turns recall off)")
    max_tokens: int = Field(512, ge=16, description="token budget of the injected memory message")
    include_consolidated: bool = Field(
        True,
        description="also inject memories already in the weights: on the default model the weights and "
        "recall together answer more than either (docs/benchmarks.md, P5); off, the prompt holds only "
        "what has not been slept on",
    )
    max_distance: float | None = Field(
        None, gt=0, description="drop memories farther than this cosine distance (None keeps the k nearest)"
    )
    sources: tuple[Literal["user", "assistant", "tool", "system"], ...] = Field(
        ("user", "tool"),
        min_length=1,
        description="whose words are shown: by default only what the user or a tool said, not the "
        "model's own (possibly invented) answers",
    )


class SleepPolicy(_Config):
    """When to sleep. A threshold set to None never fires; the first one reached gives the reason."""

    context_fraction: float | None = Field(
        0.8, gt=0, le=1, description="sleep when the conversation fills this fraction of the model's window"
    )
    pending_episodes: int | None = Field(32, ge=1, description="sleep when this many episodes are pending")
    pending_tokens: int | None = Field(
        4096, ge=1, description="sleep when pending episodes hold this many tokens"
    )
    idle_seconds: float | None = Field(
        None, gt=0, description="sleep when nothing was recorded for this long before the current turn"
    )
    background: bool = Field(
        False, description="run the cycle in a thread while the agent keeps serving the previous adapter"
    )
    keep_last_turns: int | None = Field(
        2,
        ge=0,
        description="after a sleep, remove consolidated turns from the messages but these last ones "
        "(None keeps every message)",
    )


class RetentionConfig(_Config):
    """How much of a namespace's history stays on disk after each sleep."""

    keep_versions: int | None = Field(
        5,
        ge=1,
        description="servable adapter versions kept, newest first; the current one and pinned ones "
        "(`sleep-agent adapters pin`) always stay. Older ones lose their weights (their manifests stay as "
        "a record, and they can no longer be rolled back to). None keeps every version",
    )
    keep_reports: int | None = Field(
        100, ge=1, description="sleep reports kept, newest first; None keeps all"
    )


class SleepConfig(_Config):
    """What a :class:`SleepMemory` needs: who it remembers for, which model, where it keeps things."""

    namespace: str = Field(
        "default",
        description="memories and adapters are kept per namespace; a template such as 'user-{user_id}' "
        "is filled per run from config['configurable'] or the run's context, so one memory and one "
        "graph serve many users",
    )
    model: str = Field(
        default_factory=lambda: os.environ.get("SLEEP_AGENT_MODEL", "default"),
        validate_default=True,
        description="'default' (SmolLM2-135M-Instruct), a HF model id or a local path; default "
        "$SLEEP_AGENT_MODEL, else 'default'",
    )
    serving: ServingConfig = Field(default_factory=ServingConfig, description="how the model is served")
    home: Path = Field(Path(".sleep_agent"), description="Chroma db, adapters, reports and logs live here")
    cache_dir: Path = Field(default_factory=default_cache_dir, description="where prepared models are kept")
    buffer: BufferConfig = Field(default_factory=BufferConfig, description="where episodes are kept")
    recall: RecallConfig = Field(default_factory=RecallConfig, description="what recall_node injects")
    policy: SleepPolicy = Field(default_factory=SleepPolicy, description="when to sleep")
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="how many adapter versions and reports are kept"
    )
    cycle: CycleConfig = Field(
        default_factory=CycleConfig,
        description="the standard cycle: training, gate, dreams (a cycle= given to SleepMemory has its own)",
    )
    dreaming: bool = Field(
        False,
        description="practice tasks during sleep (one flag, for ablations); off by default until it "
        "measures better than sleeping without it (docs/benchmarks.md)",
    )

    @property
    def context_window(self) -> int:
        """Tokens the served model sees at once (the server's max_model_len)."""
        return self.serving.max_model_len

    @property
    def per_run(self) -> bool:
        """Whether the namespace is a template filled per run (one memory serving many users)."""
        return bool(template_fields(self.namespace))

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        try:
            fields = template_fields(value)
        except ValueError as e:
            raise ValueError(f"namespace={value!r} is not a valid template: {e}") from e
        if not fields:
            return check_namespace(value)
        bad = [f for f in fields if not f.isidentifier()]
        if bad:
            raise ValueError(
                f"namespace={value!r}: template fields must be plain names such as {{user_id}}, not {bad}"
            )
        check_namespace(value.format_map(dict.fromkeys(fields, "x")))  # the literal parts are valid
        return value

    @field_validator("serving", mode="before")
    @classmethod
    def _serving_shorthand(cls, value: object) -> object:
        # serving="vllm" / "local" is the documented shorthand for ServingConfig(backend=...)
        if isinstance(value, str):
            if value not in ("vllm", "local"):
                raise ValueError(f"serving={value!r} is not a backend: use 'vllm' or 'local'")
            return ServingConfig(backend=value)
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model='' is empty: use 'default', a Hugging Face model id or a local path")
        return value
