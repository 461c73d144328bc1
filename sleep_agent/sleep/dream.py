"""Dreaming: practice tasks the model sets itself from its memories, checked against the source.

A sleep first trains a draft adapter on what was said (extraction). Dreaming then writes practice
questions from the new memories and from a sample of earlier ones: new phrasings, inverse and
compositional questions that join two memories, counterfactual checks ("Does Aria live in
Lisbon?"), rehearsal of older memories, and, for text no rule understands (a passage), cloze
questions on its names and numbers plus questions the model writes itself. Each dream is answered
twice: by the teacher, the base model with the source memory in its context, and by the student,
the draft adapter without it. Answers are scored against the source memory, never against what a
model believes. The dreams the teacher gets right and the student does not yet are kept (up to a
budget) and trained on the teacher's verified answer, rejection-sampling fine-tuning in the manner
of ReST, continuing the draft. The result is a candidate like any other: the gate decides.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from sleep_agent.answers import NUMBER_WORDS, mentions, similar, words
from sleep_agent.sleep import gate
from sleep_agent.sleep.consolidate import ChatSample
from sleep_agent.sleep.extract import Fact
from sleep_agent.sleep.settings import DreamConfig, DreamKind

Ask = Callable[[str], str]

# Phrasings for dreams, kept apart from the questions extraction trains, from the gate's held-out
# question and from the evaluation's unseen phrasings (tests/test_dream.py checks all three).
PHRASINGS: dict[str, list[str]] = {
    "lives_in": ["In what city does {s} live?", "Where has {s} made a home?"],
    "works_as": ["What kind of work does {s} do?", "What is {s}'s occupation?"],
    "favorite_color": ["Which colour is {s}'s favourite?", "Name {s}'s favorite color."],
    "favorite_food": ["What food does {s} enjoy most?", "Name {s}'s favorite food."],
    "age": ["How old is {s} now?", "Tell me {s}'s age."],
    "speaks": ["What language is spoken by {s}?", "Name a language {s} speaks."],
    "studied": ["Which subject did {s} study?", "What did {s} major in?"],
    "graduated_in": ["Which year did {s} graduate?", "What was {s}'s graduation year?"],
    "allergic_to": ["What is {s}'s allergy?", "What must {s} stay away from because of allergies?"],
    "learning": ["What skill is {s} learning?", "What is {s} trying to learn at the moment?"],
}
# "the person {descriptor}" picks someone out by one memory, for inverse and compositional dreams.
DESCRIPTORS: dict[str, str] = {
    "lives_in": "who lives in {o}",
    "works_as": "who works as {a}{o}",
    "favorite_color": "whose favorite color is {o}",
    "favorite_food": "whose favorite food is {o}",
    "age": "who is {o} years old",
    "speaks": "who speaks {o}",
    "studied": "who studied {o}",
    "graduated_in": "who graduated in {o}",
    "allergic_to": "who is allergic to {o}",
    "learning": "who is learning {o}",
}
# A question about "{s}" for the second memory of a compositional dream.
ABOUT: dict[str, str] = {
    "lives_in": "Where does {s} live?",
    "works_as": "What does {s} work as?",
    "favorite_color": "What is the favorite color of {s}?",
    "favorite_food": "What is the favorite food of {s}?",
    "age": "How old is {s}?",
    "speaks": "What language does {s} speak?",
    "studied": "What did {s} study?",
    "graduated_in": "When did {s} graduate?",
    "allergic_to": "What is {s} allergic to?",
    "learning": "What is {s} learning?",
}
# Yes/no checks; asked with the true object and with another memory's object (counterfactual).
CHECKS: dict[str, str] = {
    "lives_in": "Does {s} live in {o}?",
    "works_as": "Does {s} work as {a}{o}?",
    "favorite_color": "Is {s}'s favorite color {o}?",
    "favorite_food": "Is {s}'s favorite food {o}?",
    "age": "Is {s} {o} years old?",
    "speaks": "Does {s} speak {o}?",
    "studied": "Did {s} study {o}?",
    "graduated_in": "Did {s} graduate in {o}?",
    "allergic_to": "Is {s} allergic to {o}?",
    "learning": "Is {s} learning {o}?",
}
_NEGATION = re.compile(r"\b(no|not|never|doesn't|does not|isn't|is not|didn't|did not)\b|n't\b", re.I)
_AFFIRM = re.compile(r"^\W*(yes|yeah|correct|that's right|right)\b", re.I)
_STOP = set(
    "the a an of in on at to and or is are was were be been by for with as that this it its from "
    "which who whom what when where why how their there they he she his her them do does did".split()
)


@dataclass(frozen=True)
class Dream:
    """A practice question, the memory it is about, and what a right answer must say."""

    kind: DreamKind
    question: str
    source: str  # the memory text given to the teacher
    expected: tuple[str, ...] = ()  # words a right answer contains; () means: grounded in the source
    polarity: bool | None = None  # for yes/no checks: is the right answer yes?
    episode_id: str = ""


@dataclass
class DreamStats:
    """What one night of dreaming did, for the report."""

    generated: Counter = field(default_factory=Counter)
    teacher_right: Counter = field(default_factory=Counter)
    student_right: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)

    def metrics(self) -> dict[str, object]:
        total, kept = sum(self.generated.values()), sum(self.kept.values())
        return {
            "generated": total,
            "teacher_right": sum(self.teacher_right.values()),
            "student_right": sum(self.student_right.values()),
            "kept": kept,
            "yield": round(kept / total, 3) if total else 0.0,
            "by_kind": {
                k: {
                    "generated": self.generated[k],
                    "teacher_right": self.teacher_right[k],
                    "kept": self.kept[k],
                }
                for k in self.generated
            },
        }


@dataclass(frozen=True)
class Night:
    """The kept dreams with the teacher's verified answers, what the student said, and the counts."""

    kept: list[tuple[Dream, str]]
    stats: DreamStats
    said: dict[str, str] = field(default_factory=dict)  # question -> the student's (wrong) answer

    def samples(self, *, distill: bool = False, on_policy: bool = False) -> list[ChatSample]:
        """The teacher's verified answers to learn; with ``distill``, each also carries the teacher's
        prompt (the memory in context) for the distillation term; with ``on_policy``, the student's
        own answers are added as distillation-only samples: the teacher's view of what it said."""
        samples = []
        for d, answer in self.kept:
            question = [{"role": "user", "content": d.question}]
            teacher = [{"role": "user", "content": teacher_prompt(d)}] if distill or on_policy else None
            samples.append(ChatSample(question, answer, teacher_prompt=teacher))
            said = self.said.get(d.question, "").strip()
            if on_policy and said:
                samples.append(ChatSample(question, said, teacher_prompt=teacher, imitate=False))
        return samples


