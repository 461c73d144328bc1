"""Extract: statements become question-answer pairs in several phrasings.

Two paths. A fast path of rules for the relations people state most (where someone lives, works,
what they like...), and for every other statement knowledge seeding from the text itself
(``phrasings.py``): wh-questions over its spans, topic questions over its names and subject, the
user's words said back in the second person. When the user has said their name, statements about
themselves are also trained in the third person ("Where does Wen keep the spare key?"). Each fact
keeps phrasings out of training, for the gate to test recall on words the adapter never saw.
Successful tool-using episodes become behaviour-cloning samples: each assistant step given what
came before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from sleep_agent.episodes import Episode, EpisodePart
from sleep_agent.sleep import phrasings, records
from sleep_agent.sleep.consolidate import ChatSample
from sleep_agent.sleep.critic import Statement, is_successful_trajectory
from sleep_agent.sleep.phrasings import Probe

_NAME = r"(?P<s>(?!I\b)[A-Z][\w'-]*(?: [A-Z][\w'-]*)?)"  # a name, never "I"
_OBJ = r"(?P<o>[^.!?]+?)"

# (relation, pattern, questions about the subject, answer template). {s}: subject, {o}: object.
# The last question of each rule is held out of training for the gate.
RULES: list[tuple[str, str, list[str], str]] = [
    (
        "lives_in",
        rf"{_NAME} lives in {_OBJ}[.!]?$",
        ["Where does {s} live?", "Which city does {s} live in?", "Where is {s}'s home?"],
        "{s} lives in {o}.",
    ),
    (
        "works_as",
        rf"{_NAME} works as (?:an? )?{_OBJ}[.!]?$",
        ["What does {s} work as?", "What is {s}'s job?", "What is {s}'s profession?"],
        "{s} works as {a}{o}.",
    ),
    (
        "favorite_color",
        rf"{_NAME}'s favou?rite colou?r is {_OBJ}[.!]?$",
        [
            "What is {s}'s favorite color?",
            "Which color does {s} like best?",
            "What color does {s} like most?",
        ],
        "{s}'s favorite color is {o}.",
    ),
    (
        "favorite_food",
        rf"{_NAME}'s favou?rite food is {_OBJ}[.!]?$",
        ["What is {s}'s favorite food?", "Which food does {s} like best?", "What does {s} like to eat most?"],
        "{s}'s favorite food is {o}.",
    ),
    (
        "age",
        rf"{_NAME} is aged (?P<o>\d+)[.!]?$",
        ["How old is {s}?", "What is {s}'s age?", "How many years old is {s}?"],
        "{s} is aged {o}.",
    ),
    (
        "age",
        rf"{_NAME} is (?P<o>\d+) years old[.!]?$",
        ["How old is {s}?", "What is {s}'s age?", "How many years old is {s}?"],
        "{s} is {o} years old.",
    ),
    (
        "speaks",
        rf"{_NAME} speaks {_OBJ}[.!]?$",
        ["What language does {s} speak?", "Which language does {s} speak?", "What language can {s} speak?"],
        "{s} speaks {o}.",
    ),
    (
        "studied",
        rf"{_NAME} studied {_OBJ}[.!]?$",
        ["What did {s} study?", "What subject did {s} study?", "What was {s}'s field of study?"],
        "{s} studied {o}.",
    ),
    (
        "graduated_in",
        rf"{_NAME} graduated in {_OBJ}[.!]?$",
        [
            "When did {s} graduate?",
            "In what year did {s} graduate?",
            "What year did {s} finish their studies?",
        ],
        "{s} graduated in {o}.",
    ),
    (
        "allergic_to",
        rf"{_NAME} is allergic to {_OBJ}[.!]?$",
        [
            "What is {s} allergic to?",
            "What allergy does {s} have?",
            "What should {s} avoid because of an allergy?",
        ],
        "{s} is allergic to {o}.",
    ),
    (
        "learning",
        rf"{_NAME} is learning {_OBJ}[.!]?$",
        ["What is {s} learning?", "What is {s} currently learning?", "What is {s} studying these days?"],
        "{s} is learning {o}.",
    ),
    (
        "lives_in",
        r"^I live in (?P<o>[^.!?]+?)[.!]?$",
        ["Where do I live?", "Which city do I live in?", "Where is my home?"],
        "You live in {o}.",
    ),
    (
        "works_as",
        r"^I work as (?:an? )?(?P<o>[^.!?]+?)[.!]?$",
        ["What do I work as?", "What is my job?", "What is my profession?"],
        "You work as {a}{o}.",
    ),
    (
        "allergic_to",
        r"^I am allergic to (?P<o>[^.!?]+?)[.!]?$",
        ["What am I allergic to?", "What allergy do I have?", "What should I avoid because of an allergy?"],
        "You are allergic to {o}.",
    ),
    (
        "mine",
        r"^My (?P<k>[\w' -]+?) is (?:called|named) (?P<o>[^.!?]+?)[.!]?$",
        ["What is my {k} called?", "Do you remember my {k}'s name?", "What is the name of my {k}?"],
        "Your {k} is called {o}.",
    ),
    (
        "mine",
        r"^My (?P<k>[\w' -]+?) is (?!\w+ing (?:to|in|at|into|from|for|with|on)\b)(?P<o>[^.!?]+?)[.!]?$",
        ["What is my {k}?", "Do you remember my {k}?", "Tell me my {k}."],
        "Your {k} is {o}.",
    ),
]
_COMPILED = [(r, re.compile(p), q, a) for r, p, q, a in RULES]
# What a user's own fact is about, for its open question.
_FIRST_PERSON_TOPICS = {"lives_in": "where I live", "works_as": "my job", "allergic_to": "my allergies"}


@dataclass(frozen=True)
class Fact:
    """One statement, the questions that should bring it back, and the answer to train."""

    statement: str
    answer: str
    questions: tuple[str, ...]  # trained
    held_out: str | None  # asked by the gate, never trained
    keyword: str  # what a right answer must contain
    episode_id: str
    relation: str | None = None  # the rule that matched (None: no rule, the sentence is the answer)
    subject: str | None = None  # who it is about, when a third person is named
    pairs: tuple[tuple[str, str], ...] = ()  # more (question, answer) to train: the third person
    probes: tuple[Probe, ...] = ()  # more held-out questions for the gate, each with its keyword
    source: str = "user"  # whose words: "user" or "tool"

    def samples(self) -> list[ChatSample]:
        return [ChatSample.qa(q, self.answer, episode_id=self.episode_id) for q in self.questions] + [
            ChatSample.qa(q, a, episode_id=self.episode_id) for q, a in self.pairs
        ]

    def checks(self) -> list[Probe]:
        """Every held-out question the gate asks of this fact."""
        held = [Probe(self.held_out, self.keyword)] if self.held_out else []
        return held + list(self.probes)


# Topic questions: trained templates, then the one held out for the gate.
TOPIC_TEMPLATES = ("What do you know about {topic}?", "Tell me about {topic}.")
TOPIC_HELD_OUT = "What did I tell you about {topic}?"
MAX_QUESTIONS = 5  # trained questions per fact in the user's words (the third person adds up to 3)


def extract_facts(statements: Sequence[Statement], *, user: str | None = None) -> list[Fact]:
    """Facts of ``statements``; ``user``: the name the user gave, for third-person phrasings."""
    facts: list[Fact] = []
    for st in statements:
        record = records.parse_record(st.text)
        if record is not None:  # a tool's "label: field, field" line: a question per field
            facts.append(replace(_record_fact(record, st.episode_id), source=st.source))
            continue
        sentence = _strip_preamble(st.text.strip())
        said = phrasings.reported(sentence)  # "My doctor said my iron is low": "my iron is low"
        fact = _by_rule(phrasings.expand(said or sentence), st.episode_id)
        if fact is not None and said:  # the answer keeps who said it
            fact = replace(fact, statement=sentence, answer=second_person(sentence))
        fact = fact or _seeded(sentence, st.episode_id, user)
        if fact is None:  # "Total chaos.", "Morning!": no question would bring it back
            continue
        if user and st.source == "user":
            fact = _with_third_person(fact, sentence, user)
        facts.append(replace(fact, source=st.source))
    return facts


MAX_RECORD_PROBES = 2  # held-out field questions the gate asks of one record


def _record_fact(record: records.Record, episode_id: str) -> Fact:
    """A record trained by its topic and field by field; field questions worded apart are held out."""
    asked = [(f, *records.field_questions(record, f)) for f in record.fields]
    first, *more = [Probe(held, f.value.split()[0].strip("#£$€")) for f, _, held in asked]
    return Fact(
        record.text + ".",
        record.text + ".",
        tuple(records.topic_questions(record)),
        first.question,
        first.keyword,
        episode_id,
        pairs=tuple((trained, records.field_answer(record, f)) for f, trained, _ in asked),
        probes=tuple(more[: MAX_RECORD_PROBES - 1]),
    )


def _seeded(sentence: str, episode_id: str, user: str | None) -> Fact | None:
    """Knowledge seeding for a statement no rule knows: questions drawn from its own words."""
    request = phrasings.as_request(sentence)
    if request:  # "Please never suggest milk" is said back as what was asked
        answer = "You asked me to " + _said_back(request) + "."
    else:
        answer = second_person(sentence)
    if user and phrasings.user_name([sentence]) == user:  # "I'm Wen." is the user's name
        asked = ["What is my name?", "Who am I?", "What am I called?"]
        return Fact(sentence, f"Your name is {user}.", tuple(asked[:-1]), asked[-1], user, episode_id)
    said = _asked_about(sentence, answer, episode_id)
    wh = phrasings.questions_of(said)
    topics = phrasings.topic_questions(said, TOPIC_TEMPLATES)
    # a held-out topic question needs a keyword the question does not already say
    probes = [p for p in phrasings.topic_questions(said, (TOPIC_HELD_OUT,))[:1] if p.keyword]
    if not probes and len(wh) > 1:  # no topic to ask about: a span is held out instead
        probes.append(wh.pop())
    named = [p.question for p in phrasings.naming_questions(said)]  # "What is my bakery called?"
    trained = [*named, *[p.question for p in [*wh, *topics]][:MAX_QUESTIONS]]
    if not trained:
        return _about_me(said, answer, episode_id) or _by_phrases(said, answer, episode_id)
    if not probes:  # a fact with nothing held out is not gated; its keyword still says what it names
        keyword = next((p.keyword for p in [*wh, *topics]), None) or _last_word(sentence)
        return Fact(sentence, answer, tuple(trained), None, keyword, episode_id)
    first, *more = probes
    return Fact(
        sentence, answer, tuple(trained), first.question, first.keyword, episode_id, probes=tuple(more)
    )


def _by_phrases(sentence: str, answer: str, episode_id: str) -> Fact | None:
    """A statement no clause reading gives a question ("Dario's on a 5:15 start now", "No emojis,
    ever."), asked about by its noun phrases, so that no update or preference is dropped unlearned;
    None when it names nothing ("Total chaos.")."""
    topics = phrasings.noun_phrases(sentence)
    if not topics:
        return None
    numbers = [w.strip(".,!?;:") for w in sentence.split() if any(ch.isdigit() for ch in w)]
    keyword = numbers[0] if numbers else topics[0].split()[-1]  # what is said of it, else what it is
    asked = [t.format(topic=topic) for topic in topics[:2] for t in TOPIC_TEMPLATES]
    held = next((t for t in topics if keyword.lower() not in t.lower()), None)
    held_out = TOPIC_HELD_OUT.format(topic=held) if held and keyword else None
    return Fact(sentence, answer, tuple(asked[:MAX_QUESTIONS]), held_out, keyword, episode_id)


def _asked_about(sentence: str, answer: str, episode_id: str) -> str:
    """What the questions ask about: what a reported statement reports ("Wen told me she is
    allergic to peanuts" is asked about Wen), unless that gives no question ("the doctor said it's
    a sprain"), in which case the sentence itself."""
    said = phrasings.reported(sentence)
    if said is None:
        return sentence
    asks = (
        phrasings.questions_of(said)
        or phrasings.topic_questions(said, TOPIC_TEMPLATES)
        or _about_me(said, answer, episode_id)
    )
    return said if asks else sentence


# What a user says they are ("I'm vegetarian", "We're married") has no wh-question of its own.
ABOUT_ME = ("What do you know about me?", "Tell me about myself.")
ABOUT_ME_HELD_OUT = "What did I tell you about myself?"


def _about_me(sentence: str, answer: str, episode_id: str) -> Fact | None:
    """A user's statement of what they are, asked about them; None for chit-chat ("Total chaos.")."""
    clause = phrasings.parse(sentence)
    if clause is None or clause.subject[-1].lower() not in ("i", "we") or not clause.spans[0]:
        return None
    keyword = phrasings.keyword_of(clause.spans[0])
    asked = list(ABOUT_ME)
    if "not" not in (m.lower() for m in clause.modifiers):  # "Am I vegetarian?" -> "Yes, ..."
        asked.insert(0, phrasings.yes_no_question(clause))
        answer = f"Yes. {answer}"
    return Fact(sentence, answer, tuple(asked), ABOUT_ME_HELD_OUT, keyword, episode_id)


def _with_third_person(fact: Fact, sentence: str, user: str) -> Fact:
    """The same fact asked about the user by name, with the answer said of them."""
    third = phrasings.third_person(sentence, user)
    if third is None or fact.answer == f"Your name is {user}.":
        return fact
    asked = phrasings.questions_of(third)
    clause = phrasings.parse(third)
    if not asked and fact.answer.startswith("Yes. ") and clause is not None:  # "Is Wen vegetarian?"
        return replace(fact, pairs=fact.pairs + ((phrasings.yes_no_question(clause), f"Yes. {third}"),))
    if not asked:
        return fact
    # the last question is held out, the only one too when the fact has nothing else held out
    held = asked.pop() if len(asked) > 1 or not fact.checks() else None
    pairs = tuple((p.question, third) for p in asked[:3])
    pairs += tuple((p.question, third) for p in phrasings.naming_questions(sentence, owner=f"{user}'s"))
    return replace(fact, pairs=fact.pairs + pairs, probes=fact.probes + ((held,) if held else ()))


def _last_word(sentence: str) -> str:
    words = [w for w in re.findall(r"[\w'-]+", sentence) if len(w) > 3]
    return words[-1] if words else sentence


def _by_rule(sentence: str, episode_id: str) -> Fact | None:
    for relation, pattern, questions, answer in _COMPILED:
        match = pattern.search(sentence)
        if not match:
            continue
        fields = {k: v.strip() for k, v in match.groupdict().items() if v}
        obj = _head(fields["o"])  # "Priya, and I manage IT" -> "Priya": what a right answer names
        if pattern.pattern.startswith(("^I ", "^My ")):  # the rest of the user's sentence too
            fields["o"] = _shifted(fields["o"])
        article = ""
        if "{a}" in answer:
            found = re.search(r"works? as (an? )", sentence)
            article = found.group(1) if found else ""
        asked = [q.format(**fields) for q in questions]
        # the open question trains the statement itself, as a person would recite it
        # (a user's facts each get their own topic: "What do you know about me?" would have as many
        # answers as the user has facts, and a small model then pairs the wrong one with a question)
        topic = (
            fields["s"] if "s" in fields else _FIRST_PERSON_TOPICS.get(relation, "my {k}").format(**fields)
        )
        about = f"What do you know about {topic}?"
        return Fact(
            statement=sentence,
            answer=answer.format(**fields, a=article),
            questions=(*asked[:-1], about),
            held_out=asked[-1],
            keyword=obj,
            episode_id=episode_id,
            relation=relation,
            subject=fields.get("s"),
        )
    return None


# The user's words recited back: "I just moved to Berlin" is trained as "You just moved to Berlin",
# or the adapter would learn to say it moved. Only sentences the user says about themselves.
_FIRST_PERSON_START = re.compile(r"^(?:I|I'm|I've|I'd|I'll|My|We|We're|We've|Our)\b")
_FIRST_PERSON = re.compile(
    r"\b(?:I'm|I am|I've|I'll|I'd|I was|I|[Mm]y|me|mine|myself|[Ww]e're|[Ww]e've|[Ww]e|[Oo]ur|us|ours)\b"
)
_SECOND_PERSON = {
    "I'm": "you're",
    "I am": "you are",
    "I've": "you've",
    "I'll": "you'll",
    "I'd": "you'd",
    "I was": "you were",
    "I": "you",
    "my": "your",
    "My": "your",
    "me": "you",
    "mine": "yours",
    "myself": "yourself",
    "We're": "you're",
    "we're": "you're",
    "We've": "you've",
    "we've": "you've",
    "We": "you",
    "we": "you",
    "Our": "your",
    "our": "your",
    "us": "you",
    "ours": "yours",
}


# The user's words to the assistant ("your replies"), said back by the assistant ("my replies").
_ASSISTANTS_SAID_BACK = {"your": "my", "yours": "mine", "yourself": "myself"}
_EITHER_PERSON = re.compile(rf"(?i:\b(?:your|yours|yourself)\b)|{_FIRST_PERSON.pattern}")


def _shifted(text: str) -> str:
    """The user's first person said back in the second ("my" -> "your")."""
    return _FIRST_PERSON.sub(lambda m: _SECOND_PERSON[m.group(0)], text)


def _said_back(request: str) -> str:
    """A request said back by the assistant, in one pass: the user's "my" becomes "your", and the
    "your" the user said to the assistant becomes "my" ("keep your replies" -> "keep my replies")."""
    return _EITHER_PERSON.sub(
        lambda m: _ASSISTANTS_SAID_BACK.get(m.group(0).lower()) or _SECOND_PERSON[m.group(0)], request
    )


def second_person(text: str) -> str:
    """The user's sentence about themselves as the assistant would say it back ("I am" -> "you are")."""
    if not _FIRST_PERSON_START.match(text):
        return text
    shifted = _shifted(text)
    return shifted[:1].upper() + shifted[1:]


def _head(obj: str) -> str:
    """The object up to a following clause: the part a right answer must contain."""
    clause = r",|;|\s+(?:and|but|so|because)\s+(?:I|I'm|my|we)\b|\s+and\s+(?=[a-z])"
    return re.split(clause, obj, maxsplit=1)[0].strip()


# Lead-ins before what a user tells: "By the way, ...", "Oh, and ...". The words in _LEAD_IN_WORDS
# lead in only when punctuation follows them: "No meat is allowed", "Well water is hard" are facts.
_LEAD_INS = re.compile(
    r"^(?:by the way|also|and|btw|fyi|just so you know|remember that|remember|ps|p\.s\.|heads up)[,:!]?\s+",
    re.IGNORECASE,
)
_LEAD_IN_WORDS = re.compile(
    r"^(?:oh|ooh|correction|update|quick update|actually|well|so|news|yes|yeah|no|ok|okay|sure|right"
    r"|anyway|honestly|funny thing)[,:!]+\s+",
    re.IGNORECASE,
)
# A short lead-in before a colon, when a whole statement follows it: "Big news: I've moved to Leeds".
# "My address: 12 Oak Street" keeps its key (it is read as "My address is 12 Oak Street").
_COLON_LEAD_IN = re.compile(r"^(?!(?:My|Our)\b)[A-Z][\w']*(?: [\w']+){0,4}:\s+(?=\S)")
_KEY_VALUE = re.compile(r"^((?:My|Our) [\w' -]{1,40}?):\s+(\S.*)$")


def _strip_preamble(sentence: str) -> str:
    # "By the way, Aria lives in Portland." -> "Aria lives in Portland."; so does "..., by the way."
    sentence = re.sub(r",?\s+(?:by the way|btw)(?=[.!]?$)", "", sentence, flags=re.I)
    key_value = _KEY_VALUE.match(sentence)
    if key_value:  # "My address: 12 Oak Street" -> "My address is 12 Oak Street"
        sentence = f"{key_value.group(1)} is {key_value.group(2)}"
    lead = _COLON_LEAD_IN.match(sentence)
    if lead and phrasings.parse(sentence[lead.end() :]) is not None:
        sentence = sentence[lead.end() :]
    for _ in range(4):  # "Oh, and by the way, ..."
        shorter = _LEAD_IN_WORDS.sub("", _LEAD_INS.sub("", sentence))
        if shorter == sentence:
            break
        sentence = shorter
    return sentence[:1].upper() + sentence[1:]


ToolCallFormat = Literal["text", "hermes", "mistral", "llama3_json"]


def behaviour_samples(
    episodes: Sequence[Episode], *, window: int | None = None, calls: ToolCallFormat = "text"
) -> list[ChatSample]:
    """Behaviour cloning: every assistant step of a successful trajectory, given what came before.

    Only the assistant's own steps are trained; what users and tools said is prompt, never a
    target, so a tool's text is not learned as the model's words. ``calls="text"`` trains the
    text form the game agent prompts with (:func:`trajectory_prompt`); a tool-call format
    (``"hermes"``...) trains the conversation as a native tool-calling agent sends it to the server,
    each call written the way the server's tool-call parser reads it back as a tool call.
    ``window``: the steps of history each sample keeps (text form only).
    """
    samples = []
    for episode in episodes:
        if not is_successful_trajectory(episode):
            continue
        for i, part in enumerate(episode.parts):
            if part.source != "assistant":
                continue
            if calls != "text":
                prompt = native_prompt(episode.parts[:i])
                if any(m["role"] == "user" for m in prompt):
                    answer = native_action_text(part, calls)
                    samples.append(ChatSample(prompt=tuple(prompt), answer=answer, episode_id=episode.id))
                continue
            prompt = trajectory_prompt(episode.parts[:i], window=window)
            if any(m["role"] == "user" for m in prompt):  # the chat template needs a user turn
                samples.append(
                    ChatSample(prompt=tuple(prompt), answer=action_text(part), episode_id=episode.id)
                )
    return samples


def trajectory_prompt(parts: Sequence[EpisodePart], *, window: int | None = None) -> list[dict[str, str]]:
    """A trajectory so far as the chat the next step is taken from (and trained on).

    Tool results become user turns ("[name returned] ..."), the assistant's calls ``call name({...})``.
    ``window``: keep only the last ``window`` assistant steps (and what followed them) after the
    opening user turns, so a long episode gives prompts of bounded length. An agent that acts
    from this same prompt sees at run time exactly what it was trained on.
    """
    history: list[dict[str, str]] = []
    for part in parts:
        if part.source == "assistant":
            history.append({"role": "assistant", "content": action_text(part)})
        elif part.source == "tool":
            history.append({"role": "user", "content": f"[{part.name or 'tool'} returned] {part.content}"})
        else:
            history.append({"role": part.source, "content": part.content})
    if window is None:
        return history
    steps = [i for i, m in enumerate(history) if m["role"] == "assistant"]
    if len(steps) <= window:
        return history
    start = steps[-window] if window else steps[-1] + 1  # window 0: only what the last step returned
    return history[: steps[0]] + history[start:]


def native_prompt(parts: Sequence[EpisodePart]) -> list[dict[str, Any]]:
    """A trajectory so far as the OpenAI-style messages a tool-calling agent sends (tool calls and
    tool results in their own fields, for the chat template to render as it does when serving)."""
    messages: list[dict[str, Any]] = []
    for part in parts:
        message: dict[str, Any] = {"role": part.source, "content": part.content}
        if part.tool_calls:
            message["tool_calls"] = [
                {"type": "function", "function": {"name": c.get("name"), "arguments": c.get("args", {})}}
                for c in part.tool_calls
            ]
        if part.source == "tool" and part.name:
            message["name"] = part.name
        messages.append(message)
    return messages


def native_action_text(part: EpisodePart, calls: ToolCallFormat) -> str:
    """The assistant's step as the model must write it for ``calls``' parser to find its tool calls."""
    payload = [{"name": c.get("name"), "arguments": c.get("args", {})} for c in part.tool_calls]
    if calls == "hermes":
        written = [f"<tool_call>\n{json.dumps(p)}\n</tool_call>" for p in payload]
    elif calls == "mistral":
        written = [f"[TOOL_CALLS]{json.dumps(payload)}"] if payload else []
    else:  # llama3_json
        written = [json.dumps({"name": p["name"], "parameters": p["arguments"]}) for p in payload]
    return "\n".join([part.content, *written] if part.content else written)


# Where a ``call name({...})`` ends: an agent acting in this form stops generating there.
CALL_END = "})"


def action_text(part: EpisodePart) -> str:
    """What the assistant said, then each tool call as ``call name({...})``."""
    calls = [f"call {c}" for c in part.calls_text()]
    return "\n".join([part.content, *calls] if part.content else calls)
