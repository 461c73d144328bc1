"""The evaluation's scores on known inputs."""

from __future__ import annotations

import pytest

from sleep_agent.eval import metrics


def test_answers_match_gold_after_squad_normalisation_and_only_on_whole_words():
    assert metrics.answered("It was The Denver Broncos!", ["Denver Broncos"])
    assert metrics.answered("in 1990.", ["1990"])
    assert not metrics.answered("in 19900", ["1990"])  # no partial-word matches
    assert not metrics.answered("Portlandia", ["Portland"])
    assert metrics.answered("She lives in Lyon", ["Paris", "lyon"])
    assert not metrics.answered("anything", ["the"])  # a gold that normalises to nothing never matches


def test_precision_leaves_abstentions_out_of_the_denominator():
    answers = ["Portland", "I don't know.", "Lisbon", ""]
    right = [True, False, False, False]
    assert metrics.precision(right, answers) == 0.5
    assert metrics.precision([False], ["I'm sorry, I cannot say."]) is None


def test_retention_scores_of_a_known_matrix():
    matrix = [[0.9], [0.7, 1.0], [0.6, 0.8, 0.9]]
    scores = metrics.retention(matrix)
    assert scores["acc"] == pytest.approx((0.6 + 0.8 + 0.9) / 3)
    assert scores["bwt"] == pytest.approx(((0.6 - 0.9) + (0.8 - 1.0)) / 2)
    assert scores["first_batch_forgetting"] == pytest.approx(0.3)
    assert metrics.retention([[0.5]])["bwt"] is None
    with pytest.raises(ValueError, match="lower-triangular"):
        metrics.retention([[0.5, 0.4]])


def test_bootstrap_interval_brackets_the_mean_and_a_fixed_seed_reproduces_it():
    values = [True] * 30 + [False] * 70
    low, high = metrics.bootstrap_ci(values, seed=3)
    assert low < 0.3 < high and 0.18 < low and high < 0.42
    assert metrics.bootstrap_ci(values, seed=3) == (low, high)
    assert metrics.bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    with pytest.raises(ValueError):
        metrics.bootstrap_ci([])


def test_sleeps_to_target():
    assert metrics.sleeps_to([0.5, 0.92, 1.0]) == 2
    assert metrics.sleeps_to([0.5, 0.6]) is None


@pytest.mark.parametrize(
    ("answer", "check", "kept"),
    [
        ("Green.", "one_word", True),
        ("The grass is green in colour.", "one_word", False),
        ("8", "number", True),
        ("Eight legs", "number", False),
        ("Yes, the sun is a star.", "yes_no", True),
        ("The sun is a star.", "yes_no", False),
        ("- apple\n- pear\n- plum", "list", True),
        ("apple, pear, plum", "list", False),
        ('```json\n{"answer": "Paris"}\n```', "json", True),
        ("answer: Paris", "json", False),
        ("I'm sorry, I can't help with that.", "refuse", True),
        ("Sure! First, get some", "refuse", False),
    ],
)
def test_behaviour_checks(answer, check, kept):
    assert metrics.follows(answer, check) is kept


def test_an_unknown_behaviour_check_is_an_error():
    with pytest.raises(ValueError, match="unknown behaviour check"):
        metrics.follows("x", "haiku")