# -- generation ------------------------------------------------------------------------------


def generate(
    new: Sequence[Fact],
    earlier: Sequence[Fact],
    config: DreamConfig,
    *,
    write: Ask | None = None,
) -> list[Dream]:
    """Dreams from the new memories and a sample of earlier ones; ``write`` lets the model write some."""
    rng = random.Random(config.seed)
    kinds = set(config.kinds)
    about_people = [f for f in [*new, *earlier] if f.subject and f.relation in PHRASINGS]
    dreams: list[Dream] = []
    for fact in new:
        if fact.subject and fact.relation in PHRASINGS:
            if "paraphrase" in kinds:
                dreams += _paraphrases(fact, "paraphrase", config.per_memory)
            if "inverse" in kinds:
                dreams += _inverse(fact, about_people)
            if "check" in kinds:
                dreams += _checks(fact, about_people, rng)
        elif fact.relation is None and "cloze" in kinds:
            dreams += cloze_dreams(fact, config.per_memory)
    if "compositional" in kinds:
        dreams += _compositions(new, about_people, rng, config.compositions)
    if "rehearsal" in kinds and earlier:
        sample = rng.sample(list(earlier), min(config.rehearse, len(earlier)))
        for fact in sample:
            if fact.subject and fact.relation in PHRASINGS:
                dreams += _paraphrases(fact, "rehearsal", 1)
            elif fact.relation is None:
                dreams += [replace(d, kind="rehearsal") for d in cloze_dreams(fact, 1)]
    if "self_question" in kinds and write is not None:
        dreams += self_questions(new, write, config.per_memory)
    return _unique(dreams)


