"""Code in the docs runs as written, and what its comments claim holds."""

from __future__ import annotations

import ast
import re

import pytest
from conftest import REPO


def python_blocks(path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def checked(block: str) -> str:
    """Turn `expr   # value` comment claims into assertions.

    Not ``print(...)`` lines: their comments show what the default model printed, an example.
    """
    lines = []
    for line in block.splitlines():
        code, _, comment = line.partition("  # ")
        claim = comment.strip()
        indent = code[: len(code) - len(code.lstrip())]
        if claim and not code.strip().startswith("print("):
            try:
                ast.parse(code.strip(), mode="eval")  # an expression, not an assignment or import
                ast.literal_eval(claim)
                lines.append(f"{indent}assert ({code.strip()}) == {claim}, {code.strip()!r}")
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


def _chroma_on(port: int, folder):
    """The `chroma run` server docs/sharing.md starts, on the port the page names."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from sleep_agent import BufferUnavailableError, EpisodeBuffer

    chroma = Path(sys.executable).with_name("chroma")
    log = open(folder / "chroma.log", "wb")
    proc = subprocess.Popen(
        [
            str(chroma),
            "run",
            "--path",
            str(folder / "chroma-data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while True:
        try:
            EpisodeBuffer("probe", url=f"http://127.0.0.1:{port}")
            return proc
        except BufferUnavailableError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(
                    f"chroma run on port {port} did not start:\n"
                    + (folder / "chroma.log").read_text()[-2000:]
                )
            time.sleep(0.5)


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
    server = _chroma_on(8001, tmp_path) if page == "docs/sharing.md" else None
    scope: dict = {"__name__": "__docs__"}
    try:
        for i, block in enumerate(python_blocks(REPO / page)):
            exec(compile(checked(block), f"{page} (python block {i + 1})", "exec"), scope)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        for value in list(scope.values()):
            if type(value).__name__ in ("SleepMemory", "ChatSession") and hasattr(value, "close"):
                value.close()


def test_the_configuration_reference_lists_every_field_with_its_current_default():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "config_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    from sleep_agent import SleepConfig, SleepPolicy

    page = (REPO / "docs" / "configuration.md").read_text()
    for cls in (SleepConfig, SleepPolicy):
        for name in cls.model_fields:
            assert f"| `{name}` |" in page
    assert "| `pending_episodes` | `int \\| None` | `32` |" in page
