"""Phrasings: the questions a person would ask to get a statement back, for any statement.

Knowledge seeding from the text itself, with no list of relations: a statement is split into its
subject, its verb and the spans after the verb (the object, places, times, people); each span
becomes a wh-question with do-support ("My cat Pepper only eats salmon pâté" -> "What does my cat
Pepper only eat?"), the names and the subject become topic questions ("Tell me about Pepper."), and
the user's own words are said back in the second person, or about the user by name in the third
("Wen's cat Pepper only eats salmon pâté."). Where the parse fails, the topic questions remain.

Written by hand: the English parsers that would do this better (spaCy's pipelines) ship their
models outside the package registries this project installs from, and this shallow parse runs in
microseconds on every sleep. Its questions are training prompts and gate probes, not grammar
lessons: a clumsy question still keys the statement by its own words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Words that can stand between a subject and its verb, or qualify the verb.
_ADVERBS = frozenset(
    "only never always usually often also just still now really actually sometimes rarely normally "
    "mostly already recently currently generally finally even probably definitely no longer".split()
)
_MODALS = frozenset("can could will would should must may might shall".split())
_COPULA = frozenset("am is are was were".split())
_HAVE = frozenset("have has had".split())
_DO = frozenset("do does did".split())
_PARTICIPLES = frozenset(
    "been gone done seen known grown thrown flown drawn worn begun swum run come become born".split()
)
_PARTICLES = frozenset("up down out off away back over".split())
_FUNCTION_VERBS = _COPULA | _HAVE | _DO | _MODALS | {"be", "been", "not"}
_DETERMINERS = frozenset(
    "my our your his her their its the a an this that these those every each some any no one two three all "
    "both".split()
)
_PRONOUNS = frozenset("i we you he she they it".split())
_PREPOSITIONS = frozenset(
    "in on at under near behind from to with for by since until before after during inside outside "
    "above below beside next into onto over around across through about like of".split()
)
_LOCATIVE = frozenset(
    "in at under near behind inside outside above below beside next into onto over around".split()
)
_CLAUSE_BREAK = re.compile(
    r";|\s[-\u2013\u2014]\s|\s(?:because|so|but|although|though|while|which|who|where|when|and then|and (?:i|we|my|our|he|she|they))\s",
    re.IGNORECASE,
)
_TIME_WORDS = re.compile(
    r"\b(?:\d+\w*|monday|tuesday|wednesday|thursday|friday|saturday|sunday|mondays|tuesdays|wednesdays|"
    r"thursdays|fridays|saturdays|sundays|january|february|march|april|may|june|july|august|september|"
    r"october|november|december|morning|mornings|evening|evenings|night|nights|noon|midnight|week|weeks|"
    r"weekend|weekends|month|months|year|years|day|days|today|tomorrow|tonight|spring|summer|autumn|fall|"
    r"winter|o'clock|am|pm)\b",
    re.IGNORECASE,
)
_IRREGULAR_PAST = {
    "went": "go",
    "bought": "buy",
    "got": "get",
    "made": "make",
    "took": "take",
    "gave": "give",
    "met": "meet",
    "saw": "see",
    "ate": "eat",
    "drove": "drive",
    "began": "begin",
    "found": "find",
    "left": "leave",
    "kept": "keep",
    "told": "tell",
    "lost": "lose",
    "won": "win",
    "grew": "grow",
    "wrote": "write",
    "sold": "sell",
    "built": "build",
    "broke": "break",
    "chose": "choose",
    "came": "come",
    "became": "become",
    "ran": "run",
    "sent": "send",
    "spent": "spend",
    "paid": "pay",
    "taught": "teach",
    "brought": "bring",
    "thought": "think",
    "felt": "feel",
    "heard": "hear",
    "knew": "know",
    "said": "say",
    "sat": "sit",
    "stood": "stand",
    "swam": "swim",
    "flew": "fly",
    "forgot": "forget",
    "drank": "drink",
    "fell": "fall",
    "held": "hold",
    "led": "lead",
    "read": "read",
    "rode": "ride",
    "sang": "sing",
    "slept": "sleep",
    "spoke": "speak",
    "wore": "wear",
    "hid": "hide",
}
_CONTRACTIONS = [
    (r"\bI'm\b", "I am"),
    (r"\bI've\b", "I have"),
    (r"\bI'd\b", "I would"),
    (r"\bI'll\b", "I will"),
    (r"\bwe're\b", "we are"),
    (r"\bwe've\b", "we have"),
    (r"\bwe'll\b", "we will"),
    (r"\bdon't\b", "do not"),
    (r"\bdoesn't\b", "does not"),
    (r"\bdidn't\b", "did not"),
    (r"\bcan't\b", "can not"),
    (r"\bcannot\b", "can not"),
    (r"\bwon't\b", "will not"),
    (r"\bisn't\b", "is not"),
    (r"\baren't\b", "are not"),
    (r"\bwasn't\b", "was not"),
    (r"\bhaven't\b", "have not"),
    (r"\bhasn't\b", "has not"),
]
_TOKEN = re.compile(r"[\w'\u2019.:/@&+-]+|,")
# How a user says who they are, at the start of a message: "I'm Wen", "My name is Olu", "Olu here".
_NAME_WORD = r"((?=[^\W\d_])[^\W\d_a-z][^\W\d_A-Z][\w'-]*)"
_INTRODUCTIONS = [
    re.compile(rf"\b(?i:my name is) {_NAME_WORD}"),
    re.compile(rf"\b(?i:call me) {_NAME_WORD}"),
    # "I'm X" names the user only after a greeting or before "here": "I'm Canadian" does not
    re.compile(
        rf"^(?i:(?:hi|hello|hey|morning)(?: there| all| again| everyone)?[,!.]?\s+)(?:I'm|I am|(?i:this is|it's)) {_NAME_WORD}(?=\s*(?:[.,!]|$| and| here))"
    ),
    re.compile(rf"^(?:I'm|I am|(?i:this is|it's)) {_NAME_WORD}(?= here\b| speaking\b| and (?:I|I'm|my)\b)"),
    re.compile(rf"^(?i:(?:hi|hello|hey|morning)(?: there| all| again)?[,!.]?\s+)?{_NAME_WORD} here\b"),
]
# A standing instruction to the assistant: "Please always answer in metric", "Never suggest milk".
_REQUEST = re.compile(
    r"^(?:please,?\s+)?((?:(?:always|never|only)\s+|(?:do not|don't)\s+)?[a-z]+\b.*)$", re.IGNORECASE
)
_REQUEST_START = re.compile(r"^(?:please|always|never|do not|don't)\b", re.IGNORECASE)
_OBJECT_PRONOUNS = frozenset("me you us him her them it i".split())
_TITLES = frozenset("Dr Mr Mrs Ms Prof St Mt Dr. Mr. Mrs. Ms. Prof. St. Mt.".split())
_SPAN_STARTS = _PREPOSITIONS | {
    "as",
    "every",
    "last",
    "next",
    "this",
    "yesterday",
    "today",
    "tomorrow",
    "tonight",
}
MAX_SPANS = 6  # spans asked about per clause
MAX_SPAN_WORDS = 40  # words of a clause read after its verb
# Verbs whose capitalised object is a person ("I met Sarah": who?); any other verb's is a thing
# or a place ("Our team uses Linear": what?).
_PERSON_VERBS = frozenset(
    "meet marry date call phone email text hire invite visit see mentor babysit trust admire miss "
    "follow thank ask tell".split()
)
# Verbs of preference, after which "over" compares ("I prefer tea over coffee") and places nothing.
_PREFERENCE_VERBS = frozenset("prefer choose pick favour favor rank rate".split())
# Participles after "be" that state a condition and take a complement ("interested in pottery",
# "married to Tom"); any other participle is a passive whose span keeps its own question ("born in
# Ohio": where?). Those in _PERSON_ADJECTIVES take a person ("Who is my sister married to?").
# Verbs after which "to" starts an infinitive, not a place ("I prefer to work", "I want to learn").
_INFINITIVE_VERBS = frozenset(
    "prefer like love hate want need plan hope try decide learn intend expect wish mean start "
    "begin continue forget remember refuse agree promise".split()
)
_STATE_PARTICIPLES = frozenset(
    "used interested addicted subscribed obsessed hooked involved excited worried scared tired bored "
    "committed dedicated attached devoted opposed married engaged related allergic".split()
)
_PERSON_ADJECTIVES = frozenset(
    "married engaged related grateful indebted kind nice mean rude loyal friends".split()
)
_NUMBER_WORDS = frozenset("two three four five six seven eight nine ten eleven twelve".split())
_NOT_NAMES = frozenset(
    "Sorry Fine Good Great Back Here Home Ready Busy Tired Happy New Not Just Also Still Vegan Vegetarian "
    "Later Soon Now Today Tomorrow Tonight Urgent Monday Tuesday Wednesday Thursday Friday Saturday Sunday "
    "January February March April May June July August September October November December".split()
)


@dataclass(frozen=True)
class Clause:
    """A statement's parts: ``subject verb rest``, with the spans of ``rest`` (object first)."""

    subject: list[str]
    modifiers: list[str]  # adverbs and "not" between the auxiliary and the verb
    verb: str  # as said
    aux: str | None  # the verb as a question's auxiliary: is/can/have..., or do/does/did for do-support
    lemma: str | None  # the verb after a do-support auxiliary (None when the verb is the auxiliary)
    spans: list[list[str]]  # the object (may be empty) and each prepositional span after it


