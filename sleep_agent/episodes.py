"""What the agent lived through, one turn at a time, with who said each part.

An episode keeps the source of every part (user, assistant, tool, system) so the critic can later
train only on grounded content: what the user or a tool said, never what the model made up.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.messages.utils import count_tokens_approximately
from pydantic import BaseModel, ConfigDict, Field

from sleep_agent.errors import InvalidEpisodeError

Source = Literal["user", "assistant", "tool", "system"]
Status = Literal["pending", "consolidated", "rejected", "deleted"]
STATUSES: tuple[Status, ...] = ("pending", "consolidated", "rejected", "deleted")

TokenCounter = Callable[[Sequence[BaseMessage]], int]

# Messages that sleep-agent itself put into the state (recalled memories) carry this marker, so
# they are never recorded back as something the agent lived through.
RECALL_MARKER = "sleep_agent_recall"

_ROLE_SOURCE: dict[str, Source] = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
    "system": "system",
    "developer": "system",
}


class EpisodePart(BaseModel):
    """One message of a turn, reduced to its text and who said it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Source
    content: str
    name: str | None = Field(None, description="tool name, for tool results")
    tool_calls: list[dict[str, Any]] = Field(default_factory=list, description="calls the assistant made")
    message_id: str | None = Field(None, description="id of the graph message it came from")

    def render(self) -> str:
        who = f"tool[{self.name}]" if self.source == "tool" and self.name else self.source
        calls = "".join(f"\n{who} calls {c}" for c in self.calls_text())
        return f"{who}: {self.content}{calls}" if self.content else calls.lstrip("\n")

    def calls_text(self) -> list[str]:
        """Each tool call as ``name({...})``, arguments in a stable order."""
        return [f"{c.get('name')}({json.dumps(c.get('args', {}), sort_keys=True)})" for c in self.tool_calls]


class Episode(BaseModel):
    """A recorded turn: its parts, where it belongs, and what became of it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    namespace: str
    thread_id: str
    parts: list[EpisodePart]
    created_at: float
    updated_at: float
    token_count: int
    outcome: str | None = None
    reward: float | None = None
    status: Status = "pending"
    adapter_version: int | None = Field(None, description="the adapter version it was consolidated into")
    reason: str | None = Field(None, description="why it was rejected or deleted")

    @property
    def text(self) -> str:
        """The transcript that is embedded and shown in recall."""
        return "\n".join(p.render() for p in self.parts)

    @property
    def message_ids(self) -> list[str]:
        return [p.message_id for p in self.parts if p.message_id]

    def parts_from(self, *sources: Source) -> list[EpisodePart]:
        return [p for p in self.parts if p.source in sources]

    def to_messages(self) -> list[BaseMessage]:
        """The turn as LangChain messages again (tool call ids are not kept)."""
        out: list[BaseMessage] = []
        for p in self.parts:
            if p.source == "user":
                out.append(HumanMessage(p.content))
            elif p.source == "assistant":
                out.append(AIMessage(p.content))
            elif p.source == "tool":
                out.append(ToolMessage(p.content, name=p.name, tool_call_id=p.name or "tool"))
            else:
                out.append(SystemMessage(p.content))
        return out


def is_recall_message(message: BaseMessage) -> bool:
    return message.name == RECALL_MARKER


def is_user_message(message: BaseMessage) -> bool:
    """A message the user wrote: a human message that is not recall's quotation."""
    return isinstance(message, HumanMessage) and not is_recall_message(message)


