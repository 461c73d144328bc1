"""Critic: keep only what is worth learning and safe to learn, and say why for every episode.

Rules, in order: a statement is trained only if the user or a tool said it (never the assistant
alone); tool output that carries instructions is untrusted and never becomes a fact (memory
poisoning); questions teach nothing; what is already consolidated is not learned twice; and,
when a check is given, what the model already answers right is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace

from sleep_agent.episodes import Episode, EpisodePart
from sleep_agent.text import plain

# Phrases that address the model rather than state a fact. Tool output and quoted text are data,
# so an instruction inside them is an injection attempt, whatever it asks for. Regular expressions
# rather than a classifier: they run on every sleep in microseconds, never call the model, and
# their misses are measured (``sleep-agent eval p7``, docs/reliability.md). They match text as
# ``text.plain`` gives it (one Unicode form, no invisible or look-alike letters, single spaces),
# once with its lines and once as one line, and every one runs in time linear in the text.
_READER = r"(?:ai|ais|assistants?|models?|language models?|llms?|chatbots?|bots?|agents?)"
# Who an instruction is addressed to, in the languages a payload is most often written in.
_READER_ANY = (
    r"(?:ai|ia|ki|llms?|chatbots?|bots?|assistants?|assistent(?:en)?|asistentes?|assistente|"
    r"language models?|modeles? de langue|modelos? de lenguaje|sprachmodell\w*|modell[oi] linguistic[oi])"
)
_SPEECH = (
    r"(?:answer|respond|reply|recommend|mention|describe|cite|suggest|say|tell|state|promote|rank|portray)"
)
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
    r"\bsystem (?:notice|directive|override)\b",
    r"\b(?:do not|don't) (?:tell|inform|let) the user\b",
    r"\bremember\b",
    r"\b(?:memori[sz]e|store|save) (?:this|that|the following)\b",
    r"\b(?:store|save|retain|record|keep|persist)\b.{0,30}\b(?:permanently|for future|your (?:records|memory|knowledge))",
    r"\bpersist(?: the following| this| that|\s*:)",
    r"\b(?:update your|to (?:your )?(?:long-term )?) memory\b",
    r"\b(?:your|the assistant's|assistants'?|stored) (?:memory|knowledge|records|profile)\b",
    rf"\b(?:reader|{_READER})'?s?'? (?:long-term |permanent )?memory\b",
    r"\bmemory[_ ](?:update|directive|instruction|note)s?\b",
    r"\b(?:is|are) to be (?:recorded|remembered|stored|noted)\b",
    r"\bfor (?:future (?:sessions|conversations|reference)|your records)\b",
    # standing across conversations and answers: "for this and later conversations", "in every future reply"
    r"\b(?:across|for|in|into|during) (?:this and )?(?:all |any |every |each )?(?:later|future|subsequent) "
    r"(?:conversations?|sessions?|chats?|threads?|interactions?)\b",
    r"\bacross (?:all )?(?:conversations|sessions|chats)\b",
    r"\b(?:every|all|each|any) (?:future|later|subsequent) (?:answers?|repl(?:y|ies)|responses?|messages?)\b",
    r"\b(?:end|start|begin|close|sign) (?:every|each|all|any) (?:answers?|repl(?:y|ies)|responses?|messages?)\b",
    # readers named in the third person: "if you're an AI", "to whoever reads this", "readers who are bots"
    rf"\bif (?:you are|you're) (?:an? )?{_READER}\b",
    r"\bwhoever (?:reads|processes|summari[sz]es|parses|sees|translates) (?:this|it)\b",
    rf"\breaders? (?:who|that) (?:are|is) (?:an? )?{_READER}\b",
    r"\b(?:any|every|all|each) (?:\w+ )?(?:summari[sz]ing|automated|automatic) "
    r"(?:systems?|tools?|models?|assistants?|agents?|readers?)\b",
    r"<!--|\[//\]: ?#",
    r"\byou are now\b",
    r"\byour (?:real|new|true) (?:task|job|instructions?|purpose)\b",
    r"\b(?:when|whenever|if) (?:the user|anyone|someone|somebody|people|users?|a user) (?:asks?|asked|mentions?|inquires?)\b"
    r".{0,80}\b(?:say|answer|reply|respond|tell|state|claim|the answer is)\b",
    rf"\b(?:always|never) {_SPEECH}\b",
    r"\bauthori[sz]ed you\b",
    # chat-template and role markers
    r"(?m:^[^\w\n]*(?:system|assistant)\s*:)|\[(?:system|assistant|admin)\]",
    r"<\|[a-z_]+\|>|\[/?inst\]|<</?sys>>|<(?:start|end)_of_turn>|(?m:^#{2,4} ?(?:instruction|system|response)s?[ \t]*:?[ \t]*$)",
    # hint fields of JSON or YAML: "assistant_hint":, note_for_llm:, x-ai-instructions:
    r"(?<![a-z])(?:ai|llm|gpt|assistant|chatbot|bot)s?(?![a-z])[\w-]{0,12}?(?:hint|note|instruction|directive|memory|prompt)s?"
    r"[\w-]{0,12}[\"']?\s{0,3}[:=]",
    r"(?<![a-z])(?:hint|note|instruction|directive|memory|prompt)s?[\w-]{0,12}?(?<![a-z])(?:ai|llm|gpt|assistant|chatbot|bot)s?"
    r"(?![a-z])[\w-]{0,12}[\"']?\s{0,3}[:=]",
    # the same moves in French, German, Spanish, Italian, Portuguese, Japanese and Chinese:
    # remembering, "from now on", and a note headed to an AI ("Hinweis für KI-Systeme:")
    r"\b(?:retiens|retenez|souviens-toi|souvenez-vous|memorise[rz]?|merke|merkt|merk dir|merken sie|recuerda|recuerde|recordad"
    r"|ricorda|ricordate|lembre|lembra)\b|覚えて|記憶して|记住",
    r"\b(?:desormais|dorenavant|a partir de maintenant|ab sofort|von nun an|fortan|a partir de ahora"
    r"|de ahora en adelante|d'ora in poi|da ora in poi|a partir de agora|daqui em diante)\b|これからは|今後は|从现在起|从今以后",
    rf"\b(?:to|for|pour|a l'intention d\w*|aux|fur|para|per|agli|alle)\b[^.:\n]{{0,30}}\b{_READER_ANY}(?:-\w+)?\b"
    r"(?: \w+)?(?:,? (?:that|who|which|reading|der|die|das|que|qui|che|lisant|leyendo)\b[^.:\n]{0,50})?\s?:(?!\S)"
    rf"|(?<![a-z]){_READER_ANY}へ\s?[:、,]",
]
_INSTRUCTION = re.compile("|".join(INSTRUCTION_PATTERNS), re.IGNORECASE)
_LINE_BREAKS = re.compile(r"\s*\n\s*")
# Text the user passes on rather than says: quoted in any of the usual marks, > quoted lines,
# indented or fenced blocks, what follows a forward header, and hidden <!-- comments -->. It is
# trusted only when it carries no instruction. A quote may span lines; one never closed runs to the
# end of the text (which also keeps every pattern linear: no span is scanned twice).
_QUOTED = re.compile(
    r'"[^"]{3,}(?:"|\Z)|\u201c[^\u201c\u201d]{3,}(?:\u201d|\Z)|\u201e[^\u201e\u201c\u201d"]{3,}(?:[\u201c\u201d"]|\Z)'
    r"|\u201a[^\u201a\u2018\u2019']{3,}(?:[\u2018\u2019']|\Z)|\u00ab[^\u00ab\u00bb]{3,}(?:\u00bb|\Z)"
    r"|\u2039[^\u2039\u203a]{3,}(?:\u203a|\Z)|\u300c[^\u300c\u300d]+(?:\u300d|\Z)|\u300e[^\u300e\u300f]+(?:\u300f|\Z)"
    r"|(?<!\w)'(?:[^'\n]|(?<=\w)'(?=\w)){12,}'(?!\w)|(?m:^[ \t]*>.*$)|(?m:^(?: {4}|\t).*$)|```.*?(?:```|\Z)"
    r"|(?is:(?<!-)-{3,} ?forwarded message ?-{3,}.*)|<!--.*?(?:-->|\Z)",
    re.S,
)
# Full-width and half-width quote marks read as the usual ones, one character for one, so that
# the spans found stay where they are in the text.
_QUOTE_MARKS = str.maketrans("\uff02\uff07\uff62\uff63", "\"'\u300c\u300d")
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

# "I'm vegetarian, so could you ...?": a statement before a question introduced by so/and/but.
_LEADS_INTO_QUESTION = re.compile(
    r"^((?:I|I'm|I've|I'd|My|We|We're|Our)\b[^,;?]{3,200}),\s*(?:so|and|but)\s+"
    r"(?=(?:can|could|would|will|do|does|did|is|are|what|where|when|which|who|how|should|may|might)\b)",
)
_STANDING = re.compile(
    r"\b(?:always|never|from now on|going forward|in future|call me|by default|whenever|every time|each time"
    # a request about the form of every reply is a preference, not a task: "keep your replies short"
    r"|(?:your|the|all)\s+(?:replies|answers|responses|messages|emails|summaries|explanations))\b",
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
    text = plain(text)
    return bool(
        _INSTRUCTION.search(text) or ("\n" in text and _INSTRUCTION.search(_LINE_BREAKS.sub(" ", text)))
    )


def without_planted_quotes(text: str) -> tuple[str, bool]:
    """The user's text without the quoted spans that carry instructions, and whether any did.

    What the user passes on is trusted like their own words only while it carries no instruction:
    "My boss wrote: 'The offsite is in Ghent'" is a fact to keep, a forwarded "remember that the
    VPN secret is ..." is an injection attempt.
    """
    planted = [m for m in _QUOTED.finditer(text.translate(_QUOTE_MARKS)) if has_instruction(m.group(0))]
    for match in reversed(planted):
        text = text[: match.start()] + "\n" + text[match.end() :]
    return text, bool(planted)


def recallable(parts: Iterable[EpisodePart]) -> list[EpisodePart]:
    """What of an episode's parts may be shown back to the model, before any sleep has judged them.

    Recall reaches the prompt straight from the buffer, so it gets the critic's checks here: a tool
    result or a reply that carries an instruction is left out, and a user's text loses the quoted
    spans that carry one (their own words stay).
    """
    shown = []
    for part in parts:
        if part.source == "user":
            content, planted = without_planted_quotes(part.content)
            shown.append(part.model_copy(update={"content": content.strip()}) if planted else part)
        elif not has_instruction(part.content):
            shown.append(part)
    return [p for p in shown if p.content or p.tool_calls]


def statements_of(text: str) -> list[str]:
    """Declarative sentences of a text (questions dropped, but a statement that leads into one is
    kept: "I'm vegetarian, so could you find a restaurant?" says "I'm vegetarian")."""
    found = []
    for match in _SENTENCE.finditer(text):
        sentence = match.group(0).strip()
        lead = _LEADS_INTO_QUESTION.match(sentence) if sentence.endswith("?") else None
        if lead:
            sentence = lead.group(1)
        request = _REQUEST.match(sentence) and not _STANDING.search(sentence)
        if len(sentence) > 3 and sentence[-1] not in "?:" and not request:
            found.append(sentence if sentence[-1] in ".!" else sentence + ".")
    return found


# Outcomes that mark a tool-using episode as worth imitating, and those that rule it out whatever
# its reward: a lost task's partial score (a benchmark's credit for steps on the way) does not make
# its actions worth copying.
SUCCESS_OUTCOMES = frozenset({"success", "succeeded", "solved", "win", "won", "done", "passed"})
FAILURE_OUTCOMES = frozenset(
    {"failure", "failed", "fail", "lost", "loss", "error", "timeout", "aborted", "gave up"}
)


def is_successful_trajectory(episode: Episode) -> bool:
    """An episode in which the assistant called tools and that ended well: a success outcome, or
    a positive reward under an outcome that is not a failure."""
    called = any(p.tool_calls for p in episode.parts_from("assistant"))
    outcome = (episode.outcome or "").strip().lower()
    if outcome in FAILURE_OUTCOMES:
        return False
    return called and (outcome in SUCCESS_OUTCOMES or (episode.reward or 0) > 0)


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
    r"\b(?:now|instead|any ?more|no longer|no more|new|moved|move|switched|switch|swapped|changed|change"
    r"|correction|corrected|replaced|updated?|actually|quit|left|stopped|sold|traded|transferred|gone off"
    r"|deferred|rescheduled|postponed|cancell?ed|became|these days|not .{0,20} but)\b",
    re.IGNORECASE,
)
# A later statement that adds to an earlier one rather than changing it ("I play piano too").
_ADDITION = re.compile(
    r"\b(?:too|as well|either)\b(?=\s*(?:[.,!?;)]|$))|(?<=\w\s)also\b|\banother\b", re.IGNORECASE
)  # "too" ends a clause ("piano too"), not "too good"; "also" after a word, not "Also, I moved"
# What a verb of change replaces when the subject says it of themselves ("I moved to Lyon" ends
# "I live in Paris", though the two share no word), and the words that must follow the verb for it
# to be that change: "I moved my dentist appointment to Friday" moves no home.
_REPLACES = {
    "move": ({"live", "reside", "stay"}, {"to", "into", "back", "here", "there", "abroad", "away", "out"}),
    "relocate": ({"live", "reside", "stay", "work"}, {"to", "into", "back", "here", "there", "abroad"}),
    "retire": ({"work", "teach"}, {"", "from", "last", "this", "in"}),
}
# Words of a subject that do not change who or what it is: "my new phone number" is "my phone number".
_SLOT_ADJECTIVES = frozenset("new old current latest actual real updated previous former".split())
# A pronoun subject ("it", "that") may stand for anything said before: a change cue and shared
# words decide, not the subject.
_OPEN_SUBJECTS = frozenset("it that this there".split())
_COMMON = frozenset(
    "the a an and or but so of in on at to for with from by is are was were be been am i my me we our us "
    "you your it its this that they them their he she his her have has had do does did not no now new "
    "just also really very all some any every one get got going go like about there here then than "
    "what when where who which after before because since into over more most much many last next "
    "i'm i've i'd we're we've they're it's that's don't didn't can't everything everything's something "
    "anything nothing everyone someone thing things bit lot way time yes please okay sure can could "
    "would should will still even actually".split()
)
# The speaker's own pronouns are capitalised without naming anything.
_NOT_NAMES = frozenset("i i'm i've i'd i'll".split())


@dataclass(frozen=True)
class Superseded:
    """An earlier statement a later one changed, and why the critic thinks so."""

    old: Statement
    new: Statement
    reason: str


@dataclass(frozen=True)
class _Read:
    """What supersession needs of one clause of a statement, parsed once."""

    subject: str  # "" when the clause did not parse
    verb: str  # its base form; "be" for am/is/are
    after_verb: str  # the first word after the verb ("to" in "moved to Lyon")
    answer: str  # the rest of the clause, normalised
    kind: str  # what the answer is: "number", "name" or "other"
    single: bool  # the subject has one value at a time ("my favourite tea", "my phone number")
    words: frozenset[str]  # the statement's topic words
    named: frozenset[str]  # its capitalised words and numbers
    changes: str | None  # the change cue it says, if any


def superseded(statements: Sequence[Statement]) -> list[Superseded]:
    """Earlier statements that later ones replace (``statements`` oldest first).

    Three signs, no relation list: the same subject says "is" with another answer of one value
    ("My target time is 3:30" ... "My new target time is 3:15"), or with the same verb says that it
    changed ("now", "switched", "correction"); a verb of change that ends an earlier verb ("I moved
    to Lyon" ends "I live in Paris"); a change cue and shared topic words where the subject is open
    ("Correction: it's the 19th"). Different subjects never replace each other ("My dad moved to
    Leeds" leaves "My mom lives in Leeds"), and a statement that adds ("I play piano too") replaces
    nothing. Only the best match is retired, so one change retires one memory.
    """
    reads = [_reads(s.text) for s in statements]
    adds = [bool(_ADDITION.search(s.text)) for s in statements]
    found: list[Superseded] = []
    retired: set[int] = set()
    for n, new in enumerate(statements):
        if adds[n]:
            continue
        best, best_score, why = None, 0.0, ""
        for o in range(n):
            if o in retired or normalise(statements[o].text) == normalise(new.text):
                continue
            score, reason = max((_replaces(a, b) for a in reads[o] for b in reads[n]), key=lambda x: x[0])
            if score > best_score:
                best, best_score, why = o, score, reason
        if best is not None:
            retired.add(best)
            found.append(Superseded(statements[best], new, why))
    return found


_FROM_TO = re.compile(
    r"\bfrom\s+(?:the\s+)?(?P<old>[\w&:.'-]+(?:\s+[A-Z0-9][\w&:.'-]*)?)\s+to\s+(?:the\s+)?"
    r"(?P<new>[\w&:.'-]+(?:\s+[A-Z0-9][\w&:.'-]*)?)(?=[\s.,;!?]|$)"
)


def carried_over(change: Superseded) -> Statement | None:
    """What else the replaced statement said, kept with the new value: when the new statement says
    "from X to Y" and the old one says X, the old one with Y for X ("I'm a nurse on the ICU at
    Hallam General" + "I've transferred from ICU to A&E" -> "I'm a nurse on the A&E at Hallam
    General"). Retired whole, the hospital would be forgotten with the ward. None otherwise."""
    moved = _FROM_TO.search(change.new.text)
    if not moved:
        return None
    was, now = moved.group("old").rstrip(".,"), moved.group("new").rstrip(".,")
    pattern = re.compile(rf"(?<![\w-]){re.escape(was)}(?![\w-])", re.IGNORECASE)
    if was.lower() == now.lower() or len(pattern.findall(change.old.text)) != 1:
        return None
    text = pattern.sub(lambda _: now, change.old.text)
    return replace(change.old, text=text)


def _replaces(old: _Read, new: _Read) -> tuple[float, str]:
    """How surely ``new`` replaces ``old`` (0: it does not), and why."""
    same_subject = bool(old.subject) and old.subject == new.subject
    valued = old.answer not in _PRONOUNS and new.answer not in _PRONOUNS  # "told her" ... "tell him"
    if (
        same_subject
        and old.verb == new.verb
        and valued
        and old.answer
        and new.answer
        and old.answer != new.answer
    ):
        one_value = old.single or new.single or (old.kind == new.kind != "other")
        if old.verb == "be" and old.subject not in _PERSONS and one_value:
            return 3.0, "same subject, another answer"
        if new.changes and not (old.verb in ("be", "have") and old.subject in _PERSONS):  # "I have a dog"
            return 2.0, f"same subject and verb, another answer ('{new.changes}')"
    wanted = _REPLACES.get(new.verb)
    if same_subject and wanted and old.verb in wanted[0] and new.after_verb in wanted[1]:
        return 1.5, f"'{new.verb}' replaces '{old.verb}'"
    if not new.changes or not _may_change(old, new):
        return 0.0, ""
    shared = {w for w in old.words & new.words if not _CHANGE.fullmatch(w)}
    if not shared or not new.named - old.named:  # a correction brings a value the old one lacked
        return 0.0, ""
    score = len(shared) / len(old.words | new.words)
    named = any(w[:1].isdigit() or w in new.named for w in shared)
    if not old.subject and not named:  # a fragment ("The allotment, mostly.") needs a name in common
        return 0.0, ""
    if same_subject or {old.subject, new.subject} <= {"i", "we"}:
        score += 0.1  # the speaker's own earlier statement before a fragment that shares a word
    if score >= 0.1 or (named and score >= 0.05):
        return (
            score,
            f"a later statement changes it ('{new.changes}'; shares {', '.join(sorted(shared)[:3])})",
        )
    return 0.0, ""


_PERSONS = frozenset("i we you he she they".split())
_PRONOUNS = frozenset("me us you him her it them this that one".split()) | {""}


def _may_change(old: _Read, new: _Read) -> bool:
    """Whether ``new`` may speak of what ``old`` is about: the same subject, an open one ("it"), one
    acting on the old subject ("Sophie moved standup" of "Standup is at 9:15"), or the speaker both
    times. Two different people never do: "My dad moved to Leeds" leaves "My mom lives in Leeds"."""
    if not old.subject or not new.subject or old.subject == new.subject or new.subject in _OPEN_SUBJECTS:
        return True
    if {old.subject, new.subject} <= {"i", "we"}:
        return True
    own = _content_words(old.subject)
    return bool(own) and own <= new.words and old.subject not in _PERSONS


# What makes a subject hold one value at a time: "my favourite tea", "my phone number", "her age".
_SINGLE = frozenset(
    "favourite favorite preferred usual main only best current new name number address age birthday "
    "email phone price cost deadline date time".split()
)
# Where one statement holds several clauses: "Rui left, and my new manager is Sophie".
_CLAUSES = re.compile(r":\s|;|,\s*(?:and|but|so)\s+|\s+(?:and|but)\s+(?=(?:I|my|My|we|We|our|Our)\b)")


def _reads(text: str) -> list[_Read]:
    from sleep_agent.sleep.phrasings import expand

    words = frozenset(_content_words(text))
    named = {normalise(w) for w in re.findall(r"(?<!^)\b[^\W\d_][\w'-]*", text) if w[:1].isupper()}
    named = {w for w in named if w not in _NOT_NAMES} | set(re.findall(r"\d[\w:.,]*", text))
    parts = [p for p in _CLAUSES.split(text) if p.strip()] or [text]
    opening = _CHANGE.search(expand(parts[0])) if len(parts[0].split()) <= 3 else None
    reads = []
    for part in parts[:8]:
        # A cue changes its own clause; one that opens the sentence ("Actually, ...") changes all.
        cue = _CHANGE.search(expand(part)) or opening
        reads.append(_read(part, words, frozenset(named), cue.group(0) if cue else None))
    return reads


def _read(text: str, words: frozenset[str], named: frozenset[str], changes: str | None) -> _Read:
    from sleep_agent.sleep.phrasings import parse, verb_lemma

    clause = parse(text)
    if clause is None:
        return _Read("", "", "", "", "other", False, words, named, changes)
    said = [w.lower() for w in clause.subject if w.lower() not in ("also", "and", "so", "but", "then")]
    subject = " ".join(w for w in said if w not in _SLOT_ADJECTIVES)
    verb = (clause.lemma or clause.verb).lower()
    verb = "be" if verb in ("am", "is", "are", "was", "were", "be") else verb_lemma(verb)
    rest = [w for span in clause.spans for w in span]
    kind = (
        "number"
        if rest and any(ch.isdigit() for ch in rest[0])
        else "name"
        if rest and rest[0][:1].isupper()
        else "other"
    )
    return _Read(
        subject,
        verb,
        rest[0].lower() if rest else "",
        normalise(" ".join(rest)),
        kind,
        bool(_SINGLE & set(said)),
        words,
        named,
        changes,
    )


def _content_words(text: str) -> set[str]:
    words = (re.sub(r"'s$", "", w) for w in normalise(text).split() if w not in _COMMON)
    return {w.rstrip("s") if len(w) > 4 else w for w in words if len(w) > 2}