@dataclass(frozen=True)
class Probe:
    """A question and the word a right answer to it must contain."""

    question: str
    keyword: str


def expand(text: str) -> str:
    """Contractions spelled out, so that the parse sees an auxiliary where there is one."""
    text = text.replace("\u2019", "'")
    for pattern, full in _CONTRACTIONS:
        text = re.sub(pattern, full, text, flags=re.IGNORECASE if not pattern.startswith(r"\bI") else 0)
    return text


def first_clause(sentence: str) -> str:
    """The sentence up to its first clause break: "I'm vegan because ..." -> "I'm vegan"."""
    return _CLAUSE_BREAK.split(sentence.strip().rstrip(".!"), maxsplit=1)[0].strip()


def parse(sentence: str) -> Clause | None:
    """Subject, verb and spans of a simple declarative sentence; None where the shape is not found."""
    tokens = _TOKEN.findall(expand(first_clause(sentence)))
    if tokens and tokens[0].endswith(":"):  # "Correction: the sale moved to the 19th"
        tokens = tokens[1:]
    words = [w for w in tokens if w != ","]
    if len(words) < 2:
        return None
    end = _subject_end(words)
    if end is None:
        return None
    # commas inside the subject set off an appositive ("My manager, Rui, prefers"); after the
    # verb, the first comma ends the clause ("I'm lactose intolerant, never suggest milk")
    positions = [k for k, w in enumerate(tokens) if w != ","]
    after_verb = [k for k, w in enumerate(tokens) if w == "," and k > positions[end]]
    if after_verb:
        words = words[: sum(1 for k in positions if k < after_verb[0])]
    subject, i = [_lower_function_word(w) for w in words[:end]], end
    pre = []
    while i < len(words) and words[i].lower() in _ADVERBS:
        pre.append(words[i])
        i += 1
    if i >= len(words):
        return None
    verb, low = words[i], words[i].lower()
    i += 1
    mods = list(pre)
    if low in _COPULA or low in _MODALS or (low in _HAVE and i < len(words) and _participle(words[i])):
        aux, lemma = low, None
        while i < len(words) and words[i].lower() in (_ADVERBS | {"not"}):
            mods.append(words[i])
            i += 1
        if low in _MODALS or low in _HAVE:  # "can swim", "have moved": the next word is the verb
            if i >= len(words):
                return None
            lemma = words[i]
            i += 1
        elif low in _COPULA and _progressive(words, i, subject):  # "We're expecting twins"
            lemma = words[i]
            i += 1
    elif low in _DO and i < len(words) and words[i].lower() == "not":
        mods.append("not")
        i += 1
        if i >= len(words):
            return None
        aux, lemma = low, words[i]
        i += 1
    else:
        aux, lemma = _do_support(low, subject)
    spans = _spans(words[i:])
    if not spans:
        return None
    return Clause(subject, mods, verb, aux, lemma, spans)