def last_turn(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The messages from the last human message to the end, without injected memories."""
    start = 0
    for i in range(len(messages) - 1, -1, -1):
        if is_user_message(messages[i]):
            start = i
            break
    return [m for m in messages[start:] if not is_recall_message(m)]


def episode_from_messages(
    messages: Sequence[Any],
    *,
    namespace: str,
    thread_id: str = "default",
    outcome: str | None = None,
    reward: float | None = None,
    token_counter: TokenCounter | None = None,
    max_tokens: int | None = None,
    now: float | None = None,
) -> Episode:
    """Build an episode from LangChain messages (or anything ``convert_to_messages`` takes).

    Raises :class:`InvalidEpisodeError` with the offending message's index when the input is
    empty, malformed, holds no text, or is longer than ``max_tokens``.
    """
    parsed = _parse_messages(messages)
    parts = [_to_part(i, m) for i, m in enumerate(parsed)]
    parts = [p for p in parts if p.content or p.tool_calls]
    if not parts:
        raise InvalidEpisodeError(
            "the messages hold no text: an episode needs at least one message with text content "
            "or a tool call (images and other non-text blocks are not recorded)"
        )
    _check_labels(thread_id, outcome, reward)
    counter = token_counter or count_tokens_approximately
    tokens = int(counter(parsed))
    if max_tokens is not None and tokens > max_tokens:
        raise InvalidEpisodeError(
            f"the episode is {tokens} tokens, more than max_episode_tokens={max_tokens}: record a "
            "shorter turn (trim large tool outputs) or raise SleepConfig.buffer.max_episode_tokens"
        )
    created = time.time() if now is None else now
    return Episode(
        id=_episode_id(namespace, thread_id, parts),
        namespace=namespace,
        thread_id=thread_id,
        parts=parts,
        created_at=created,
        updated_at=created,
        token_count=tokens,
        outcome=outcome,
        reward=float(reward) if reward is not None else None,
    )


def _check_labels(thread_id: Any, outcome: Any, reward: Any) -> None:
    if not isinstance(thread_id, str) or not thread_id.strip():
        raise InvalidEpisodeError(f"thread_id must be a non-empty string, got {thread_id!r}")
    if outcome is not None and not isinstance(outcome, str):
        raise InvalidEpisodeError(f"outcome must be a string or None, got {type(outcome).__name__}")
    # bool is an int to Python, and NaN or infinity would poison every average taken over rewards
    if reward is not None and (
        isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward)
    ):
        raise InvalidEpisodeError(f"reward must be a finite number or None, got {reward!r}")


def _parse_messages(messages: Sequence[Any]) -> list[BaseMessage]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidEpisodeError(
            f"messages must be a list of messages, got {type(messages).__name__}; "
            "wrap a single message in a list"
        )
    if not messages:
        raise InvalidEpisodeError("messages is empty: an episode needs at least one message")
    parsed: list[BaseMessage] = []
    for i, message in enumerate(messages):
        try:
            parsed.extend(convert_to_messages([message]))
        except Exception as e:  # langchain raises several types for malformed input
            raise InvalidEpisodeError(
                f"message {i} ({_preview(message)}) is not a chat message: {e}. Use a LangChain "
                "message, a (role, text) tuple or a {'role': ..., 'content': ...} dict"
            ) from e
    return parsed


def _to_part(index: int, message: BaseMessage) -> EpisodePart:
    role = message.type if message.type != "chat" else getattr(message, "role", "user")
    source = _ROLE_SOURCE.get(role)
    if source is None:
        raise InvalidEpisodeError(
            f"message {index} has role {role!r}, which is not user, assistant, tool or system"
        )
    calls = [
        {"name": c["name"], "args": c.get("args", {}), "id": c.get("id")}
        for c in getattr(message, "tool_calls", None) or []
    ]
    return EpisodePart(
        source=source,
        content=_text_of(index, message.content),
        name=message.name if source == "tool" else None,
        tool_calls=calls,
        message_id=message.id,
    )


def _text_of(index: int, content: Any) -> str:
    if isinstance(content, str):
        return content.replace("\x00", "").strip()
    if isinstance(content, list):
        texts = []
        for block in content:
            if isinstance(block, str):
                texts.append(block)
            elif isinstance(block, dict) and block.get("type") == "text":
                texts.append(str(block.get("text", "")))
        return "\n".join(texts).replace("\x00", "").strip()
    raise InvalidEpisodeError(f"message {index} has content of type {type(content).__name__}; expected text")


def _episode_id(namespace: str, thread_id: str, parts: list[EpisodePart]) -> str:
    # Recording the same graph messages twice gives the same id, so a retried node does not
    # duplicate an episode; turns without message ids get a fresh id.
    ids = [p.message_id for p in parts]
    if all(ids):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{thread_id}/{'/'.join(ids)}"))  # type: ignore[arg-type]
    return str(uuid.uuid4())


def _preview(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