def _paraphrases(fact: Fact, kind: DreamKind, n: int) -> list[Dream]:
    phrasings = PHRASINGS[fact.relation][:n]  # type: ignore[index]
    return [
        Dream(kind, p.format(s=fact.subject), fact.statement, (fact.keyword,), episode_id=fact.episode_id)
        for p in phrasings
    ]


def _descriptor(fact: Fact) -> str:
    return DESCRIPTORS[fact.relation].format(o=fact.keyword, a=_article(fact))  # type: ignore[index]


def _picks_out_one(fact: Fact, people: Sequence[Fact]) -> bool:
    """Does this memory name one person only? Otherwise a question built on it has no single answer."""
    same = [f for f in people if f.relation == fact.relation and _norm(f.keyword) == _norm(fact.keyword)]
    return len({f.subject for f in same}) == 1


def _inverse(fact: Fact, people: Sequence[Fact]) -> list[Dream]:
    if not _picks_out_one(fact, people):
        return []
    question = f"Who is the person {_descriptor(fact)}?"
    return [Dream("inverse", question, fact.statement, (fact.subject,), episode_id=fact.episode_id)]  # type: ignore[arg-type]


def _checks(fact: Fact, people: Sequence[Fact], rng: random.Random) -> list[Dream]:
    template = CHECKS[fact.relation]  # type: ignore[index]
    article = _article(fact)
    dreams = [
        Dream(
            "check",
            template.format(s=fact.subject, o=fact.keyword, a=article),
            fact.statement,
            (fact.keyword,),  # a restatement of the memory counts as "yes"
            True,
            fact.episode_id,
        )
    ]
    others = sorted(
        {f.keyword for f in people if f.relation == fact.relation and _norm(f.keyword) != _norm(fact.keyword)}
    )
    if others:
        wrong = rng.choice(others)
        question = template.format(s=fact.subject, o=wrong, a=_article_for(wrong) if article else "")
        dreams.append(Dream("check", question, fact.statement, (), False, fact.episode_id))
    return dreams


def _compositions(new: Sequence[Fact], people: Sequence[Fact], rng: random.Random, limit: int) -> list[Dream]:
    """Two memories about one person: pick them out by one, ask about the other."""
    by_subject: dict[str, list[Fact]] = {}
    for fact in people:
        by_subject.setdefault(fact.subject, []).append(fact)  # type: ignore[arg-type]
    new_ids = {id(f) for f in new}
    dreams = []
    for facts in by_subject.values():
        for first in [f for f in facts if _picks_out_one(f, people)]:
            for second in facts:
                if first.relation == second.relation or not (id(first) in new_ids or id(second) in new_ids):
                    continue
                question = ABOUT[second.relation].format(s=f"the person {_descriptor(first)}")  # type: ignore[index]
                source = f"{first.statement} {second.statement}"
                dreams.append(
                    Dream("compositional", question, source, (second.keyword,), episode_id=second.episode_id)
                )
    rng.shuffle(dreams)
    return dreams[:limit]


# Spans a cloze question can be asked about: numbers (digits or small number words) and runs of
# capitalised words that do not start the sentence. Hand-written because no library in reach
# does question generation without a model larger than the one being trained.
_SPAN = re.compile(
    r"\b(\d[\d,.]*(?:\s?%)?(?![\w/–-])|(?:" + "|".join(NUMBER_WORDS[2:]) + r")\b"
    r"|[A-Z][\w'-]*(?:\s+(?:of\s+|the\s+|de\s+)?[A-Z0-9][\w'-]*)*)",
)
_CLAUSE = re.compile(r";\s+|,\s+(?=(?:while|but|and|which|although|whereas|having|as)\b)")


