"""Person facts (facts_dev.json) as sentences to tell an agent and questions to ask it afterwards.

Two kinds of question per fact: the phrasing the extractor trains ("Where does Aria live?") and a
phrasing written here that no stage of the sleep cycle produces ("In which city does Aria
reside?"), so that recall can be measured on words the adapter never saw.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UNSEEN: dict[str, str] = {
    "lives in": "In which city does {s} reside?",
    "works as": "What does {s} do for a living?",
    "'s favorite color is": "What color does {s} prefer?",
    "'s favorite food is": "What dish does {s} love most?",
    "is aged": "What age is {s}?",
    "speaks": "Which language is {s} able to speak?",
    "studied": "What was {s}'s subject at university?",
    "graduated in": "When did {s} complete their degree?",
    "is allergic to": "What gives {s} an allergic reaction?",
    "is learning": "What new skill is {s} picking up?",
}
# How the facts are worded when told, in turn: the extractor has to find the fact in each.
FRAMINGS = ["By the way, {f}", "{f}", "Just so you know, {f}", "Remember that {f}", "My friend {f}"]


@dataclass(frozen=True)
class PersonFact:
    subject: str
    relation: str
    object: str

    @property
    def sentence(self) -> str:
        joiner = "" if self.relation.startswith("'") else " "
        return f"{self.subject}{joiner}{self.relation} {self.object}."

    @property
    def trained_question(self) -> str:
        from sleep_agent.sleep.critic import Statement
        from sleep_agent.sleep.extract import extract_facts

        (fact,) = extract_facts([Statement(self.sentence, "user", "")])
        return fact.questions[0]

    @property
    def unseen_question(self) -> str:
        return UNSEEN[self.relation].format(s=self.subject)

    def told(self, i: int) -> str:
        """The ``i``-th way of telling it (framings rotate)."""
        return FRAMINGS[i % len(FRAMINGS)].format(f=self.sentence)

    def recalled_in(self, answer: str) -> bool:
        return self.object.lower() in answer.lower()


def load_facts(path: Path, n: int) -> list[PersonFact]:
    """``n`` facts spread evenly over the relations (the file is ordered by relation)."""
    rows = json.loads(Path(path).read_text())
    return _spread([PersonFact(r["subject"], r["relation"], r["object"]) for r in rows])[:n]


def _spread(facts: Sequence[PersonFact]) -> list[PersonFact]:
    """One fact of each relation in turn, keeping each relation's order."""
    by_relation: dict[str, list[PersonFact]] = defaultdict(list)
    for fact in facts:
        by_relation[fact.relation].append(fact)
    return [fact for row in zip(*by_relation.values(), strict=False) for fact in row]


def load_probe(path: Path) -> list[tuple[str, list[str]]]:
    """``(question, expected keywords)`` from a JSONL probe such as general_probe.jsonl."""
    lines = Path(path).read_text().splitlines()
    return [(row["question"], row["expected_keywords"]) for row in map(json.loads, filter(None, lines))]


def probe_score(items: Sequence[tuple[str, Sequence[str]]], answers: Sequence[str]) -> int:
    return sum(any(k.lower() in a.lower() for k in keys) for (_, keys), a in zip(items, answers, strict=True))


ACKS = ["Got it, thanks for telling me.", "Noted!", "Thanks, I'll keep that in mind."]


def tell(memory: Any, facts: Sequence[PersonFact], *, thread: str = "conversation") -> list[float]:
    """Record each fact as a conversation turn, five turns per conversation; seconds per record."""
    seconds = []
    for i, fact in enumerate(facts):
        started = time.perf_counter()
        memory.buffer.record(
            [("user", fact.told(i)), ("ai", ACKS[i % len(ACKS)])], thread_id=f"{thread}-{i // 5}"
        )
        seconds.append(time.perf_counter() - started)
    return seconds


def sample_facts(path: Path, n: int, seed: int) -> list[PersonFact]:
    """``n`` facts spread over the relations; seed 0 takes the first ones, other seeds shuffle the pool."""
    pool = load_facts(path, 200)
    if seed:
        random.Random(seed).shuffle(pool)
        pool = _spread(pool)
    return pool[:n]
