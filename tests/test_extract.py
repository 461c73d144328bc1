"""Extraction turns statements into questions, one phrasing held out for the gate."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATA

from sleep_agent.sleep.critic import Statement
from sleep_agent.sleep.extract import extract_facts


def facts_of(*texts):
    return extract_facts([Statement(t, "user", "e1") for t in texts])


def test_third_person_facts_get_questions_an_answer_and_a_held_out_phrasing():
    (fact,) = facts_of("By the way, Aria lives in Portland.")
    assert fact.answer == "Aria lives in Portland." and fact.keyword == "Portland"
    assert fact.questions == (
        "Where does Aria live?",
        "Which city does Aria live in?",
        "What do you know about Aria?",
    )
    assert fact.held_out == "Where is Aria's home?" and fact.held_out not in fact.questions
    assert [s.answer for s in fact.samples()] == ["Aria lives in Portland."] * 3


def test_first_person_facts_are_answered_in_the_second_person():
    job, cat = facts_of("I work as a glassblower.", "My cat is called Pixel.")
    assert job.answer == "You work as a glassblower." and "What is my job?" in job.questions
    assert cat.answer == "Your cat is Pixel." and cat.keyword == "Pixel"


def test_an_unmatched_statement_is_still_trained():
    (fact,) = facts_of("The meeting with Orla moved to Thursday.")
    assert fact.questions == ("What do you know about Orla?",) and fact.answer.endswith("Thursday.")
    assert fact.held_out is None


def test_every_relation_of_the_development_facts_is_understood():
    path = SHARED_DATA / "facts_dev.json"
    if not path.is_file():
        pytest.skip(f"development data not found at {path} (see the project's data README)")
    rows = json.loads(path.read_text())
    relations = {}
    for row in rows:
        relations.setdefault(row["relation"], row)
    assert len(relations) == 10
    for relation, row in relations.items():
        joiner = "" if relation.startswith("'") else " "
        sentence = f"{row['subject']}{joiner}{relation} {row['object']}."
        (fact,) = facts_of(sentence)
        assert fact.held_out is not None, f"no rule for {relation!r}: {sentence}"
        assert fact.keyword == str(row["object"]) and str(row["object"]) in fact.answer