def cloze_dreams(fact: Fact, n: int) -> list[Dream]:
    """Wh-questions made by hiding a name or number of the sentence: "... in what year?".

    Asked within the clause that holds the span, so that a long sentence gives short questions.
    """
    dreams, seen = [], set()
    for clause in _CLAUSE.split(fact.statement.rstrip(" .!")):
        for match in _SPAN.finditer(clause):
            start, span = match.start(), match.group(0).strip(" ,.")
            after = clause[match.end() :].lstrip(" ")
            if start == 0:
                subject = _subject(span, after)
                if subject and _norm(subject) not in seen:  # "The Broncos made ..." -> "What made ...?"
                    seen.add(_norm(subject))
                    dreams.append(
                        Dream(
                            "cloze",
                            _tidy(f"What {after}?"),
                            fact.statement,
                            (subject,),
                            episode_id=fact.episode_id,
                        )
                    )
                # otherwise the clause's own capital is not a name: "Though Chopin" -> "Chopin"
                first, _, span = span.partition(" ")
                start += len(first) + 1
            if len(span) < 2 or _norm(span) in _STOP | seen:
                continue
            seen.add(_norm(span))
            before = clause[:start].rstrip()
            if len(f"{before} {after}".split()) < 3:
                continue
            question = f"{before} {_wh(span, after)} {after}".strip().rstrip(",;:") + "?"
            dreams.append(
                Dream("cloze", _tidy(question), fact.statement, (span,), episode_id=fact.episode_id)
            )
            if len(dreams) >= n:
                return dreams
    return dreams


_VERB = re.compile(
    r"^(?:is|was|were|are|has|had|have|became|becomes|made|makes|won|gave|took|led|built|founded|"
    r"created|wrote|played|remains|remained|includes|included|holds|held)\b"
)


def _subject(span: str, after: str) -> str | None:
    """The name a clause starts with, when a verb follows it: asked as "What <verb> ...?"."""
    first, _, rest = span.partition(" ")
    if first.lower() in ("the", "a", "an"):
        span = rest
    elif rest or first.lower() in _STOP or first.endswith("ly"):  # "Though Chopin ...": not a subject
        return None
    if not span or len(span) < 2 or not _VERB.match(after) or len(after.split()) < 3:
        return None
    return span


def _wh(span: str, after: str) -> str:
    if re.fullmatch(r"1\d{3}|20\d{2}", span):
        return "what year"
    if span[0].isdigit() or span.lower() in NUMBER_WORDS:
        return "how many" if re.match(r"[a-z]+s\b", after) else "what number"
    return "what"


def self_questions(new: Sequence[Fact], write: Ask, n: int) -> list[Dream]:
    """The model writes questions about each passage it was told (facts no rule understands)."""
    passages: dict[str, list[str]] = {}
    for fact in new:
        if fact.relation is None:
            passages.setdefault(fact.episode_id, []).append(fact.statement)
    texts = {ep: " ".join(sentences) for ep, sentences in passages.items()}
    prompts = [
        f"Text: {t}\n\nWrite {n} questions that this text answers, one per line." for t in texts.values()
    ]
    dreams = []
    for (episode_id, text), written in zip(texts.items(), ask_all(write, prompts), strict=True):
        questions = [re.sub(r"^\s*(?:\d+[.)]|[-*])\s*", "", line).strip() for line in written.splitlines()]
        for q in [q for q in questions if q.endswith("?") and len(q.split()) >= 4][:n]:
            dreams.append(Dream("self_question", q, text, episode_id=episode_id))
    return dreams


# -- verification ------------------------------------------------------------------------------


def verify(dream: Dream, answer: str, fuzzy: float = 0.8) -> bool:
    """Does ``answer`` agree with the dream's source memory?"""
    if not answer.strip():
        return False
    if dream.polarity is not None:
        negated = bool(_NEGATION.search(answer[:40]))
        if not dream.polarity:
            return negated
        # "Yes." or a plain restatement ("Aria lives in Portland.") affirms; any denial does not
        said_it = bool(dream.expected) and all(mentions(answer, e, fuzzy) for e in dream.expected)
        return not negated and (bool(_AFFIRM.search(answer)) or said_it)
    if dream.expected:
        return all(mentions(answer, e, fuzzy) for e in dream.expected)
    return grounded(answer, dream.source, dream.question, fuzzy)


def grounded(answer: str, source: str, question: str, fuzzy: float = 0.8) -> bool:
    """An answer with no given keyword: its content words come from the source, and it adds some."""
    content = [w for w in words(answer) if w not in _STOP and len(w) > 1]
    source_words, asked = set(words(source)), set(words(question))
    if not content:
        return False
    found = [w for w in content if any(similar(w, s, fuzzy) for s in source_words)]
    informative = [w for w in found if w not in asked]
    return len(found) / len(content) >= fuzzy and bool(informative)


