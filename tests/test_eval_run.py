"""The evaluation from the command line: bad data fails fast, and one protocol runs end to end.

The end-to-end run is P5 (memory QA) on a data set written here, never seen by the project, on the
real default model served in-process (``serving="local"``: a second vLLM server for this module
would cost the suite a minute and a half) with a short training, so that it fits CI.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sleep_agent.cli import app
from sleep_agent.eval.protocol import EvalOptions
from sleep_agent.eval.run import evaluate, table_of
from sleep_agent.sleep.consolidate import LoraTrainConfig
from sleep_agent.sleep.standard import CycleConfig

UNSEEN = [
    {
        "id": "zora",
        "sessions": [
            [
                {"role": "user", "content": "My name is Zora and my parrot is called Pickle."},
                {"role": "assistant", "content": "Pickle is a fun name for a parrot!"},
            ],
            [
                {"role": "user", "content": "I live in Oslo and I teach chemistry."},
                {"role": "assistant", "content": "Oslo is beautiful."},
            ],
        ],
        "questions": [
            {"question": "What is the name of Zora's parrot?", "answers": ["Pickle"]},
            {"question": "Which city does Zora live in?", "answers": ["Oslo"]},
        ],
    }
]


def test_a_malformed_data_set_fails_before_any_server_starts_and_names_the_line(tmp_path):
    data = tmp_path / "broken.jsonl"
    data.write_text(json.dumps(UNSEEN[0]) + '\n{"id": "x", "sessions": []}\n')
    result = CliRunner().invoke(app, ["eval", "p5", "--data", str(data), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "broken.jsonl, line 2: sessions" in said
    assert not (tmp_path / "out" / "p5.json").exists()


def test_an_unknown_protocol_is_refused_with_the_choices(tmp_path):
    result = CliRunner().invoke(app, ["eval", "p9", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "p1" in result.output


@pytest.mark.slow
def test_p5_runs_on_a_data_set_it_has_never_seen_and_reports_every_condition(tmp_path, default_model_dir):
    data = tmp_path / "unseen.jsonl"
    data.write_text("\n".join(json.dumps(item) for item in UNSEEN) + "\n")
    quick = CycleConfig(
        training=LoraTrainConfig(rank=8, max_steps=6, batch_size=8), anchors=False, text_anchors=False
    )
    out = tmp_path / "out"
    result = evaluate(
        "p5", EvalOptions(quick=True, data=data), out, serving="local", cycle=quick, progress=False
    )

    saved = json.loads((out / "p5.json").read_text())
    assert saved["data"] == "unseen.jsonl" and saved["questions"] == 2
    assert set(saved["accuracy"]) == {"no_memory", "full_context", "retrieval", "sleep", "sleep_retrieval"}
    tokens = saved["prompt_tokens"]
    # the history and the recalled memories are in the prompt, and cost tokens; weights cost none
    assert tokens["full_context"] > tokens["no_memory"] and tokens["retrieval"] > tokens["no_memory"]
    assert tokens["sleep"] == tokens["no_memory"]
    assert all(saved["latency_s"][c] > 0 for c in tokens)
    (sleep,) = saved["seeds"][0]["sleeps"]
    assert sleep["episodes"] == 2  # one episode per user turn
    # with the whole conversation in the prompt, the model finds the parrot's name
    assert saved["accuracy"]["full_context"]["mean"] > saved["accuracy"]["no_memory"]["mean"]
    assert {p for p in result["plots"]} == {"p5_memory_qa.png", "p5_accuracy_vs_tokens.png"}
    assert all((out / p).stat().st_size > 10_000 for p in result["plots"])
    title, columns, rows = table_of(saved)
    assert "P5" in title and len(rows) == 5 and "prompt tokens" in " ".join(columns)
    assert "| full context |" in (out / "p5.md").read_text()


def test_p2_table_says_which_sleeps_the_gate_rejected():
    """A rejected sleep leaves its batch at the base level; the table must say why, not just show 0%."""
    sleeps = [
        {"adapter_version": 1, "gate_reason": "recall 0% -> 100%, probe 11 -> 10"},
        {"adapter_version": None, "gate_reason": "earlier memories fell 100% -> 80%"},
    ]
    result = {
        "protocol": "p2",
        "batches": 2,
        "batch_size": 5,
        "base": [0.0, 0.0],
        "matrix": [[1.0], [1.0, 0.0]],
        "scores": {"acc": 0.5, "bwt": 0.0, "first_batch_forgetting": 0.0},
        "first_batch_last": {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0},
        "seeds": [{"sleeps": sleeps}],
        "options": {"quick": True, "seeds": 1},
    }
    _, columns, rows = table_of(result)
    assert columns[-1] == "gate"
    assert rows[1][-1].startswith("published: recall 0% -> 100%")
    assert rows[2][-1] == "rejected: earlier memories fell 100% -> 80%"
    result["seeds"].append({"sleeps": [sleeps[0], sleeps[0]]})
    _, _, rows = table_of(result)
    assert rows[2][-1] == "published in 1/2 seeds"
