"""The facts the demo and the acceptance benchmark tell, and the questions they ask afterwards."""

from __future__ import annotations

import pytest
from conftest import SHARED_DATA

from sleep_agent.eval.facts import FRAMINGS, load_facts, load_probe, probe_score
from sleep_agent.sleep.critic import critique
from sleep_agent.sleep.extract import extract_facts

pytestmark = pytest.mark.skipif(
    not (SHARED_DATA / "facts_dev.json").exists(), reason="shared data not present"
)


def test_facts_are_spread_over_the_relations():
    facts = load_facts(SHARED_DATA / "facts_dev.json", 50)
    assert len(facts) == 50 and len({f.relation for f in facts}) == 10
    assert len({f.subject for f in facts}) == 50


def test_every_told_framing_is_extracted_and_unseen_questions_are_never_trained_or_gated():
    from sleep_agent.episodes import episode_from_messages

    facts = load_facts(SHARED_DATA / "facts_dev.json", 50)
    episodes = [
        episode_from_messages([("user", f.told(i)), ("ai", "Noted!")], namespace="t")
        for i, f in enumerate(facts)
    ]
    verdicts = critique(episodes)
    assert all(v.keep for v in verdicts)
    extracted = extract_facts([s for v in verdicts for s in v.statements])
    for fact, rule in zip(facts, extracted, strict=True):
        assert rule.keyword == fact.object and fact.trained_question in rule.questions
        assert fact.unseen_question not in (*rule.questions, rule.held_out)
    assert {f.told(i).split(" ")[0] for i, f in enumerate(facts[: len(FRAMINGS)])} >= {"By", "Remember", "My"}


def test_probe_scoring_counts_any_expected_keyword():
    items = load_probe(SHARED_DATA / "general_probe.jsonl")
    assert len(items) == 20
    answers = ["Paris, of course"] + ["no idea"] * 19
    assert probe_score(items, answers) == 1