def questions_of(sentence: str) -> list[Probe]:
    """Wh-questions over each span of the sentence, as the user would ask them back.

    "Where do I keep the spare key?"; a standing request ("Always use metric units with me") is
    asked as what the assistant should do ("What should you always use with me?").
    """
    request = as_request(sentence)
    clause = parse(f"You should {request}" if request else sentence)
    if clause is None:
        return []
    found = []
    for k, span in enumerate(clause.spans):
        if not span or (len(span) == 1 and span[0].lower() in _PARTICLES):  # "wake up at 6"
            continue
        wh_is_object = k == 0 and span[0].lower() not in _SPAN_STARTS
        wh = _wh_for(clause, k, span, is_object=wh_is_object)
        if wh is None:
            continue
        # the object's question keeps what follows it ("What do I keep under the flowerpot?"); a
        # span's question keeps only what came before it ("Where does the flour come from?")
        if wh == ("Who", False) and clause.lemma is None:  # "Rui is the new CTO at Acme": "Who is Rui?"
            others = []
        elif k == 0 and wh_is_object:
            others = [w for s in clause.spans[1:] for w in s]
        else:
            others = [w for s in clause.spans[:k] for w in s]
        if clause.lemma is None:  # "My diet is vegetarian" -> "What is my diet?"
            body = [clause.aux, *clause.subject, *clause.modifiers, *others]
        else:
            body = [clause.aux, *clause.subject, *clause.modifiers, clause.lemma, *others]
        trailing = [span[0]] if wh[1] else []  # "Who do I play tennis with?"
        question = _tidy(" ".join([wh[0], *[w for w in body if w], *trailing]))
        found.append(Probe(question, keyword_of(span)))
    return found


