"""What a person watching a sleep sees: one line per event, on a status line or a graph's stream."""

from __future__ import annotations

from sleep_agent.progress import describe, emit, shown_on
from sleep_agent.sleep import gate


class Status:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def update(self, line: str) -> None:
        self.lines.append(line)


def test_each_kind_of_event_reads_as_one_line():
    assert describe({"stage": "consolidate", "step": 12, "of": 130, "loss": 1.9}) == (
        "consolidate: step 12/130, loss 1.900"
    )
    assert describe({"stage": "gate", "answered": 8, "of": 40}) == "gate: 8/40 questions answered"
    assert describe({"stage": "gate", "accepted": False, "reason": "probe 12 -> 9"}) == (
        "gate: refused (probe 12 -> 9)"
    )
    assert describe({"stage": "critic", "status": "started"}) == "critic..."
    assert describe({"stage": "critic", "status": "done", "seconds": 2.4}) == "critic: done in 2 s"


def test_a_status_line_follows_the_events_only_while_shown():
    status = Status()
    with shown_on(status):
        emit({"stage": "consolidate", "step": 1, "of": 2, "loss": 0.5})
    emit({"stage": "consolidate", "step": 2, "of": 2, "loss": 0.4})  # after the block: not shown
    assert status.lines == ["sleeping: consolidate: step 1/2, loss 0.500"]


def test_asking_many_questions_reports_answers_as_they_arrive_and_keeps_their_order():
    status = Status()
    questions = [f"q{i}" for i in range(20)]
    with shown_on(status):
        answers = gate.ask_all(lambda q: q.upper(), questions, workers=4)
    assert answers == [q.upper() for q in questions]
    assert status.lines[-1] == "sleeping: gate: 20/20 questions answered"
    assert "sleeping: gate: 8/20 questions answered" in status.lines
