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
        (user,) = sample.prompt  # the quotation and the question, in one user turn as served
        assert user["role"] == "user"
        quoted, question = user["content"].rsplit("\n\n", 1)
        lines = [line for line in quoted.splitlines() if line.startswith("- user: ")]
        assert len(lines) == 3  # the memory and two others
        fact = next(f for f in facts if sample.answer in (f.answer, *(a for _, a in f.pairs)))
        assert f"- user: {fact.statement}" in lines  # the right memory is among those shown
        assert question in (*fact.questions, *(q for q, _ in fact.pairs))
        assert question not in {p.question for p in fact.checks()}  # held-out stays held out
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


def test_a_real_sleep_over_free_form_sessions_trains_the_new_value_and_reports_the_old_one(
    tiny_model_dir, tmp_path, gate_accepts
):
    """The whole cycle on the tiny model (served in-process, trained with peft): the statement a
    later session changed is retired with its reason (and kept with the new value), the user's name is found in a greeting, and
    the anchors are kept on disk for the next sleep."""
    from conftest import tiny_config
    from langchain_core.messages.utils import count_tokens_approximately

    from sleep_agent import SleepMemory
    from sleep_agent.sleep.consolidate import LoraTrainConfig
    from sleep_agent.sleep.standard import CycleConfig, StandardCycle

    quick = CycleConfig(
        training=LoraTrainConfig(rank=4, max_steps=2, batch_size=4), gate={"max_perplexity_rise": None}
    )
    config = tiny_config(tiny_model_dir, tmp_path / "home").model_copy(
        update={"cache_dir": tmp_path / "cache"}
    )
    cycle = StandardCycle(quick)
    with SleepMemory(config, cycle=cycle, token_counter=count_tokens_approximately) as memory:
        memory.buffer.record(
            [("user", "Hi there, Hana here. We close the shop every Monday."), ("ai", "Noted!")]
        )
        memory.buffer.record([("user", "My cat Pepper only eats salmon pâté."), ("ai", "Lovely.")])
        first = memory.sleep()
        assert first.adapter_version == 1 and first.error is None
        assert first.metrics["facts"] >= 3  # the shop, the cat, and the name said in a greeting
        assert list((tmp_path / "cache" / "sleep").glob("anchors-*.json"))

        memory.buffer.record(
            [("user", "Big news: we've switched the shop's day off from Monday to Tuesday."), ("ai", "Ok.")]
        )
        second = memory.sleep()
    assert second.error is None and second.adapter_version == 2
    (change,) = second.metrics["superseded"]
    assert "Monday" in change["old"] and "Tuesday" in change["new"] and change["why"]
    assert change["kept"] == "We close the shop every Tuesday."  # what else it said stays, updated


def test_facts_are_also_trained_under_the_agents_own_system_prompt():
    from sleep_agent.sleep.standard import prompted_samples

    facts = extract_facts([Statement(s, "user", f"e{i}") for i, s in enumerate(SAID)], user="Hana")
    samples = prompted_samples(facts, ["Answer briefly.", "Be kind."])
    assert len(samples) == 2 * len(facts)
    assert {s.prompt[0]["content"] for s in samples} == {"Answer briefly.", "Be kind."}
    for sample in samples:
        fact = next(f for f in facts if sample.answer in (f.answer, *(a for _, a in f.pairs)))
        assert sample.prompt[1]["content"] in (*fact.questions, *(q for q, _ in fact.pairs))
    assert prompted_samples(facts, []) == []


def test_an_agent_built_with_a_prompt_registers_it_with_its_memory(tiny_model_dir, tmp_path):
    from conftest import tiny_config
    from langchain_core.messages.utils import count_tokens_approximately

    from sleep_agent import SleepMemory, create_sleep_agent

    memory = SleepMemory(
        tiny_config(tiny_model_dir, tmp_path / "home"), token_counter=count_tokens_approximately
    )
    create_sleep_agent(memory, prompt="You are a helpful personal assistant.")
    assert memory.agent_prompts == {"You are a helpful personal assistant."}