def _wh_for(clause: Clause, k: int, span: Sequence[str], *, is_object: bool) -> tuple[str, bool] | None:
    """The wh-word for span ``k`` of ``clause`` (None: the span is not asked about)."""
    wh = _wh_word(span, is_object=is_object, person_verb=_takes_person(clause.lemma or clause.verb))
    if k == 0 and len(clause.spans) > 1 and _adjective_complement(clause, clause.spans[1]):
        return None  # "married to Tom": "What is my sister to Tom?" asks nothing; its span does
    if k == 1 and _adjective_complement(clause, span) and (wh is None or wh[0] != "When"):
        adjective = _adjective(clause).lower()
        passive = _past_participle(adjective) and adjective not in _STATE_PARTICIPLES
        if wh is not None and (passive or span[0].lower() == "from"):
            return wh  # "I was born in Ohio": where?
        named = len(span) > 1 and span[1][:1].isupper() and not span[1].endswith("'s")
        return ("Who" if named and adjective in _PERSON_ADJECTIVES else "What", True)  # "allergic to"
    if k == 0 and span[0].lower() == "to" and verb_lemma(clause.lemma or clause.verb) in _INFINITIVE_VERBS:
        return None  # "I prefer to work ...": an infinitive, not a place
    if span[0].lower() == "over" and verb_lemma(clause.lemma or clause.verb) in _PREFERENCE_VERBS:
        head = next((w for w in span[1:] if w.lower() not in _DETERMINERS), "")
        if _TIME_WORDS.fullmatch(head):
            return ("When", False)  # "I prefer to work over the weekend"
        return ("What", True)  # "What do I prefer tea over?"
    if clause.lemma is None and k == 0 and _is_person(clause.subject):
        if clause.subject[0].lower() in _PRONOUNS:
            return None  # "I am lactose intolerant": "What am I?" asks for nothing in particular
        if is_object:  # "Rui is my manager" -> "Who is Rui?"; "Rui is tired" asks nothing
            negated = "not" in (m.lower() for m in clause.modifiers)
            return ("Who", False) if span[0].lower() in _DETERMINERS and not negated else None
    return wh


def _takes_person(verb: str) -> bool:
    """Whether a verb's capitalised object is a person: "met", "is seeing", "invited" (stemmed as said)."""
    low = verb.lower()
    stems = {verb_lemma(low)}
    if low.endswith("ing") and len(low) > 5:
        stems |= {low[:-3], low[:-3] + "e", low[:-4]}  # "seeing", "dating", "babysitting"
    return any(stem in _PERSON_VERBS or stem + "e" in _PERSON_VERBS for stem in stems)


def _adjective(clause: Clause) -> str:
    words = [w for w in clause.spans[0] if w.lower() not in _ADVERBS]
    return words[0] if len(words) == 1 else ""


def _is_person(subject: Sequence[str]) -> bool:
    """A pronoun or a bare name: "I", "Wen", "Dr. Haas" (not "my diet", not "Pepper's bowl")."""
    if subject[0].lower() in _PRONOUNS:
        return True
    return (
        all(w[:1].isupper() and not w.endswith("'s") for w in subject)
        and subject[0].lower() not in _DETERMINERS
    )


def _adjective_complement(clause: Clause, span: Sequence[str]) -> bool:
    """Whether ``span`` completes an adjective after "be": "allergic to peanuts", "good at chess"."""
    adjective = _adjective(clause)
    return (
        clause.lemma is None
        and adjective.isalpha()
        and adjective.islower()
        and adjective not in _DETERMINERS
        and span[0].lower() in _PREPOSITIONS
        and span is not clause.spans[0]
    )


def yes_no_question(clause: Clause) -> str:
    """The statement asked back for a yes: "I'm vegetarian" -> "Am I vegetarian?"."""
    subject = ["I" if w.lower() == "i" else ("we" if w.lower() == "we" else w) for w in clause.subject]
    rest = [w for span in clause.spans for w in span]
    body = [clause.aux, *subject, *clause.modifiers, *([clause.lemma] if clause.lemma else []), *rest]
    return _tidy(" ".join(w for w in body if w))


# Reported speech: "Wen told me she's allergic to peanuts", "According to Rui, the demo is on Friday".
_REPORTED = re.compile(
    r"^(?P<who>(?:[Mm]y |[Oo]ur |[Tt]he )?[\w'.-]+(?: [\w'.-]+){0,3}?) (?:told (?:me|us)|tells (?:me|us)|said|says|"
    r"mentioned|explained|confirmed|informed (?:me|us)|let (?:me|us) know|reminded (?:me|us)|thinks|believes|"
    r"reckons|warned (?:me|us))(?: that)?,? (?P<what>\S.*)$"
)
_NOT_A_CLAUSE = frozenset("not how what who why when where whether so yes no hi hello there".split())
_ACCORDING = re.compile(
    r"^[Aa]ccording to (?P<who>[^,]{1,60}?)(?:,\s*|\s+(?=(?:I|we|he|she|they|the|my|our)\b))(?P<what>\S.*)$"
)
_REPORTED_PRONOUN = re.compile(r"^(?:he|she|they)(?:'s|'re|'ll|'d)?\b", re.IGNORECASE)