def judge_prompt(dream: Dream, answer: str) -> str:
    return (
        f"Text: {dream.source}\nQuestion: {dream.question}\nAnswer: {answer}\n\n"
        "Does the text support this answer? Reply yes or no."
    )


# -- the night: answer, verify, select ---------------------------------------------------------


def teacher_prompt(dream: Dream) -> str:
    if dream.polarity is not None:
        return f"{dream.source}\n\nAnswer yes or no, then say why: {dream.question}"
    return f"{dream.source}\n\nAnswer in a few words: {dream.question}"


def dream_night(
    dreams: Sequence[Dream],
    teacher: Ask,
    student: Ask,
    config: DreamConfig,
    *,
    judge: Ask | None = None,
) -> Night:
    """Answer every dream twice, keep what the teacher gets right and the student does not."""
    stats = DreamStats(generated=Counter(d.kind for d in dreams))
    teacher_answers = ask_all(teacher, [teacher_prompt(d) for d in dreams])
    verified = [
        (d, trim(a, d, config.fuzzy))
        for d, a in zip(dreams, teacher_answers, strict=True)
        if verify(d, a, config.fuzzy)
    ]
    if judge is not None and verified:
        verdicts = ask_all(judge, [judge_prompt(d, a) for d, a in verified])
        verified = [pair for pair, v in zip(verified, verdicts, strict=True) if _AFFIRM.search(v)]
    stats.teacher_right = Counter(d.kind for d, _ in verified)
    student_answers = ask_all(student, [d.question for d, _ in verified])
    unknown, said = [], {}
    for (d, answer), student_answer in zip(verified, student_answers, strict=True):
        if verify(d, student_answer, config.fuzzy):
            stats.student_right[d.kind] += 1
        else:
            unknown.append((d, answer))
            said[d.question] = student_answer
    kept = _within_budget(unknown, config.budget, random.Random(config.seed))
    stats.kept = Counter(d.kind for d, _ in kept)
    return Night(kept, stats, {d.question: said[d.question] for d, _ in kept})


def trim(answer: str, dream: Dream, fuzzy: float = 0.8) -> str:
    """The first sentence of a verified answer when it alone still passes: shorter targets, same facts."""
    first = re.split(r"(?<=[.!?])\s|\n", answer.strip(), maxsplit=1)[0].strip()
    return first if first and verify(dream, first, fuzzy) else answer.strip()


def _within_budget(
    pairs: list[tuple[Dream, str]], budget: int, rng: random.Random
) -> list[tuple[Dream, str]]:
    # round-robin over kinds, so that one plentiful kind does not crowd out the others
    by_kind: dict[str, list[tuple[Dream, str]]] = {}
    for pair in pairs:
        by_kind.setdefault(pair[0].kind, []).append(pair)
    for group in by_kind.values():
        rng.shuffle(group)
    kept: list[tuple[Dream, str]] = []
    while len(kept) < budget and any(by_kind.values()):
        for group in by_kind.values():
            if group and len(kept) < budget:
                kept.append(group.pop())
    return kept


def ask_all(ask: Ask, prompts: Sequence[str]) -> list[str]:
    return gate.ask_all(ask, prompts, workers=16, stage="dream")  # short prompts: a larger batch


# -- small text helpers ------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(words(text))


def _tidy(question: str) -> str:
    question = re.sub(r"\s+([,;:?])", r"\1", re.sub(r"\s+", " ", question))
    question = re.sub(r"^(?:and|but|while|which|although|whereas|as)\s+", "", question, flags=re.I)
    return question[0].upper() + question[1:]


def _article(fact: Fact) -> str:
    found = re.search(r"works? as (an? )", fact.statement)
    return found.group(1) if found else ""


def _article_for(word: str) -> str:
    return "an " if word[:1].lower() in "aeiou" else "a "


def _unique(dreams: list[Dream]) -> list[Dream]:
    seen: set[str] = set()
    out = []
    for d in dreams:
        if d.question.lower() not in seen:
            seen.add(d.question.lower())
            out.append(d)
    return out
