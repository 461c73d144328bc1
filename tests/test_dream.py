"""Dreaming without a server: generation, verification against the source, selection.

The teacher and student here are plain functions standing in for the served model, so that each
rule is tested on answers chosen to break it; tests/test_sleep_cycle.py runs dreaming for real.
"""

from __future__ import annotations

import pytest

from sleep_agent.eval.facts import UNSEEN
from sleep_agent.sleep.critic import Statement
from sleep_agent.sleep.dream import (
    ABOUT,
    PHRASINGS,
    Dream,
    DreamConfig,
    cloze_dreams,
    dream_night,
    generate,
    grounded,
    mentions,
    verify,
)
from sleep_agent.sleep.extract import RULES, extract_facts

TOLD = [
    "Aria lives in Portland.",
    "Aria is allergic to peanuts.",
    "Suki lives in Kyoto.",
    "Enid works as an engineer.",
]
PASSAGE = [
    "The Kelmar lighthouse was built in 1887 by Otto Brandt.",
    "It stands on the northern cape of the island of Vesk.",
]


def facts(sentences, episode="e1"):
    return extract_facts([Statement(s, "user", episode) for s in sentences])


def test_dreams_of_every_kind_come_from_the_memories():
    new, old = facts(TOLD), facts(["Mira speaks Welsh."], "e0")
    dreams = generate(new, old, DreamConfig(), write=lambda prompt: "1. Who built the lighthouse?")
    kinds = {d.kind for d in dreams}
    assert kinds == {"paraphrase", "inverse", "compositional", "check", "rehearsal"}
    by_question = {d.question: d for d in dreams}
    assert by_question["Where does the person who is allergic to peanuts live?"].expected == ("Portland",)
    assert by_question["Who is the person who lives in Kyoto?"].expected == ("Suki",)
    # a counterfactual check takes another memory's object, and its right answer is "no"
    assert by_question["Does Aria live in Kyoto?"].polarity is False
    assert by_question["Does Aria live in Portland?"].polarity is True
    assert any(d.kind == "rehearsal" and "Mira" in d.question and d.expected == ("Welsh",) for d in dreams)
    for d in dreams:  # every dream carries the memory it is checked against
        assert any(s in d.source for s in [*TOLD, "Mira speaks Welsh."]), d


def test_a_passage_gives_cloze_and_self_written_dreams():
    new = facts(PASSAGE, "p1")
    written = "1. Who built the Kelmar lighthouse?\n2. Where is it?\nnot a question"
    dreams = generate(new, [], DreamConfig(), write=lambda prompt: written)
    cloze = [d for d in dreams if d.kind == "cloze"]
    assert ("1887",) in [d.expected for d in cloze] and ("Otto Brandt",) in [d.expected for d in cloze]
    assert all(d.expected[0] not in d.question for d in cloze)  # the answer is what is hidden
    (own,) = [d for d in dreams if d.kind == "self_question"]  # "Where is it?" is too short
    assert own.question == "Who built the Kelmar lighthouse?" and own.source == " ".join(PASSAGE)


def test_cloze_questions_ask_within_the_clause():
    (fact,) = facts(["The Broncos reached Super Bowl XLVIII, while the Panthers lost in 2004."])
    questions = {d.expected[0]: d.question for d in cloze_dreams(fact, 5)}
    assert questions["2004"] == "The Panthers lost in what year?"
    assert questions["Super Bowl XLVIII"] == "The Broncos reached what?"


def test_dream_phrasings_are_never_the_trained_held_out_or_evaluated_ones():
    trained = {q for _, _, questions, _ in RULES for q in questions}  # includes the gate's held-out
    evaluated = set(UNSEEN.values())
    for phrasings in PHRASINGS.values():
        assert not set(phrasings) & (trained | evaluated)
    assert not set(ABOUT.values()) & evaluated
    assert set(PHRASINGS) <= {relation for relation, *_ in RULES}


@pytest.mark.parametrize(
    ("answer", "expected", "right"),
    [
        ("Aria lives in Portland, Oregon.", "Portland", True),
        ("She lives in portland", "Portland", True),
        ("Aria lives in Lisbon.", "Portland", False),
        ("ten teams did", "10", True),
        ("It was 10.", "ten", True),
        ("the Carolina Panther", "Carolina Panthers", True),
        ("the Denver Broncos", "Carolina Panthers", False),
        ("", "Portland", False),
    ],
)
def test_answers_are_matched_to_the_expected_words(answer, expected, right):
    assert mentions(answer, expected) is right


def test_yes_no_checks_are_scored_by_polarity():
    yes = Dream("check", "Does Aria live in Portland?", "Aria lives in Portland.", polarity=True)
    no = Dream("check", "Does Aria live in Kyoto?", "Aria lives in Portland.", polarity=False)
    assert verify(yes, "Yes, Aria lives in Portland.") and not verify(yes, "No, she does not.")
    assert verify(no, "No, Aria lives in Portland.") and not verify(no, "Yes, Aria lives in Kyoto.")
    assert not verify(yes, "Yes... no, not really.")
    said = Dream("check", "Does Aria live in Portland?", "Aria lives in Portland.", ("Portland",), True)
    assert verify(said, "Aria lives in Portland.") and not verify(said, "Aria does not live in Portland.")
    assert not verify(said, "Aria lives in Lisbon.")