def reported(sentence: str) -> str | None:
    """What a reported statement says, about whoever said it: "Wen told me she is allergic to peanuts"
    -> "Wen is allergic to peanuts"; None when the sentence reports nothing."""
    text = sentence.strip().replace("\u2019", "'")
    match = _REPORTED.match(text) or _ACCORDING.match(text)
    if match is None or match.group("who").split()[0].lower() in _PREPOSITIONS:
        return None
    who, what = match.group("who"), match.group("what")
    speaker = {w.lower() for w in who.split()}
    if who.split()[0].lower() in _NOT_A_CLAUSE or what.split()[0].lower() in _FUNCTION_VERBS:
        return None  # "What my boss said was that ...": no one is the speaker
    if what[:1] in "\"'\u201c" or speaker & (_ADVERBS | _FUNCTION_VERBS | {"nobody", "never", "no"}):
        return None  # a quote's "I" is the speaker's; "My doctor never told me ..." claims nothing
    if what.split()[0].lower() in _PREPOSITIONS | _NOT_A_CLAUSE:
        return None  # "told me about a place", "said to avoid ibuprofen", "said not to": no clause
    plural = who.split()[-1].lower().endswith("s") or "and" in speaker
    if re.match(r"they\b", what, re.IGNORECASE) and not plural:
        return None  # "The store said they're out of stock": "they" is not the store itself
    owned = re.sub(r"^(?:his|her|their)\b", f"{who}'s", what, flags=re.IGNORECASE)  # "Tom's sister"
    if owned != what:  # "My daughter said her first word" reports nothing: no verb follows
        clause = parse(owned)
        if clause is None or not _verb_like(clause.verb, ""):
            return None
        what = owned
    pronoun = _REPORTED_PRONOUN.match(what)
    if pronoun:  # "she's moved" -> "Wen has moved"; "they love" stays plural ("my parents love")
        said, rest = pronoun.group(0).lower(), what[pronoun.end() :].lstrip()
        contracted = {"'s": "has" if rest and _participle(rest.split()[0]) else "is", "'re": "are"}
        contracted |= {"'ll": "will", "'d": "would"}
        aux = next((v for k, v in contracted.items() if said.endswith(k)), "")
        what = " ".join(w for w in (who, aux, rest) if w)
    if what.split()[0].lower() in _DETERMINERS | _PRONOUNS:  # "the demo" -> "The demo", "revenue" stays
        what = what[:1].upper() + what[1:]
    return what if parse(what) is not None else None


def as_request(sentence: str) -> str | None:
    """The request in a standing instruction ("Please never suggest milk" -> "never suggest milk")."""
    if not _REQUEST_START.match(sentence.strip()):
        return None
    match = _REQUEST.match(sentence.strip())
    return (match.group(1)[:1].lower() + match.group(1)[1:]).rstrip(".!") if match else None


def topic_questions(sentence: str, templates: Sequence[str]) -> list[Probe]:
    """``templates`` over the sentence's topics: its subject (when not a pronoun) and its names."""
    request = as_request(sentence)
    clause = parse(f"You should {request}" if request else sentence)
    topics: list[str] = []
    if clause is not None and clause.subject[0].lower() not in _PRONOUNS:
        topics.append(" ".join(clause.subject))
    elif (
        clause is not None
        and clause.lemma is not None
        and clause.spans[0][0].lower() not in _SPAN_STARTS | _PARTICLES
    ):
        topics.append(" ".join(clause.spans[0]))  # "I keep the spare key ..." -> "the spare key"
    topics += [n for n in names_in(sentence) if all(n not in t for t in topics) and not _TIME_WORDS.search(n)]
    spans = clause.spans if clause is not None else []
    if len(spans) > 1 and _adjective_complement(clause, spans[1]):  # "allergic to peanuts": peanuts
        spans = [*spans[1:], spans[0]]
    keys = [keyword_of(s) for s in [*spans, clause.subject]] if clause is not None else []
    found = []
    for topic in topics[:2]:
        key = next(
            (k for k in keys if k and k.lower() not in topic.lower() and k.lower() not in _PRONOUNS), None
        )
        verbs = [w for w in (clause.verb, clause.lemma) if w] if clause is not None else []
        key = key or _last_content(sentence, avoid=topic, verbs=verbs)
        found += [Probe(t.format(topic=topic), key) for t in templates]
    return found


def names_in(sentence: str) -> list[str]:
    """Runs of capitalised words after the sentence's first word ("Dr. Haas", "Honda Jazz")."""
    words = _TOKEN.findall(sentence)
    runs, current = [], []
    for i, w in enumerate(words):
        if i > 0 and w[:1].isupper() and w not in ("I", "I'm", "I've", "I'd", "I'll"):
            current.append(w.rstrip(".:"))
        else:
            if current:
                runs.append(" ".join(current))
            current = []
    if current:
        runs.append(" ".join(current))
    return [r for r in runs if r.lower() not in _DETERMINERS and r.rstrip(".") not in _TITLES]


