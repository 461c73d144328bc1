"""The gate's decision, and that nothing the gate or training uses is an evaluation question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from sleep_agent.sleep.consolidate import ANCHOR_PROMPTS
from sleep_agent.sleep.extract import Fact
from sleep_agent.sleep.gate import GATE_PROBE, GateConfig, Scores, decide, probe_of, recall_of

REPO = Path(__file__).resolve().parents[1]


def test_recall_must_rise():
    result = decide(Scores(0.5, None, 11), Scores(0.5, None, 12), GateConfig())
    assert not result.accepted and "recall did not rise (50% -> 50%)" in result.reason
    assert decide(Scores(0.5, None, 11), Scores(0.75, None, 11), GateConfig()).accepted


def test_the_probe_may_fall_by_the_configured_amount_only():
    config = GateConfig(max_probe_drop=1)
    assert decide(Scores(0.0, None, 11), Scores(1.0, None, 10), config).accepted
    result = decide(Scores(0.0, None, 11), Scores(1.0, None, 9), config)
    assert not result.accepted and "general probe fell 11 -> 9" in result.reason


def test_earlier_memories_must_survive():
    result = decide(Scores(0.0, 1.0, 11), Scores(1.0, 0.8, 11), GateConfig(max_retention_drop=0.1))
    assert not result.accepted and "earlier memories fell 100% -> 80%" in result.reason
    assert decide(Scores(0.0, 1.0, 11), Scores(1.0, 0.95, 11), GateConfig(max_retention_drop=0.1)).accepted


def test_with_few_earlier_memories_one_may_be_lost_but_not_two():
    one_of_five = decide(Scores(0.0, 1.0, 11, None, 5), Scores(1.0, 0.8, 11, None, 5), GateConfig())
    assert one_of_five.accepted  # 10% of 5 would allow none: a sleep could never add to a small memory
    two_of_five = decide(Scores(0.0, 1.0, 11, None, 5), Scores(1.0, 0.6, 11, None, 5), GateConfig())
    assert not two_of_five.accepted and "(allowed 20%)" in two_of_five.reason
    strict = GateConfig(max_retention_lost=0)
    assert not decide(Scores(0.0, 1.0, 11, None, 5), Scores(1.0, 0.8, 11, None, 5), strict).accepted
    # with many memories the fraction is the larger allowance: 3 of 20 is 15%, over 10%
    assert not decide(Scores(0.0, 1.0, 11, None, 20), Scores(1.0, 0.85, 11, None, 20), GateConfig()).accepted


def test_recall_asks_held_out_phrasings_only_and_the_probe_counts_keywords():
    fact = Fact(
        "Aria lives in Portland.",
        "Aria lives in Portland.",
        ("Where does Aria live?",),
        "Where is Aria's home?",
        "Portland",
        "e1",
    )
    asked = []

    def ask(question: str) -> str:
        asked.append(question)
        return "Portland" if "home" in question else "Jupiter H2O"

    assert recall_of(ask, [fact]) == 1.0 and asked == ["Where is Aria's home?"]
    assert probe_of(ask) == sum("Jupiter" in keys for _, keys in GATE_PROBE)


def _questions(path: Path) -> set[str]:
    return {json.loads(line)["question"].lower() for line in path.read_text().splitlines() if line.strip()}


@pytest.mark.skipif(not (SHARED_DATA / "general_probe.jsonl").exists(), reason="shared data not present")
def test_no_evaluation_question_is_trained_or_used_by_the_gate():
    evaluated = _questions(SHARED_DATA / "general_probe.jsonl") | _questions(
        REPO / "sleep_agent/eval/data/probe_large.jsonl"
    )
    used = {q.lower() for q in ANCHOR_PROMPTS} | {q.lower() for q, _ in GATE_PROBE}
    assert not evaluated & used
    assert len(evaluated) == 60


def test_perplexity_may_rise_by_the_configured_fraction_only():
    config = GateConfig(max_perplexity_rise=0.05)
    assert decide(Scores(0.0, None, 11, 20.0), Scores(1.0, None, 11, 20.9), config).accepted
    result = decide(Scores(0.0, None, 11, 20.0), Scores(1.0, None, 11, 23.0), config)
    assert not result.accepted and "perplexity on reference text rose +15%" in result.reason
    assert decide(
        Scores(0.0, None, 11, 20.0), Scores(1.0, None, 11, 23.0), GateConfig(max_perplexity_rise=None)
    ).accepted


def test_perplexity_is_token_weighted_over_the_texts():
    import math

    from sleep_agent.sleep.gate import perplexity_of

    scores = {"a": (-2.0, 1), "b": (-6.0, 3)}
    assert perplexity_of(lambda t: scores[t], ["a", "b"]) == pytest.approx(math.exp(8 / 4))


def test_reference_perplexity_falls_for_an_adapter_trained_on_the_text(tiny_model_dir, tmp_path):
    from sleep_agent.sleep.consolidate import ChatSample, LoraTrainConfig, train_adapter
    from sleep_agent.sleep.gate import reference_perplexity

    texts = ["rivers shape the land they cross .", "bread is made from flour and water ."]
    base = reference_perplexity(tiny_model_dir, None, texts)
    samples = [ChatSample.text(t) for t in texts]
    train_adapter(
        tiny_model_dir,
        samples,
        tmp_path / "a",
        LoraTrainConfig(rank=4, learning_rate=5e-3, max_steps=10, batch_size=2),
        progress=False,
    )
    assert 1.0 < reference_perplexity(tiny_model_dir, tmp_path / "a", texts) < base


def test_a_sleep_without_new_facts_is_decided_by_the_bounds_alone():
    from sleep_agent.sleep.gate import GateConfig, Scores, decide

    holds = decide(Scores(None, None, 11, 20.0), Scores(None, None, 11, 20.5), GateConfig())
    assert holds.accepted and "recall - -> -" in holds.reason
    damaged = decide(Scores(None, None, 11, 20.0), Scores(None, None, 8, 20.5), GateConfig())
    assert not damaged.accepted and "probe" in damaged.reason


def test_recall_asks_every_held_out_phrasing_of_a_fact_and_one_right_phrasing_is_not_enough():
    from sleep_agent.sleep.critic import Statement
    from sleep_agent.sleep.extract import extract_facts

    (fact,) = extract_facts([Statement("We close the shop every Monday.", "user", "e")], user="Hana")
    asked = [p.question for p in fact.checks()]
    assert "What did I tell you about the shop?" in asked and "When does Hana close the shop?" in asked

    def knows_only_first_person(question: str) -> str:
        return "You close the shop every Monday." if "Hana" not in question else "Hana likes bread."

    assert recall_of(knows_only_first_person, [fact]) == 0.5
    assert recall_of(lambda q: "Hana closes it every Monday.", [fact]) == 1.0


def test_the_gate_asks_a_bounded_sample_the_same_for_both_versions():
    facts = [Fact(f"s{i}", "a", ("q",), f"held {i}?", f"k{i}", "e") for i in range(100)]
    seen: list[list[str]] = [[], []]
    for run in seen:
        recall_of(lambda q, run=run: run.append(q) or "", facts, limit=10)
    assert len(seen[0]) == 10 and sorted(seen[0]) == sorted(seen[1])


def test_a_candidate_that_plays_held_out_tasks_worse_is_refused_with_the_figures():
    before, after = Scores(None, None, 12, behaviour=0.5), Scores(None, None, 12, behaviour=0.25)
    result = decide(before, after, GateConfig())
    assert not result.accepted and "0.50 -> 0.25" in result.reason
    assert decide(before, after, GateConfig(max_behaviour_drop=0.25)).accepted


def test_a_candidate_that_plays_better_may_lose_a_little_more_of_the_probe():
    config = GateConfig(max_probe_drop=1, probe_slack_if_better=1)
    better = decide(Scores(None, None, 14, behaviour=0.2), Scores(None, None, 12, behaviour=0.8), config)
    assert better.accepted and "0.20 -> 0.80" in better.reason
    same = decide(Scores(None, None, 14, behaviour=0.5), Scores(None, None, 12, behaviour=0.5), config)
    assert not same.accepted and "allowed 1" in same.reason
    worse_probe = decide(Scores(None, None, 14, behaviour=0.2), Scores(None, None, 11, behaviour=0.8), config)
    assert not worse_probe.accepted  # the slack is bounded too
    assert decide(Scores(None, None, 14), Scores(None, None, 12), config).reason.startswith("general probe")


class _Check:
    """A behaviour check over two tasks: a version wins the first when it answers 'win'."""

    def __init__(self, tasks: str = "doors") -> None:
        self.tasks = tasks
        self.played: list[int] = []  # versions asked per call

    def fingerprint(self):
        return [self.tasks]

    def __call__(self, asks):
        self.played.append(len(asks))
        self.last = [[float(ask([{"role": "user", "content": "go"}]) == "win"), 0.5] for ask in asks]
        return [sum(s) / len(s) for s in self.last]


def _context(tmp_path):
    from types import SimpleNamespace

    from sleep_agent.config import SleepConfig

    class Backend:
        base_name = "base"

        def chat(self, prompt, adapter, max_tokens, stop):  # the adapters named v1 win, others lose
            return "win" if adapter.startswith("v1") else "lose"

    config = SleepConfig(namespace="t", home=tmp_path / "home", cache_dir=tmp_path / "cache")
    return SimpleNamespace(config=config, model_path=tmp_path / "model", backend=Backend())


def _adapter(tmp_path, name: str, weights: bytes = b"w") -> Path:
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    (directory / "adapter_model.safetensors").write_bytes(weights)
    return directory


def test_a_version_plays_the_behaviour_check_once_and_is_scored_from_memory_after(tmp_path):
    """Greedy play on fixed tasks repeats: the gate keeps each version's check scores with its
    weights and the check's fingerprint, and plays only the candidate when it has the current's."""
    from sleep_agent.sleep.cycle import SleepReport
    from sleep_agent.sleep.standard import StandardCycle

    context, check = _context(tmp_path), _Check()
    cycle = StandardCycle(behaviour=check)
    v1, v2 = _adapter(tmp_path, "v1"), _adapter(tmp_path, "v2")

    def sleep(current, candidate, on=cycle):
        report = SleepReport(namespace="t", trigger="test")
        return on._play_check(context, current, candidate, report), report.metrics

    assert sleep((None, None), ("v1", v1)) == ((0.25, 0.75), {"behaviour_scores": [[0.0, 0.5], [1.0, 0.5]]})
    assert check.played == [2]
    scores, metrics = sleep(("v1", v1), ("v2", v2))  # v1 was the last candidate: not played again
    assert check.played == [2, 1] and scores == (0.75, 0.25)
    assert metrics == {"behaviour_scores": [[1.0, 0.5], [0.0, 0.5]], "behaviour_remembered": True}
    sleep((None, None), ("v2", v2))  # the base model too, for any namespace on the deployment
    assert check.played == [2, 1, 1]

    _adapter(tmp_path, "v1", b"retrained")  # other weights in the same place: played afresh
    sleep(("v1", v1), ("v2", v2))
    assert check.played[-1] == 2
    other_tasks = _Check("windows")  # other tasks: played afresh
    sleep((None, None), ("v2", v2), on=StandardCycle(behaviour=other_tasks))
    assert other_tasks.played == [2]
    sleep(("v1-elsewhere", None), ("v2", v2))  # an adapter without a known directory is never keyed
    sleep(("v1-elsewhere", None), ("v2", v2))
    assert check.played[-2:] == [2, 2]


def test_a_plain_callable_check_is_played_every_time_and_reports_means_only(tmp_path):
    from sleep_agent.sleep.cycle import SleepReport
    from sleep_agent.sleep.standard import StandardCycle

    calls = []

    def check(asks):
        calls.append(len(asks))
        return [0.0, 1.0]

    cycle, report = StandardCycle(behaviour=check), SleepReport(namespace="t", trigger="test")
    for _ in range(2):
        assert cycle._play_check(
            _context(tmp_path), (None, None), ("v1", _adapter(tmp_path, "v1")), report
        ) == (0.0, 1.0)
    assert calls == [2, 2] and "behaviour_scores" not in report.metrics
