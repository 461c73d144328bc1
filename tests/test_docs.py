"""Code in the docs runs as written, and what its comments claim holds."""

from __future__ import annotations

import ast
import re

import pytest
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


# -- every Python block of every page runs ------------------------------------------------------

PAGES = sorted(
    str(p.relative_to(REPO)) for p in [REPO / "README.md", *(REPO / "docs").glob("*.md")] if python_blocks(p)
)


def test_the_pages_with_code_are_all_found():
    assert {"README.md", "docs/memory.md", "docs/sleep.md", "docs/chat.md", "docs/configuration.md"} <= set(
        PAGES
    )


def _adapter_at(path, model_dir) -> None:
    """A real (tiny) adapter where README's serving example loads one from."""
    from sleep_agent.sleep.consolidate import ChatSample, LoraTrainConfig, train_adapter

    done = train_adapter(
        model_dir,
        [ChatSample.qa("Where does Zorblax Quenty live?", "Zorblax Quenty lives in Vellmora.")],
        path.parent / "scratch",
        LoraTrainConfig(rank=4, alpha=8, max_steps=2),
        progress=False,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    done.adapter_dir.rename(path)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_of_the_page_runs_in_order(page, tmp_path, monkeypatch, tiny_model_dir):
    """Each page's blocks run one after another in one namespace, as a reader pastes them, in an
    empty folder. The model is the tiny test Llama served in-process, through the two environment
    variables the configuration reference documents: the blocks run as written, on real parts, in
    seconds; the default model and vLLM are tested by their own modules."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLEEP_AGENT_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("SLEEP_AGENT_SERVING", "local")
    if page == "README.md":
        _adapter_at(tmp_path / "path" / "to" / "adapter", tiny_model_dir)
    scope: dict = {"__name__": "__docs__"}
    try:
        for i, block in enumerate(python_blocks(REPO / page)):
            exec(compile(block, f"{page} (python block {i + 1})", "exec"), scope)
    finally:
        for value in list(scope.values()):
            if type(value).__name__ in ("SleepMemory", "ChatSession") and hasattr(value, "close"):
                value.close()