def keyword_of(span: Sequence[str]) -> str:
    """The word of a span a right answer must say: a number, else a name, else its last content word."""
    words = [w.strip(".,:;!?'\"") for w in span if w.strip(".,:;!?'\"")]
    words = [w for w in words if w not in _TITLES and w.lower() not in _OBJECT_PRONOUNS]
    for w in words:
        if any(ch.isdigit() for ch in w):
            return w
    for w in words[1:] if words and words[0].lower() in _PREPOSITIONS else words:
        if w[:1].isupper() and len(w) > 1 and not w.endswith("'s"):  # "Hana's" is whose, not what
            return w
    content = [w for w in words if w.lower() not in _DETERMINERS | _PREPOSITIONS | _ADVERBS]
    # a participle closing a span qualifies the noun before it: "a mill run (by ...)" -> "mill";
    # not after "my" ("my eggs scrambled" is the wish) nor after a verb ("a cat that was rescued")
    owned = bool(words) and words[0].lower() in ("my", "your", "his", "her", "our", "their")
    while (
        len(content) > 1
        and not owned
        and _past_participle(content[-1])
        and content[-2].lower() not in _FUNCTION_VERBS | {"that", "which", "who"}
    ):
        content.pop()
    return content[-1] if content else (words[-1] if words else "")


def user_name(texts: Iterable[str]) -> str | None:
    """The name a user gave for themselves ("I'm Wen", "My name is Olu", "Olu here"), if any."""
    for text in texts:
        for pattern in _INTRODUCTIONS:
            match = pattern.search(text.strip())
            if match and match.group(1) not in _NOT_NAMES:
                return match.group(1)
    return None


def third_person(sentence: str, name: str) -> str | None:
    """The user's sentence about themselves, said of them by name; None when it is not about them."""
    text = expand(sentence.strip())
    if not re.match(r"^(?:I|My|We|Our)\b", text):
        return None

    def conjugate(match: re.Match[str]) -> str:  # "I keep" -> "Wen keeps", "I am" -> "Wen is"
        return f"{name} {match.group(1)}{_third_singular(match.group(2))}"

    adverbs = "|".join(sorted(_ADVERBS - {"no", "longer"}))
    text = re.sub(rf"\b(?:I|[Ww]e)\s+((?:(?:{adverbs})\s+)*)([a-z]+)\b", conjugate, text)
    text = re.sub(r"\b(?:[Mm]y|[Oo]ur)\b", f"{name}'s", text)
    text = re.sub(r"\b(?:me|us)\b", name, text)
    text = re.sub(r"\b(?:I am|I was)\b", f"{name} is", text)
    return re.sub(r"\bI\b", name, text)


def _subject_end(words: Sequence[str]) -> int | None:
    first = words[0].lower()
    if first in _PRONOUNS:
        return 1
    limit = min(len(words), 8)
    for i in range(1, limit):
        w, low, prev = words[i], words[i].lower(), words[i - 1].lower()
        if low in _COPULA | _MODALS | _HAVE | _DO:
            return i
        plural = prev.endswith("s") and not prev.endswith("'s")  # "my parents live", not "my son's dog"
        plural_head = i >= 2 and plural and words[i - 2].lower() in _DETERMINERS
        if plural_head and w.isalpha() and w.islower() and low not in _PREPOSITIONS | _ADVERBS:
            return i  # "My parents live in Accra"
        if low in _ADVERBS and i + 1 < len(words) and _verb_like(words[i + 1], words[i]):
            return i
        if w[:1].isupper() or prev in _DETERMINERS or prev in _PREPOSITIONS or low in _PREPOSITIONS:
            continue
        if _verb_like(w, prev) and i >= 1:
            return i
    return None


def _verb_like(word: str, prev: str) -> bool:
    low = word.lower()
    if low in _IRREGULAR_PAST or low in _COPULA | _MODALS | _HAVE | _DO:
        return True
    if not word.isalpha() or word[:1].isupper():
        return False
    third = low.endswith("s") and not low.endswith(("ss", "us", "is", "ous"))
    past = low.endswith("ed") and len(low) > 4
    return (third or past) and prev.lower() not in _DETERMINERS


def verb_lemma(verb: str) -> str:
    """The base form of a verb as said: "moved" -> "move", "lives" -> "live", "went" -> "go"."""
    low = verb.lower()
    if low in _IRREGULAR_PAST:
        return _IRREGULAR_PAST[low]
    if low == "has":
        return "have"
    if low.endswith("ed") and len(low) > 4:
        return _past_lemma(low)
    if low.endswith("s") and not low.endswith("ss") and len(low) > 3:
        return _present_lemma(low)
    return low


def _progressive(words: Sequence[str], i: int, subject: Sequence[str]) -> bool:
    """Whether words[i] is the -ing verb of "are expecting twins", not a noun ("My hobby is knitting")."""
    if i + 1 >= len(words) or not words[i].lower().endswith("ing") or len(words[i]) < 5:
        return False
    return subject[-1].lower() in _PRONOUNS or words[i + 1].lower() in _PREPOSITIONS


