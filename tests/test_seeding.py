"""General consolidation: retrieval-augmented samples, and what is kept on disk between sleeps."""

from __future__ import annotations

import json

from sleep_agent.nodes import DEFAULT_RECALL_PROMPT
from sleep_agent.sleep.critic import Statement
from sleep_agent.sleep.extract import extract_facts
from sleep_agent.sleep.memo import memo_path, remembered
from sleep_agent.sleep.standard import retrieval_samples

SAID = [
    "My cat Pepper only eats salmon pâté.",
    "I keep the spare key under the blue flowerpot.",
    "We close the shop every Monday.",
    "My manager, Rui, prefers updates on Fridays.",
]


def test_retrieval_samples_show_the_memory_among_others_in_the_recall_message():
    facts = extract_facts([Statement(s, "user", f"e{i}") for i, s in enumerate(SAID)], user="Hana")
    samples = retrieval_samples(facts, DEFAULT_RECALL_PROMPT, share=1.0, distractors=2, seed=3)
    assert len(samples) == len(facts)
    for sample in samples:
        system, user = sample.prompt
        assert system["role"] == "system" and user["role"] == "user"
        lines = [line for line in system["content"].splitlines() if line.startswith("- user: ")]
        assert len(lines) == 3  # the memory and two others
        fact = next(f for f in facts if sample.answer in (f.answer, *(a for _, a in f.pairs)))
        assert f"- user: {fact.statement}" in lines  # the right memory is among those shown
        assert user["content"] in (*fact.questions, *(q for q, _ in fact.pairs))
        assert user["content"] not in {p.question for p in fact.checks()}  # held-out stays held out
    assert retrieval_samples(facts, DEFAULT_RECALL_PROMPT, share=0.5, distractors=2) != []
    assert len(retrieval_samples(facts, DEFAULT_RECALL_PROMPT, share=0.5, distractors=2)) == 2
    assert retrieval_samples(facts, DEFAULT_RECALL_PROMPT, share=0.0, distractors=2) == []


def test_a_remembered_value_is_computed_once_and_a_damaged_file_is_recomputed(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"answers": ["a", "b"]}

    assert remembered(tmp_path, "anchors", ["model", 1], compute) == {"answers": ["a", "b"]}
    assert remembered(tmp_path, "anchors", ["model", 1], compute) == {"answers": ["a", "b"]}
    assert len(calls) == 1
    assert remembered(tmp_path, "anchors", ["other model", 1], compute) and len(calls) == 2  # another key
    memo_path(tmp_path, "anchors", "model", 1).write_text("{not json")
    assert remembered(tmp_path, "anchors", ["model", 1], compute) == {"answers": ["a", "b"]}
    assert len(calls) == 3
    assert json.loads(memo_path(tmp_path, "anchors", "model", 1).read_text()) == {"answers": ["a", "b"]}
