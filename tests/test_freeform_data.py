"""The free-form memory QA dev set keeps its invariants: answers only where the user or a tool said them."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "sleep_agent" / "eval" / "data" / "memory_qa_freeform.jsonl"
ROLES = {"user", "assistant", "tool"}
KINDS = {"self", "third_party", "tool", "update", "preference"}
PERSONS = {"first", "third"}
RELATION = re.compile(
    r"lives in|live in|works as|work as|favou?rite colou?r|favou?rite food|years old|aged \d|speaks?"
    r"|studied|graduated|allergic to|is learning|am learning",
    re.IGNORECASE,
)


def _rows() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return _rows()


def said(row: dict, roles: set[str]) -> list[tuple[int, str]]:
    """(session index, lower-cased text) of every turn whose role is in roles."""
    return [
        (s, t["content"].lower())
        for s, session in enumerate(row["sessions"])
        for t in session
        if t["role"] in roles
    ]


def first_session(row: dict, value: str) -> int | None:
    """The first session in which a user or tool turn says value, or None."""
    hits = [s for s, text in said(row, {"user", "tool"}) if value.lower() in text]
    return min(hits) if hits else None


def facts(row: dict) -> dict[str, list[dict]]:
    by_fact: dict[str, list[dict]] = defaultdict(list)
    for q in row["questions"]:
        by_fact[q["fact"]].append(q)
    return by_fact


def test_every_line_parses_into_the_documented_shape():
    rows = _rows()
    assert len({r["id"] for r in rows}) == len(rows), "persona ids must be unique"
    for row in rows:
        assert set(row) == {"id", "sessions", "questions"}, row["id"]
        assert row["sessions"] and all(row["sessions"]), row["id"]
        for session in row["sessions"]:
            for turn in session:
                assert turn["role"] in ROLES and turn["content"].strip(), (row["id"], turn)
        for q in row["questions"]:
            assert q["question"].strip() and q["fact"].strip(), (row["id"], q)
            assert 1 <= len(q["answers"]) <= 3 and all(a.strip() for a in q["answers"]), (row["id"], q)
            assert q["person"] in PERSONS and q["kind"] in KINDS, (row["id"], q)
            assert isinstance(q.get("stale", []), list), (row["id"], q)


def test_enough_personas_and_facts(rows):
    assert len(rows) >= 3
    assert sum(len(facts(r)) for r in rows) >= 60
    for row in rows:
        assert 3 <= len(row["sessions"]) <= 5, row["id"]


def test_every_answer_was_said_by_the_user_or_a_tool(rows):
    for row in rows:
        for q in row["questions"]:
            for answer in q["answers"]:
                assert first_session(row, answer) is not None, (row["id"], q["question"], answer)


def test_no_answer_appears_in_an_assistant_turn(rows):
    for row in rows:
        replies = said(row, {"assistant"})
        for q in row["questions"]:
            for answer in q["answers"]:
                leaked = [text for _, text in replies if answer.lower() in text]
                assert not leaked, (row["id"], answer, leaked)


def test_no_question_gives_its_own_answer_away(rows):
    for row in rows:
        for q in row["questions"]:
            for answer in q["answers"]:
                assert answer.lower() not in q["question"].lower(), (row["id"], q["question"], answer)


def test_an_update_was_stale_in_an_earlier_session(rows):
    for row in rows:
        for q in row["questions"]:
            if q["kind"] != "update":
                assert not q.get("stale"), (row["id"], q["question"])
                continue
            assert q.get("stale"), (row["id"], q["question"])
            new = min(first_session(row, a) for a in q["answers"])
            for old in q["stale"]:
                assert first_session(row, old) is not None, (row["id"], old)
                assert first_session(row, old) < new, (row["id"], q["question"], old)
                assert not any(old.lower() in a.lower() for a in q["answers"]), (row["id"], old)


def test_each_fact_has_one_kind_and_consistent_answers(rows):
    for row in rows:
        for fact, qs in facts(row).items():
            assert 2 <= len(qs) <= 3, (row["id"], fact)
            assert len({q["kind"] for q in qs}) == 1, (row["id"], fact)
            assert len({tuple(q["answers"]) for q in qs}) == 1, (row["id"], fact)
            assert len({q["question"] for q in qs}) == len(qs), (row["id"], fact)


def test_each_persona_has_updates_tool_results_and_third_parties(rows):
    for row in rows:
        kinds = [qs[0]["kind"] for qs in facts(row).values()]
        for kind in ("update", "tool", "third_party"):
            assert kinds.count(kind) >= 3, (row["id"], kind)
        tools = [
            (s, i)
            for s, session in enumerate(row["sessions"])
            for i, t in enumerate(session)
            if t["role"] == "tool"
        ]
        assert len(tools) >= 3, row["id"]
        for s, i in tools:
            assert i > 0 and row["sessions"][s][i - 1]["role"] == "user", (row["id"], s, i)


def test_tool_facts_come_from_tool_turns(rows):
    for row in rows:
        tool_text = [text for _, text in said(row, {"tool"})]
        for q in row["questions"]:
            if q["kind"] == "tool":
                assert any(a.lower() in text for a in q["answers"] for text in tool_text), (
                    row["id"],
                    q["question"],
                )


def test_every_fact_is_asked_in_first_and_third_person(rows):
    for row in rows:
        name = row["id"].split("_")[0].lower()
        for fact, qs in facts(row).items():
            assert {q["person"] for q in qs} == PERSONS, (row["id"], fact)
        for q in row["questions"]:
            if q["person"] == "third":
                assert name in q["question"].lower(), (row["id"], q["question"])


def test_the_user_gives_their_name_in_the_first_session(rows):
    for row in rows:
        name = row["id"].split("_")[0].lower()
        assert any(name in text for s, text in said(row, {"user"}) if s == 0), row["id"]


def test_few_user_statements_have_the_shape_of_the_ten_common_relations(rows):
    statements = [text for row in rows for _, text in said(row, {"user"})]
    matching = [text for text in statements if RELATION.search(text)]
    total_facts = sum(len(facts(r)) for r in rows)
    assert len(matching) <= total_facts / 5, matching