def _participle(word: str) -> bool:
    low = word.lower()
    return (low.endswith(("ed", "en")) and len(low) > 3) or low in _IRREGULAR_PAST or low in _PARTICIPLES


def _past_participle(word: str) -> bool:
    low = word.lower()
    regular = low.endswith("ed") and not low.endswith("eed") and len(low) > 4  # not "breed", "speed"
    return regular or low in _PARTICIPLES or low in _IRREGULAR_PAST


def _do_support(verb: str, subject: Sequence[str]) -> tuple[str, str]:
    if verb in _IRREGULAR_PAST:
        return "did", _IRREGULAR_PAST[verb]
    if verb.endswith("ed") and len(verb) > 4:
        return "did", _past_lemma(verb)
    head = subject[-1].lower()
    plural = head in ("i", "we", "you", "they") or (head.endswith("s") and head not in ("his", "its"))
    if not plural and verb.endswith("s") and len(verb) > 2:
        return "does", _present_lemma(verb)
    return "do", verb


def _present_lemma(verb: str) -> str:
    if verb == "has":
        return "have"
    if verb.endswith("ies") and len(verb) > 4:
        return verb[:-3] + "y"
    if verb.endswith(("ches", "shes", "sses", "xes", "zes", "oes")):
        return verb[:-2]
    return verb[:-1]


def _past_lemma(verb: str) -> str:
    stem = verb[:-2]
    if verb.endswith("ated") and len(verb) > 5:  # "relocated", "updated"
        return verb[:-1]
    if verb.endswith("ied"):
        return verb[:-3] + "y"
    if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
        return stem[:-1]
    if stem.endswith(("v", "c", "g", "z", "u")) or (
        len(stem) > 2 and stem[-2] in "aeiou" and stem[-3] not in "aeiou" and stem[-1] in "kmszrb"
    ):
        return stem + "e"
    return stem


def _third_singular(verb: str) -> str:
    low = verb.lower()
    fixed = {"am": "is", "are": "is", "were": "was", "have": "has", "do": "does", "go": "goes"}
    if low in fixed:
        return fixed[low]
    if low in _MODALS or low in ("was", "is", "has", "does") or low.endswith("ed") or low in _IRREGULAR_PAST:
        return verb
    if low.endswith("y") and low[-2:-1] not in tuple("aeiou"):
        return verb[:-1] + "ies"
    if low.endswith(("ch", "sh", "ss", "x", "z", "o")):
        return verb + "es"
    return verb + "s"


def _spans(rest: Sequence[str]) -> list[list[str]]:
    """The words after the verb as [object, prepositional span, ...]."""
    spans: list[list[str]] = [[]]
    rest = rest[:MAX_SPAN_WORDS]  # a very long clause asks about its start, in linear time
    for i, w in enumerate(rest):
        after = rest[i + 1] if i + 1 < len(rest) else ""
        if w.lower() == "and" and after.lower().endswith("ed"):  # "deferred X and entered Y": one clause
            break
        if w.lower() in _SPAN_STARTS and spans[-1] and w.lower() != "of":
            spans.append([w])
        else:
            spans[-1].append(w)
    return [
        s
        for s in spans[:MAX_SPANS]
        if s
        and not (
            len(s) <= 2 and s[0].lower() in _SPAN_STARTS and s[-1].lower() in _OBJECT_PRONOUNS | _SPAN_STARTS
        )
    ]


def _wh_word(span: Sequence[str], *, is_object: bool, person_verb: bool = False) -> tuple[str, bool] | None:
    """The wh-word that asks for a span, and whether the preposition trails the question."""
    text = " ".join(span)
    first = span[0].lower()
    if is_object:
        counted = span[1:2] and span[1].islower() and span[1] not in ("and", "or", "to", "-")
        if (first[:1].isdigit() or first in _NUMBER_WORDS) and counted:
            return f"How many {' '.join(span[1:])}", False
        named = all(w[:1].isupper() for w in span) and first not in _DETERMINERS
        if named and person_verb and not span[0].endswith("'s"):
            return "Who", False
        return "What", False
    time_starts = (
        "on",
        "at",
        "in",
        "to",
        "every",
        "since",
        "until",
        "before",
        "after",
        "by",
        "during",
        "last",
        "next",
        "this",
    )
    if (_TIME_WORDS.search(text) and first in time_starts) or first in (
        "yesterday",
        "today",
        "tomorrow",
        "tonight",
    ):
        return "When", False
    if first in _LOCATIVE or first == "from" or first == "to":
        return ("Where", first == "from") if first != "to" else ("Where", False)
    if first == "with":
        return ("Who", True) if len(span) > 1 and span[1][:1].isupper() else ("What", True)
    if first in ("for", "about", "like"):
        return "What", True
    return None


