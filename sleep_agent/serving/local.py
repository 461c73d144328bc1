"""In-process serving with transformers + peft: the same protocol as vLLM, for small setups and tests.

One model object holds every loaded adapter (transformers' integrated peft support); a lock
serialises requests because switching the active adapter mutates the model.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from sleep_agent.errors import AdapterLoadError, ModelNotFoundError
from sleep_agent.extras import require_training
from sleep_agent.serving.base import (
    GenerationParams,
    Message,
    Namespace,
    ServingBackend,
    namespace_now,
    template_ready,
)

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


_TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages as the dicts chat templates take, tool calls and results included."""
    out: list[Message] = []
    for m in messages:
        message: dict[str, Any] = {"role": _ROLES.get(m.type, m.type), "content": m.text}
        if isinstance(m, AIMessage) and m.tool_calls:
            message["tool_calls"] = [
                {"type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
                for c in m.tool_calls
            ]
        if isinstance(m, ToolMessage) and m.name:
            message["name"] = m.name
        out.append(message)
    return out


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """The text without its ``<tool_call>{...}</tool_call>`` blocks (the format of Qwen, Hermes and
    SmolLM3 chat templates, and vLLM's ``hermes`` parser), and the calls in LangChain's form."""
    calls = []
    for raw in _TOOL_CALL.findall(text):
        try:
            call = json.loads(raw)
        except ValueError:
            continue  # not a call after all: it stays in the text
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            args = call.get("arguments", call.get("parameters", {}))
            calls.append(
                {
                    "name": call["name"],
                    "args": args if isinstance(args, dict) else {},
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                }
            )
    return (_TOOL_CALL.sub("", text).strip() if calls else text), calls


class _Halt:
    """Ends generation when the reader says so. Stop strings are found on the text, not the tokens
    (transformers' own stop-string criterion fails on some tokenizers' vocabularies)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


def _until_stop(pieces: Iterator[str], stop: Sequence[str]) -> Iterator[str]:
    """``pieces`` joined, stripped and cut at the first stop string, in pieces again. The last
    ``len(longest stop) - 1`` characters are held back until it is known no stop starts in them.
    Written here because transformers' streamer knows nothing of stop strings."""
    hold = max((len(s) for s in stop), default=1) - 1
    text, sent = "", 0
    for piece in pieces:
        text += piece
        if not text[sent:].strip() and sent == 0:
            continue  # no leading whitespace
        cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
            break
        start = sent or len(text) - len(text.lstrip())
        end = max(start, min(len(text) - hold, len(text.rstrip())))  # trailing spaces wait too
        if end > start:
            yield text[start:end]
            sent = end
    else:
        cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
        text = text if cut < 0 else text[:cut]
    start = sent or len(text) - len(text.lstrip())
    rest = text[start:].rstrip()
    if rest:
        yield rest


class LocalChatModel(BaseChatModel):
    """A LangChain chat model over a :class:`LocalServer`, following its active adapter."""

    max_tokens: int = 128
    temperature: float = 0.0
    _backend: LocalServer = PrivateAttr()
    _namespace: Namespace = PrivateAttr(default=None)

    def __init__(self, *, backend: LocalServer, namespace: Namespace = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._backend = backend
        self._namespace = namespace

    @property
    def _llm_type(self) -> str:
        return "sleep-agent-local"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable:
        """Offer ``tools`` to the model through its chat template; calls it writes come back as
        ``tool_calls``. The model chooses: a forced ``tool_choice`` needs guided decoding (vLLM)."""
        if tool_choice not in (None, "auto", "none"):
            raise NotImplementedError(
                f"tool_choice={tool_choice!r} needs guided decoding: serve the model with vLLM "
                "(serving='vllm'), or leave tool_choice unset"
            )
        schemas = [] if tool_choice == "none" else [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=schemas, **kwargs)

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> GenerationParams:
        return GenerationParams(
            max_tokens=kwargs.get("max_tokens", self.max_tokens),
            temperature=kwargs.get("temperature", self.temperature),
            stop=tuple(stop or ()),
            tools=tuple(kwargs.get("tools") or ()),
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._backend.router.request(namespace=namespace_now(self._namespace)) as target:
            text = self._backend._chat(
                to_chat_messages(template_ready(messages)),
                target,
                self._params(stop, kwargs),
            )
        content, calls = parse_tool_calls(text) if kwargs.get("tools") else (text, [])
        message = AIMessage(content=content, tool_calls=calls, response_metadata={"model_name": target})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Text as the model writes it. With tools bound, one chunk once the answer is whole: a
        call's ``<tool_call>`` text is only known to be a call when it is complete."""
        if kwargs.get("tools"):
            (generation,) = self._generate(messages, stop, run_manager, **kwargs).generations
            message = generation.message
            chunks = [
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(message.tool_calls)
            ]
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content=message.content,
                    tool_call_chunks=chunks,
                    response_metadata=message.response_metadata,
                )
            )
            return
        with self._backend.router.request(namespace=namespace_now(self._namespace)) as target:
            pieces = self._backend._chat_pieces(
                to_chat_messages(template_ready(messages)),
                target,
                self._params(stop, kwargs),
            )
            for piece in pieces:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager is not None:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="", response_metadata={"model_name": target}, chunk_position="last"
            )
        )


