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
    r"(?:\b(?:Dr|Mrs?|Ms|Prof|St|Mt|Jr|Sr)\.\s+(?=[A-Z])|(?<![\w&])[A-Z]\.\s+(?=[A-Z])|[^.!?\n]|[.!?](?=[^\s\"'\u201d)\]]))+[.!?]?"
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


# Words that mark a statement as changing something said before: "I moved to Lyon", "it's £3.50
# now", "correction: ...", "we've switched to Tuesday", "my new manager is ...".
_CHANGE = re.compile(
    r"\b(?:now|instead|any ?more|no longer|moved|move|switched|switch|changed|change|correction|corrected"
    r"|swapped|replaced|traded|transferred|updated?|actually|gone off|quit|left|deferred|rescheduled"
    r"|postponed|cancell?ed|became|these days|not .{0,20} but)\b",
    re.IGNORECASE,
)
# What a verb of change replaces when the subject says it of themselves: "I moved to Lyon" ends
# "I live in Paris", though the two share no word.
_REPLACES = {
    "move": {"live", "reside", "stay"},
    "relocate": {"live", "reside", "stay"},
    "transfer": {"work"},
    "switch": {"use", "drive", "work"},
    "retire": {"work", "teach"},
    "quit": {"work", "smoke", "drink"},
}
_COMMON = frozenset(
    "the a an and or but so of in on at to for with from by is are was were be been am i my me we our us "
    "you your it its this that they them their he she his her have has had do does did not no now new "
    "just also really very all some any every one get got going go like about there here then than "
    "what when where who which after before because since into over more most much many last next "
    "i'm i've i'd we're we've they're it's that's don't didn't can't everything everything's something "
    "anything nothing everyone someone thing things bit lot way time".split()
)


@dataclass(frozen=True)
class Superseded:
    """An earlier statement a later one changed, and why the critic thinks so."""

    old: Statement
    new: Statement
    reason: str


def superseded(statements: Sequence[Statement]) -> list[Superseded]:
    """Earlier statements that later ones replace (``statements`` oldest first).

    Two signs, no relation list: the same subject and verb said again with another object ("My
    target time is 3:30" ... "My target time is 3:15"), or a later statement that says it changes
    something ("now", "moved", "switched", "correction", "new") and shares the earlier one's topic
    words. Only the most similar earlier statement is replaced, so one change retires one memory.
    """
    from sleep_agent.sleep.phrasings import parse

    found: list[Superseded] = []
    retired: set[int] = set()
    slots = [_slot(parse(s.text)) for s in statements]
    words = [_content_words(s.text) for s in statements]
    for n, new in enumerate(statements):
        best, best_score, why = None, 0.0, ""
        for o in range(n):
            if o in retired or normalise(statements[o].text) == normalise(new.text):
                continue
            clause_o, clause_n = slots[o], slots[n]
            if (
                clause_o is not None
                and clause_o[:2] == (clause_n or ("",))[:2]
                and clause_o[2] != clause_n[2]
            ):
                best, best_score, why = o, 2.0, "same subject and verb, another answer"
                continue
            verbs = _verbs(statements[o].text), _verbs(new.text)
            if (
                verbs[0]
                and verbs[1]
                and verbs[0][0] == verbs[1][0]
                and verbs[0][1] in _REPLACES.get(verbs[1][1], ())
            ):
                if best_score < 1.0:
                    best, best_score, why = o, 1.0, f"'{verbs[1][1]}' replaces '{verbs[0][1]}'"
                continue
            shared = words[o] & words[n]
            if not shared or not _CHANGE.search(new.text):
                continue
            score = len(shared) / len(words[o] | words[n])
            named = any(w[:1].isdigit() or w in _named(new.text) for w in shared)
            if score > best_score and (score >= 0.1 or (named and score >= 0.05)):
                cue = _CHANGE.search(new.text).group(0)  # type: ignore[union-attr]
                best, best_score = o, score
                why = f"a later statement changes it ('{cue}'; shares {', '.join(sorted(shared)[:3])})"
        if best is not None:
            retired.add(best)
            found.append(Superseded(statements[best], new, why))
    return found


def _slot(clause) -> tuple[str, str, str] | None:  # noqa: ANN001
    """(subject, verb, object) of a parsed statement, normalised; None when it did not parse."""
    if clause is None:
        return None
    subject = " ".join(w.lower() for w in clause.subject)
    if subject in ("i", "we", "you", "he", "she", "they", "it"):  # "I am ..." says many different things
        return None
    verb = (clause.lemma or clause.aux or clause.verb).lower()
    return subject, verb, normalise(" ".join(w for s in clause.spans for w in s))


def _verbs(text: str) -> tuple[str, str] | None:
    """(subject, verb lemma) of a statement a person says of themselves ("I", "we")."""
    from sleep_agent.sleep.phrasings import parse

    clause = parse(text)
    if clause is None or clause.subject[-1].lower() not in ("i", "we"):
        return None
    lemma = (clause.lemma or clause.verb).lower()
    return clause.subject[-1].lower(), "be" if lemma in ("am", "are", "is", "was", "were") else lemma


def _content_words(text: str) -> set[str]:
    words = (re.sub(r"'s$", "", w) for w in normalise(text).split() if w not in _COMMON)
    return {w.rstrip("s") if len(w) > 4 else w for w in words if len(w) > 2}


def _named(text: str) -> set[str]:
    return {normalise(w) for w in re.findall(r"(?<!^)\b[A-Z][\w'-]+", text)}
