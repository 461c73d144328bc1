"""Critic: keep only what is worth learning and safe to learn, and say why for every episode.

Rules, in order: a statement is trained only if the user or a tool said it (never the assistant
alone); tool output that carries instructions is untrusted and never becomes a fact (memory
poisoning); questions teach nothing; what is already consolidated is not learned twice; and,
when a check is given, what the model already answers right is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sleep_agent.episodes import Episode

# Phrases that address the model rather than state a fact. Tool output is data, so an
# instruction inside it is an injection attempt, whatever it asks for.
INSTRUCTION_PATTERNS = [
    r"\bignore (all |any |the )?(previous|prior|above|earlier) (instructions|messages|rules)",
    r"\bdisregard (all |any |the )?(previous|prior|above|earlier|your)",
    r"\b(you|assistant) (must|should|will) (now |always |never )?(say|answer|reply|respond|tell|claim|remember)",
    r"\bfrom now on\b",
    r"\b(new|updated|system) (instructions?|prompt)\b",
    r"\bdo not tell the user\b",
    r"\bremember that\b",
]
_INSTRUCTION = re.compile("|".join(INSTRUCTION_PATTERNS), re.IGNORECASE)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
# Requests to the agent ("Look it up.", "Please tell me...") are not facts about the world.
_REQUEST = re.compile(
    r"^(please|look|tell|find|search|show|give|help|check|can|could|would|let's|let us|thanks|thank you|ok|okay|hi|hello)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Statement:
    """A sentence worth learning, with where it came from."""

    text: str
    source: str  # "user" or "tool"
    episode_id: str


@dataclass
class Verdict:
    episode_id: str
    keep: bool
    reason: str
    statements: list[Statement] = field(default_factory=list)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s'-]", " ", text.lower())).strip()


def has_instruction(text: str) -> bool:
    return bool(_INSTRUCTION.search(text))


def statements_of(text: str) -> list[str]:
    """Declarative sentences of a text (questions dropped)."""
    found = []
    for match in _SENTENCE.finditer(text):
        sentence = match.group(0).strip()
        if len(sentence) > 3 and not sentence.endswith("?") and not _REQUEST.match(sentence):
            found.append(sentence if sentence[-1] in ".!" else sentence + ".")
    return found


# Outcomes that mark a tool-using episode as worth imitating (or any positive reward).
SUCCESS_OUTCOMES = frozenset({"success", "succeeded", "solved", "win", "won", "done", "passed"})


def is_successful_trajectory(episode: Episode) -> bool:
    """An episode in which the assistant called tools and that ended well."""
    called = any(p.tool_calls for p in episode.parts_from("assistant"))
    ended_well = (episode.outcome or "").strip().lower() in SUCCESS_OUTCOMES or (episode.reward or 0) > 0
    return called and ended_well


def critique(
    episodes: Sequence[Episode],
    *,
    known: Iterable[str] = (),
    already_knows: Callable[[str], bool] | None = None,
) -> list[Verdict]:
    """One verdict per episode; ``known`` holds statements already consolidated."""
    seen = {normalise(s) for s in known}
    verdicts = []
    for ep in episodes:
        verdicts.append(_judge(ep, seen, already_knows))
        seen.update(normalise(s.text) for s in verdicts[-1].statements)
    return verdicts


def _judge(ep: Episode, seen: set[str], already_knows: Callable[[str], bool] | None) -> Verdict:
    grounded = ep.parts_from("user", "tool")
    if not grounded:
        return Verdict(ep.id, False, "assistant-only: nothing the user or a tool said")
    candidates: list[Statement] = []
    poisoned = False
    for part in grounded:
        if part.source == "tool" and has_instruction(part.content):
            poisoned = True
            continue
        candidates += [Statement(s, part.source, ep.id) for s in statements_of(part.content)]
    imitate = is_successful_trajectory(ep)
    if not candidates and imitate:
        return Verdict(ep.id, True, "successful tool trajectory (behaviour cloning)")
    if not candidates:
        if poisoned:
            return Verdict(ep.id, False, "untrusted: the tool output carries instructions, not facts")
        return Verdict(ep.id, False, "no statement to learn (questions or chit-chat only)")
    fresh = [s for s in candidates if normalise(s.text) not in seen]
    if not fresh:
        return Verdict(ep.id, False, "already consolidated")
    if already_knows is not None:
        fresh = [s for s in fresh if not already_knows(s.text)]
        if not fresh:
            return Verdict(ep.id, False, "already known: the current model answers it right")
    reason = "grounded statements" + (" (instructions in tool output dropped)" if poisoned else "")
    if imitate:
        reason += " and a successful tool trajectory (behaviour cloning)"
    return Verdict(ep.id, True, reason, fresh)
