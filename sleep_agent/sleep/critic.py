"""Critic: keep only what is worth learning and safe to learn, and say why for every episode.

Rules, in order: a statement is trained only if the user or a tool said it (never the assistant
alone); tool output that carries instructions is untrusted and never becomes a fact (memory
poisoning); questions teach nothing; what is already consolidated is not learned twice; and,
when a check is given, what the model already answers right is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from sleep_agent.episodes import Episode

# Phrases that address the model rather than state a fact. Tool output and quoted text are data,
# so an instruction inside them is an injection attempt, whatever it asks for. Regular expressions
# rather than a classifier: they run on every sleep in microseconds, never call the model, and
# their misses are measured (``sleep-agent eval p7``, docs/reliability.md).
_READER = r"(?:ai|ais|assistants?|models?|language models?|llms?|chatbots?|bots?|agents?)"
INSTRUCTION_PATTERNS = [
    r"\bignore (?:all |any |the )?(?:previous|prior|above|earlier) (?:instructions|messages|rules)",
    r"\bignore (?:the user|your (?:instructions|guidelines|rules))",
    r"\bdisregard (?:all |any |the |your )?(?:previous|prior|above|earlier|your|guidelines|rules|instructions)",
    r"\boverride\b.{0,30}\b(?:rules|instructions|guidelines|prompt)",
    r"\bforget (?:everything|all|what) (?:you|you've|you have)\b",
    rf"\b(?:you|{_READER})(?: systems?)?,? (?:must|should|shall|will|are to|need to) (?:now |always |never |from now on )?"
    r"(?:say|answer|reply|respond|tell|claim|remember|recommend|share|reveal|call|store|mention|update)",
    rf"\b(?:note|message|instructions?|directive) (?:to|for) (?:the |any |all )?{_READER}\b",
    rf"\b{_READER}(?: systems?)? (?:reading|processing|seeing|parsing) this\b",
    rf"\b(?:attention|dear|hey|hello),? (?:the |all )?{_READER}\b",
    rf"\b{_READER} (?:instructions?|directives?)\b",
    r"\b(?:from now on|going forward|henceforth|from this point on)\b",
    r"\b(?:new|updated|system) (?:instructions?|prompt)\b",
    r"\b(?:do not|don't) (?:tell|inform|let) the user\b",
    r"\bremember\b",
    r"\b(?:memori[sz]e|store|save) (?:this|that|the following)\b",
    r"\b(?:store|save|retain|record|keep|persist)\b.{0,30}\b(?:permanently|for future|your (?:records|memory|knowledge))",
    r"\b(?:update your|to (?:your )?(?:long-term )?) memory\b",
    r"\b(?:your|the assistant's|assistants'?|stored) (?:memory|knowledge|records|profile)\b",
    r"\bmemory[_ ](?:update|directive|instruction|note)s?\b",
    r"\b(?:is|are) to be (?:recorded|remembered|stored|noted)\b",
    r"\bfor (?:future (?:sessions|conversations|reference)|your records)\b",
    r"<!--|\[//\]: ?#",
    r"\byou are now\b",
    r"\byour (?:real|new|true) (?:task|job|instructions?|purpose)\b",
    r"\bwhen (?:the user|anyone|someone|users?) asks?\b.{0,60}\b(?:say|answer|reply|respond|tell)\b",
    r"\b(?:always|never) (?:answer|respond|reply|recommend|mention)\b",
    r"\bauthori[sz]ed you\b",
    r"(?m:^\W*(?:system|assistant)\s*:)|\[(?:system|assistant|admin)\]",
    r"<\|[a-z_]+\|>|\[/?inst\]|<</?sys>>",
]
_INSTRUCTION = re.compile("|".join(INSTRUCTION_PATTERNS), re.IGNORECASE)
# Text the user passes on rather than says: "quoted" or 'quoted', > quoted lines, what follows a
# forward header, and hidden <!-- comments -->. It is trusted only when it carries no instruction.
_QUOTED = re.compile(
    r'"[^"\n]{3,}"|'
    r"\u201c[^\u201d]{3,}\u201d|(?<!\w)'(?:[^'\n]|(?<=\w)'(?=\w)){12,}'(?!\w)|(?m:^[ \t]*>.*$)"
    r"|(?is:-{3,} ?forwarded message ?-{3,}.*)|(?s:<!--.*?-->)",
)
# A sentence ends at . ! ? before a space, a closing quote or the end: "vpn.example.com" stays whole,
# and so does a title before a name ("Dr. Okafor", "St. Mary's").
_SENTENCE = re.compile(
    r"(?:\b(?:Dr|Mrs?|Ms|Prof|St|Mt|Jr|Sr)\.\s+(?=[A-Z])|[^.!?\n]|[.!?](?=[^\s\"'\u201d)\]]))+[.!?]?"
)
# Requests to the agent ("Look it up.", "Read my latest email.") are not facts about the world, unless
# they set a standing preference ("Please always answer in metric units.").
_REQUEST = re.compile(
    r"^(please|look|tell|find|search|show|give|help|check|can|could|would|let's|let us|thanks|thank you|ok|okay"
    r"|hi|hello|read|summari[sz]e|open|pull|add|draft|send|translate|compare|book|fetch|list|remind)\b",
    re.IGNORECASE,
)

_STANDING = re.compile(r"\b(?:always|never|from now on|going forward|in future|call me)\b", re.IGNORECASE)


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


def without_planted_quotes(text: str) -> tuple[str, bool]:
    """The user's text without the quoted spans that carry instructions, and whether any did.

    What the user passes on is trusted like their own words only while it carries no instruction:
    "My boss wrote: 'The offsite is in Ghent'" is a fact to keep, a forwarded "remember that the
    VPN secret is ..." is an injection attempt.
    """
    planted = [m for m in _QUOTED.finditer(text) if has_instruction(m.group(0))]
    for match in reversed(planted):
        text = text[: match.start()] + "\n" + text[match.end() :]
    return text, bool(planted)


def statements_of(text: str) -> list[str]:
    """Declarative sentences of a text (questions dropped)."""
    found = []
    for match in _SENTENCE.finditer(text):
        sentence = match.group(0).strip()
        request = _REQUEST.match(sentence) and not _STANDING.search(sentence)
        if len(sentence) > 3 and sentence[-1] not in "?:" and not request:
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
    fact_sources: Collection[str] = ("user", "tool"),
) -> list[Verdict]:
    """One verdict per episode; ``known`` holds statements already consolidated.

    ``fact_sources``: whose words may become facts. An agent whose tools describe a world that is
    new every episode (a game's rooms) learns from its trajectories, not from those descriptions.
    """
    seen = {normalise(s) for s in known}
    verdicts = []
    for ep in episodes:
        verdicts.append(_judge(ep, seen, already_knows, fact_sources))
        seen.update(normalise(s.text) for s in verdicts[-1].statements)
    return verdicts


def _judge(
    ep: Episode,
    seen: set[str],
    already_knows: Callable[[str], bool] | None,
    fact_sources: Collection[str],
) -> Verdict:
    grounded = ep.parts_from("user", "tool")
    if not grounded:
        return Verdict(ep.id, False, "assistant-only: nothing the user or a tool said")
    candidates: list[Statement] = []
    poisoned = False
    for part in grounded:
        if part.source not in fact_sources:
            continue
        if part.source == "tool" and has_instruction(part.content):
            poisoned = True
            continue
        text = part.content
        if part.source == "user":
            text, dropped = without_planted_quotes(text)
            poisoned = poisoned or dropped
        candidates += [Statement(s, part.source, ep.id) for s in statements_of(text)]
    imitate = is_successful_trajectory(ep)
    if not candidates and imitate:
        return Verdict(ep.id, True, "successful tool trajectory (behaviour cloning)")
    if not candidates:
        if poisoned:
            return Verdict(
                ep.id, False, "untrusted: tool output or quoted text carries instructions, not facts"
            )
        return Verdict(ep.id, False, "no statement to learn (questions or chit-chat only)")
    fresh = [s for s in candidates if normalise(s.text) not in seen]
    dropped = "already consolidated"
    if fresh and already_knows is not None:
        fresh = [s for s in fresh if not already_knows(s.text)]
        dropped = "already known: the current model answers it right"
    if not fresh:  # the statements are known, but a new successful trajectory is still worth imitating
        if imitate:
            return Verdict(ep.id, True, "successful tool trajectory (behaviour cloning); statements known")
        return Verdict(ep.id, False, dropped)
    reason = "grounded statements" + (
        " (instructions in tool output or quoted text dropped)" if poisoned else ""
    )
    if imitate:
        reason += " and a successful tool trajectory (behaviour cloning)"
    return Verdict(ep.id, True, reason, fresh)
