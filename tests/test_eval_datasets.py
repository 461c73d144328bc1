"""The memory QA loader reads any file in the documented form and names the line of a bad one."""

from __future__ import annotations

import json

import pytest

from sleep_agent.eval.datasets import DatasetError, load_memory_qa
from sleep_agent.eval.memory_qa import turns_of
from sleep_agent.eval.protocol import PACKAGE_DATA

GOOD = {
    "id": "a",
    "sessions": [[{"role": "user", "content": "I live in Lyon."}, {"role": "assistant", "content": "Nice."}]],
    "questions": [{"question": "Where do I live?", "answers": ["Lyon"]}],
}


def write(tmp_path, *rows: object) -> object:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_a_valid_file_loads_with_blank_lines_and_extra_fields_ignored(tmp_path):
    other = {**GOOD, "id": "b", "source": "written for this test"}
    items = load_memory_qa(write(tmp_path, GOOD, "", other))
    assert [i.id for i in items] == ["a", "b"]
    assert items[0].questions[0].answers == ["Lyon"]
    assert len(load_memory_qa(write(tmp_path, GOOD, other), limit=1)) == 1


def test_the_shipped_development_set_loads():
    items = load_memory_qa(PACKAGE_DATA / "memory_qa_dev.jsonl")
    assert len(items) >= 6 and all(len(i.questions) >= 3 for i in items)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", "line 2: not JSON"),
        ({**GOOD, "id": "c", "questions": []}, "line 2: questions"),
        (
            {**GOOD, "id": "c", "sessions": [[{"role": "robot", "content": "hi"}]]},
            "line 2: sessions.0.0.role",
        ),
        ({k: v for k, v in GOOD.items() if k != "id"}, "line 2: id"),
        ({**GOOD, "id": "c", "questions": [{"question": "Where?", "answers": []}]}, "questions.0.answers"),
        (GOOD, "id 'a' appears twice"),
        (
            {**GOOD, "id": "c", "sessions": [[{"role": "assistant", "content": "hello"}]]},
            "nothing to remember",
        ),
    ],
)
def test_a_malformed_line_is_named_with_what_is_wrong(tmp_path, row, message):
    with pytest.raises(DatasetError, match=message) as caught:
        load_memory_qa(write(tmp_path, GOOD, row))
    assert "data.jsonl" in str(caught.value)


def test_a_missing_or_empty_file_says_what_was_expected(tmp_path):
    with pytest.raises(DatasetError, match="no such file.*JSONL"):
        load_memory_qa(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no items"):
        load_memory_qa(tmp_path / "empty.jsonl")


def test_sessions_become_turns_that_start_at_each_user_message():
    (item,) = load_memory_qa(PACKAGE_DATA / "memory_qa_dev.jsonl", limit=1)
    turns = turns_of(item.sessions[0])
    assert len(turns) == 2 and all(turn[0][0] == "user" for turn in turns)
    assert turns[0][1][0] == "ai"
