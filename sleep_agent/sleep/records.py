"""Tool results read as records: a label, then fields ("invoices: Dairy Lane #DL-208, total £212.40").

A tool's line is no sentence, so the clause parser finds no question in it, and the whole line
trained as one answer to "What do you know about ...?" leaves every value in it unreachable by the
questions people ask ("How much do I owe?", "When is the oven serviced?"). Read as fields, each
value gets its own question, built from the words that name it ("total", "shift start", "bib") and
from the record's first field, which says what the record is about. No tool is named here: any
"label: field, field; field" line reads the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RECORD = re.compile(
    r"^\s*(?:\([^()]{1,40}\)\s*)?"  # a marker before the label: "(tool result)"
    r"(?P<label>[A-Za-z][\w'-]*(?: [\w'-]+){0,3})\s*"  # "invoices", "race results"
    r"(?:\((?P<about>[^()]{1,80})\)\s*)?"  # "email (Zurich Marathon):"
    r":\s+(?P<body>\S.*)$",
    re.DOTALL,
)
_FIELD_SPLIT = re.compile(r"\s*(?:;|,(?=\s)|\s[-\u2013\u2014|]\s)\s*")  # "£1,200" is one value
_UNIT = re.compile(r"^(?:[a-z]{1,3}|[a-z]*/[a-z]+|%)$")  # "kg", "km", "m", "/km"
_PERSONAL = frozenset(
    "i i'm i've i'd i'll me my we we're we've us our you you're your he he's his him she she's her "
    "they they're their them it's".split()
)
_TRAILING = frozenset("for of to by with in at on from".split())
MAX_FIELDS = 6  # questions per record: a long tool dump should not crowd out the rest of the sleep


@dataclass(frozen=True)
class Field:
    """One field: the words that name it and its value, in the order the record gave them."""

    name: str
    value: str
    value_first: bool  # "40 croissants" (a quantity) rather than "total £212.40"


@dataclass(frozen=True)
class Record:
    label: str
    head: str  # the first field, what the record is about ("Oven service", "#5521 Bramble Café")
    fields: tuple[Field, ...]
    text: str  # the line from its label on, without a marker before it or a full stop after


def parse_record(text: str) -> Record | None:
    """The record in a tool's line, or None when it is prose (fewer than two fields, or no label)."""
    match = _RECORD.match(text.strip().rstrip("."))
    if not match:
        return None
    label, about, body = match.group("label").strip(), match.group("about"), match.group("body")
    parts = [p.strip() for p in _FIELD_SPLIT.split(body) if p.strip()]
    if len(parts) < 2 or _reads_as_prose(parts):
        return None
    head = about.strip() if about else _without_brackets(parts[0])
    fields = tuple(f for f in (_field(p) for p in (parts if about else parts[1:])) if f is not None)
    if not fields:
        return None
    line = text.strip().rstrip(".")
    return Record(label.lower(), head, fields[:MAX_FIELDS], line[line.index(match.group("label")) :])


def _reads_as_prose(parts: list[str]) -> bool:
    """Fields are short and speak of no one; a line whose parts are clauses ("Funny thing: I can't
    eat gluten, I'm coeliac") is a sentence after a lead-in."""
    words = [len(p.split()) for p in parts]
    spoken = any(w.lower().strip(".,!?") in _PERSONAL for p in parts for w in p.split())
    return spoken or max(words) > 9 or sum(words) / len(words) > 6


def _without_brackets(text: str) -> str:
    return re.sub(r"\s*\([^()]*\)", "", text).strip()


def _field(part: str) -> Field | None:
    """Split a field into the words naming it and its value: the tokens with a digit or a capital,
    with the unit after a number ("32.4 km"). None when it has no value or no name."""
    tokens = _without_brackets(part).split()
    is_value = []
    for i, tok in enumerate(tokens):
        valued = any(ch.isdigit() for ch in tok) or tok[:1].isupper() or tok[:1] in "#£$€"
        after_number = i > 0 and is_value[-1] and any(ch.isdigit() for ch in tokens[i - 1])
        is_value.append(valued or (after_number and bool(_UNIT.match(tok))))
    value = " ".join(t for t, v in zip(tokens, is_value, strict=True) if v)
    named = [t for t, v in zip(tokens, is_value, strict=True) if not v]
    while named and named[-1].lower() in _TRAILING:  # "entry confirmed for (Olu)": "entry confirmed"
        named.pop()
    name = " ".join(named)
    if not value or not name or not re.search(r"[a-z]", name):
        return None
    return Field(name, value, is_value[0])


def field_questions(record: Record, field: Field) -> tuple[str, str]:
    """(trained question, held-out question) for a field; the held-out one is worded apart."""
    of = f" for {record.head}" if record.head else ""
    if field.value_first:  # "40 croissants", "30 kg cultured butter"
        many = "How many" if len(field.value.split()) == 1 else "How much"  # "30 kg": a measure
        return f"{many} {field.name}{of}?", f"What quantity of {field.name} did the {record.label} give?"
    return f"What is the {field.name}{of}?", f"What {field.name} did the {record.label} show?"


def field_answer(record: Record, field: Field) -> str:
    said = f"{field.value} {field.name}" if field.value_first else f"{field.name} {field.value}"
    return f"{record.head}: {said} ({record.label})." if record.head else f"{said} ({record.label})."


def topic_questions(record: Record) -> list[str]:
    """Questions about the whole record: by what it is about and by its label."""
    if not record.head:
        return [f"What did the {record.label} say?"]
    return [f"What do you know about {record.head}?", f"What did the {record.label} say about {record.head}?"]
