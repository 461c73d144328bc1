"""Code in the docs runs as written, and what its comments claim holds."""

from __future__ import annotations

import ast
import re

from conftest import REPO


def python_blocks(path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def checked(block: str) -> str:
    """Turn `expr   # value` comment claims into assertions."""
    lines = []
    for line in block.splitlines():
        code, _, comment = line.partition("  # ")
        claim = comment.strip()
        if claim:
            try:
                ast.parse(code.strip(), mode="eval")  # an expression, not an assignment or import
                ast.literal_eval(claim)
                lines.append(f"assert ({code.strip()}) == {claim}, {code.strip()!r}")
                continue
            except (ValueError, SyntaxError):
                pass
        lines.append(line)
    return "\n".join(lines)


def test_the_buffer_example_in_the_memory_guide_runs_and_its_claims_hold():
    (block,) = [b for b in python_blocks(REPO / "docs" / "memory.md") if "EpisodeBuffer(" in b]
    code = checked(block)
    assert code.count("assert") == 2  # the query claim and the counts claim are checked
    exec(compile(code, "docs/memory.md", "exec"), {})


def test_the_scoring_example_in_the_evaluation_guide_runs_and_its_claims_hold():
    (block,) = python_blocks(REPO / "docs" / "evaluation.md")
    code = checked(block)
    assert code.count("assert") == 4
    exec(compile(code, "docs/evaluation.md", "exec"), {})


def test_the_memory_qa_example_line_in_the_evaluation_guide_loads(tmp_path):
    from sleep_agent.eval.datasets import load_memory_qa

    (line,) = re.findall(r"```json\n(.*?)\n```", (REPO / "docs" / "evaluation.md").read_text(), flags=re.S)
    (tmp_path / "example.jsonl").write_text(line + "\n")
    (item,) = load_memory_qa(tmp_path / "example.jsonl")
    assert item.questions[0].answers == ["Lyon"]