def _lower_function_word(word: str) -> str:
    return word.lower() if word.lower() in _DETERMINERS | {"we", "you", "they", "he", "she", "it"} else word


def _tidy(question: str) -> str:
    question = re.sub(r"\s+", " ", question).strip()
    question = re.sub(r"\bI\b", "I", question)
    return question[:1].upper() + question[1:] + "?"


def _last_content(sentence: str, avoid: str, verbs: Sequence[str] = ()) -> str:
    """The last content word not in ``avoid`` nor a verb of the clause ("" if none): a topic's keyword."""
    words = [w.strip(".,!?:;") for w in _TOKEN.findall(expand(first_clause(sentence)))]
    skip = (
        _DETERMINERS
        | _PREPOSITIONS
        | _ADVERBS
        | _PRONOUNS
        | _OBJECT_PRONOUNS
        | _SPAN_STARTS
        | _FUNCTION_VERBS
    )
    content = [
        w
        for w in words
        if len(w) > 1 and w.lower() not in skip and w.lower() not in avoid.lower() and w not in verbs
    ]
    return content[-1] if content else ""


_PHRASE_START = frozenset("the a an my our your his her their this that these those no".split())
_PHRASE_STOP = (
    _DETERMINERS | _PREPOSITIONS | _ADVERBS | _PRONOUNS | _OBJECT_PRONOUNS | _FUNCTION_VERBS | _SPAN_STARTS
) | {"and", "or", "but", "so", "because", "since", "if", "when", "while", "than", "too", "ever"}
# Words that announce a statement rather than say what it is about: "a correction on the buns".
_ANNOUNCING = frozenset("correction update news change thing question plan note reminder".split())
_NOT_NAMED = frozenset("nobody somebody everybody everyone someone it that there here what who let".split())


def noun_phrases(sentence: str) -> list[str]:
    """What a sentence the clause parser cannot read is about: phrases a determiner opens ("the
    buns", "a 5:15 start", "no emojis"), names, and a possessive name that opens it ("Dario's on a
    5:15 start now"). Written by hand because no tagger ships offline with the default install."""
    tokens = [t for t in _TOKEN.findall(sentence) if t != ","]
    found: list[str] = []
    first = tokens[0] if tokens else ""
    stem = re.sub(r"['\u2019]s$", "", first)
    if stem != first and stem[:1].isupper() and stem.lower() not in _NOT_NAMED | _PRONOUNS:
        found.append(stem)
    i = 0
    while i < len(tokens):
        if tokens[i].lower().strip(".:!?;") not in _PHRASE_START or tokens[i][-1] in ".:!?;":
            i += 1
            continue
        phrase = [tokens[i].lower()]
        i += 1
        while i < len(tokens) and len(phrase) < 4:
            word = tokens[i].strip(".:!?;")
            if not word or word.lower() in _PHRASE_STOP:
                break
            phrase.append(word)
            i += 1
            if tokens[i - 1][-1] in ".:!?;":
                break
        if len(phrase) > 1 and phrase[-1].lower() not in _ANNOUNCING:
            found.append(" ".join(phrase[1:]) if phrase[0] == "no" else " ".join(phrase))
    found += [n for n in names_in(sentence) if n.lower() not in _NOT_NAMED and n != stem]
    return list(dict.fromkeys(found))


_NAMING = re.compile(
    r"\b(?P<det>[Aa]n?|[Tt]he|[Mm]y|[Oo]ur)\s+(?:[a-z][\w-]*\s+){0,2}?(?P<noun>[a-z][\w-]*)"
    r"(?:\s*,?\s+(?:called|named)\s+|,\s+(?=[A-Z][\w'\u2019-]*,))"  # "a cat called Miso", "my dog, Rex,"
    r"(?P<name>[A-Z][\w'\u2019-]*(?:\s+[A-Z][\w'\u2019-]*)*)"
)


def naming_questions(sentence: str, owner: str | None = None) -> list[Probe]:
    """The questions a naming phrase answers ("I run a bakery called Larkspur", "Our cat, named
    Miso, ..."): "What is my bakery called?", "What's the name of our cat?". Only of what the
    speaker has; ``owner`` names them in the question ("Hana's"), else "my" or "our" as they said."""
    found = []
    speaker = re.match(r"\s*(I|We)\b", sentence)
    for match in _NAMING.finditer(sentence):
        det = match.group("det").lower()
        if det in ("a", "an", "the") and not speaker:
            continue  # "Rui met a man called Tom": not the speaker's
        whose = owner or ("our" if det == "our" or (speaker and speaker.group(1) == "We") else "my")
        noun, name = match.group("noun"), match.group("name")
        found += [
            Probe(f"What is {whose} {noun} called?", name.split()[0]),
            Probe(f"What is the name of {whose} {noun}?", name.split()[0]),
        ]
    return found
