"""Data sets the protocols read, with errors that say which line is wrong and how to fix it.

Memory QA (P5) takes any file in one JSONL form, so a new data set needs no code::

    {"id": "p1", "sessions": [[{"role": "user", "content": "..."}, ...], ...],
     "questions": [{"question": "...", "answers": ["...", "..."]}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sleep_agent.errors import SleepAgentError

FORMAT_HINT = (
    'each line must be one JSON object: {"id": "...", "sessions": [[{"role": "user", "content": "..."}, '
    '...], ...], "questions": [{"question": "...", "answers": ["..."]}]}'
)


class DatasetError(SleepAgentError, ValueError):
    """A data set file that cannot be read; the message names the file and line."""


class Turn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant", "system", "tool"]
    content: str


class Question(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: str = Field(min_length=1)
    answers: list[str] = Field(min_length=1)
    stale: list[str] = Field(
        default_factory=list, description="values a later session replaced: wrong if said"
    )
    kind: str | None = Field(None, description="a label to break accuracy down by (update, tool, ...)")


class MemoryQAItem(BaseModel):
    """One conversation history (sessions of turns) and the questions asked after it."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    sessions: list[list[Turn]] = Field(min_length=1)
    questions: list[Question] = Field(min_length=1)


def load_memory_qa(path: str | Path, limit: int | None = None) -> list[MemoryQAItem]:
    """Items of a memory QA file (JSONL); blank lines are skipped, every other line must be valid."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; give the path of a JSONL file ({FORMAT_HINT})")
    items: list[MemoryQAItem] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}, line {number}: not JSON ({exc.msg}); {FORMAT_HINT}") from exc
        try:
            item = MemoryQAItem.model_validate(row)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors()
            )
            raise DatasetError(f"{path}, line {number}: {problems}; {FORMAT_HINT}") from exc
        if item.id in seen:
            raise DatasetError(f"{path}, line {number}: id {item.id!r} appears twice; ids must be unique")
        if not any(t.role in ("user", "tool") and t.content.strip() for s in item.sessions for t in s):
            raise DatasetError(
                f"{path}, line {number}: item {item.id!r} has no user or tool turn with text, so there "
                "is nothing to remember"
            )
        seen.add(item.id)
        items.append(item)
    if not items:
        raise DatasetError(f"{path}: no items; {FORMAT_HINT}")
    return items[:limit] if limit else items


class Passage(BaseModel):
    title: str = ""
    context: str
    questions: list[dict[str, str]]


def load_squad(path: str | Path, limit: int | None = None) -> list[Passage]:
    """SQuAD passages in the SEAL form ``[{title, context, questions: [{question, answer}]}]``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (expected squad_dev.json of the shared data)")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        passages = [Passage.model_validate(r) for r in rows]
    except (json.JSONDecodeError, ValidationError, TypeError) as exc:
        raise DatasetError(f"{path}: not a list of {{title, context, questions}} passages: {exc}") from exc
    return passages[:limit] if limit else passages