def test_an_answer_without_expected_words_must_come_from_the_source_and_add_to_the_question():
    source = " ".join(PASSAGE)
    assert grounded("Otto Brandt built it.", source, "Who built the Kelmar lighthouse?")
    assert not grounded("Gustave Eiffel built it.", source, "Who built the Kelmar lighthouse?")
    assert not grounded("The Kelmar lighthouse.", source, "Who built the Kelmar lighthouse?")  # echo


def test_a_teacher_answer_that_contradicts_the_memory_is_never_trained():
    dreams = generate(facts(TOLD), [], DreamConfig(kinds=["paraphrase", "check"]))

    def teacher(prompt: str) -> str:  # wrong about Aria's city, right about everything else
        if "Aria" in prompt.split("\n\n")[-1] and "live" in prompt:
            return "Yes, Aria lives in Lisbon." if "Kyoto" in prompt else "Aria lives in Lisbon."
        if "Does" in prompt or "Is " in prompt:
            return (
                "Yes."
                if prompt.split("\n\n")[0].split()[-1].rstrip(".") in prompt.split("\n\n")[1]
                else "No."
            )
        return next(s for s in TOLD if s.split()[0] in prompt.split("\n\n")[1])

    night = dream_night(dreams, teacher, lambda q: "I don't know.", DreamConfig())
    trained = {s.prompt[0]["content"]: s.answer for s in night.samples()}
    assert trained, night.stats.metrics()
    assert not any("Aria" in q and "live" in q.lower() for q in trained)  # every Aria-city dream dropped
    assert not any("Lisbon" in a for a in trained.values())
    for dream, answer in night.kept:  # and everything kept agrees with its source
        assert verify(dream, answer)
    assert trained["What kind of work does Enid do?"] == "Enid works as an engineer."


def test_only_dreams_the_student_gets_wrong_are_kept_and_the_budget_caps_them():
    dreams = generate(facts(TOLD), [], DreamConfig(kinds=["paraphrase"]))
    teacher = lambda prompt: prompt.split("\n\n")[0]  # noqa: E731  (the source itself: always right)
    knows_suki = lambda q: "Suki lives in Kyoto." if "Suki" in q else "No idea."  # noqa: E731
    night = dream_night(dreams, teacher, knows_suki, DreamConfig())
    assert night.stats.student_right["paraphrase"] == 2
    assert all("Suki" not in d.question for d, _ in night.kept)
    assert len(night.kept) == len(dreams) - 2
    capped = dream_night(dreams, teacher, knows_suki, DreamConfig(budget=3))
    assert len(capped.kept) == 3 and capped.stats.metrics()["yield"] == round(3 / len(dreams), 3)


def test_the_judge_can_veto_a_verified_answer():
    dreams = generate(facts(TOLD[:1]), [], DreamConfig(kinds=["paraphrase"]))
    teacher = lambda prompt: "Aria lives in Portland."  # noqa: E731
    vetoed = dream_night(dreams, teacher, lambda q: "", DreamConfig(), judge=lambda p: "No.")
    assert not vetoed.kept and vetoed.stats.metrics()["teacher_right"] == 0
    agreed = dream_night(dreams, teacher, lambda q: "", DreamConfig(), judge=lambda p: "Yes, it does.")
    assert len(agreed.kept) == len(dreams)


def test_distillation_samples_carry_the_teacher_prompt_and_the_students_own_answer():
    dreams = generate(facts(TOLD[:1]), [], DreamConfig(kinds=["paraphrase"]))
    night = dream_night(dreams, lambda p: "Aria lives in Portland.", lambda q: "In Lisbon.", DreamConfig())
    plain = night.samples()
    assert all(s.teacher_prompt is None and s.imitate for s in plain) and len(plain) == len(dreams)
    on_policy = night.samples(distill=True, on_policy=True)
    learned = [s for s in on_policy if s.imitate]
    distilled_only = [s for s in on_policy if not s.imitate]
    assert [s.answer for s in learned] == ["Aria lives in Portland."] * len(dreams)
    assert [s.answer for s in distilled_only] == ["In Lisbon."] * len(dreams)  # never imitated
    assert all("Aria lives in Portland." in s.teacher_prompt[0]["content"] for s in on_policy)


def test_a_name_that_starts_a_clause_is_asked_as_its_subject():
    (fact,) = facts(["The Carolina Panthers became one of only ten teams to lose once."])
    questions = {d.expected[0]: d.question for d in cloze_dreams(fact, 5)}
    assert questions["Carolina Panthers"] == "What became one of only ten teams to lose once?"
    (fact,) = facts(["Though Chopin was born in Wola, he moved to Warsaw."])
    assert all(d.expected != ("Though Chopin",) for d in cloze_dreams(fact, 5))
