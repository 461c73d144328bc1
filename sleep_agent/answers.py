"""Is this answer right? One module for the gate, the dreams and the evaluation protocols.

Three strictnesses, because the three callers ask different questions:

- :func:`says`: the gate's check, case-insensitive containment of a short keyword ("portland" in
  "Aria lives in Portland."). Cheap and lenient, and what every gate figure was measured with.
- :func:`answered`: the evaluation protocols' check, SQuAD-normalised whole-word containment of
  any gold answer ("Portlandia" does not answer "Portland").
- :func:`mentions`: the dreams' check, whole words first, then word-level fuzzy matching (plurals,
  spelling, "10" for "ten"), since a teacher's answer is free text about a span of the source.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Sequence

NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ABSTAIN = re.compile(
    r"\b(i don't know|i do not know|not sure|no information|cannot (?:answer|say|tell)|can't (?:answer|say|tell)"
    r"|i'm sorry|i am sorry|unknown)\b",
    re.I,
)


def says(answer: str, keyword: str) -> bool:
    """Does ``answer`` contain ``keyword``, ignoring case?"""
    return keyword.lower() in answer.lower()


def normalize(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answered(answer: str, golds: Sequence[str]) -> bool:
    """Does the (free-text) answer contain any of the gold answers, after normalisation?"""
    said = f" {normalize(answer)} "
    return any(normalize(g) and f" {normalize(g)} " in said for g in golds)


def abstained(answer: str) -> bool:
    """An answer that declines rather than tries (counted out of precision's denominator)."""
    return not answer.strip() or bool(_ABSTAIN.search(answer[:80]))


def words(text: str) -> list[str]:
    """Lower-case words and numbers, contractions kept whole ("don't")."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def mentions(text: str, expected: str, fuzzy: float = 0.8) -> bool:
    """Normalised containment, then word-level fuzzy match (plurals, spelling, "10" for "ten")."""
    said, wanted = words(text), words(expected)
    if not wanted:
        return False
    if f" {' '.join(wanted)} " in f" {' '.join(said)} ":
        return True
    hits = sum(any(similar(w, x, fuzzy) for x in said) for w in wanted)
    return hits / len(wanted) >= max(fuzzy, 1.0 if len(wanted) < 3 else fuzzy)


def similar(a: str, b: str, fuzzy: float) -> bool:
    """The same word, the same number, or (longer than three letters) spelled nearly alike."""
    if a == b or _number(a) is not None and _number(a) == _number(b):
        return True
    return len(a) > 3 and difflib.SequenceMatcher(None, a, b).ratio() >= fuzzy


def _number(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    return NUMBER_WORDS.index(word) if word in NUMBER_WORDS else None