class LocalServer(ServingBackend):
    """transformers + peft in this process."""

    concurrent_requests = False

    def __init__(
        self,
        model_path: str | Path,
        *,
        served_name: str = "base",
        device: str | None = None,
        drain_timeout_s: float = 120.0,
    ) -> None:
        super().__init__(served_name, drain_timeout_s=drain_timeout_s)
        self.model_path = Path(model_path)
        self.device = device
        self.model: Any = None
        self.tokenizer: Any = None
        self._lock = threading.Lock()

    def start(self) -> LocalServer:
        if self.model is not None:
            return self
        require_training("serving='local'")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(f"cannot load the model at {self.model_path}: {exc}") from exc
        self.model.to(self.device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        return self

    def stop(self) -> None:
        self.model = self.tokenizer = None
        self._loaded.clear()
        self.router.set_active(None)

    def _require_started(self) -> Any:
        if self.model is None:
            raise AdapterLoadError("the local backend is not started; call start() first")
        return self.model

    def _load(self, name: str, path: Path) -> None:
        model = self._require_started()
        with self._lock:
            try:
                model.load_adapter(str(path), adapter_name=name)
            except Exception as exc:
                raise AdapterLoadError(f"cannot load adapter {name!r} from {path}: {exc}") from exc

    def _unload(self, name: str) -> None:
        with self._lock:
            self._require_started().delete_adapter(name)

    def _chat(self, messages: Sequence[Message], model: str, params: GenerationParams) -> str:
        return "".join(self._chat_pieces(messages, model, params))

    def _chat_pieces(
        self, messages: Sequence[Message], model: str, params: GenerationParams
    ) -> Iterator[str]:
        """The answer in pieces as it is generated (stripped, cut at the first stop string).

        Generation runs in a thread feeding transformers' streamer; the lock is held until it ends,
        even when the reader stops early, because the adapter it runs with is the model's state.
        """
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        net = self._require_started()
        inputs = self.tokenizer.apply_chat_template(
            list(messages),
            tools=list(params.tools) or None,
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        ).to(net.device)
        sampling: dict[str, Any] = {"do_sample": False}
        if params.temperature > 0:
            sampling = {"do_sample": True, "temperature": params.temperature}
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        halt = threading.Event()  # set once the reader has its answer (a stop string) or leaves
        failed: list[BaseException] = []

        def generate() -> None:
            try:
                with torch.inference_mode():
                    net.generate(
                        **inputs,
                        max_new_tokens=params.max_tokens,
                        pad_token_id=self.tokenizer.pad_token_id,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Halt(halt)]),
                        **sampling,
                    )
            except BaseException as exc:  # re-raised in the reader's thread
                failed.append(exc)
                streamer.end()

        with self._lock:
            if model == self.base_name:
                if self._loaded:
                    net.disable_adapters()
            else:
                net.enable_adapters()
                net.set_adapter(model)
            worker = threading.Thread(target=generate, name="local-generate", daemon=True)
            worker.start()
            try:
                yield from _until_stop(streamer, params.stop)
            finally:
                halt.set()
                worker.join()
                if model == self.base_name and self._loaded:
                    net.enable_adapters()
        if failed:
            raise failed[0]

    def chat_model(self, *, namespace: Namespace = None, **kwargs: Any) -> LocalChatModel:
        return LocalChatModel(backend=self, namespace=namespace, **kwargs)
