"""The package installs from scratch: a light core on each supported Python, each extra adding what it promises.

Each test builds a fresh virtual environment from the package index (a minute or more). CI runs the
core on the interpreter that runs the tests; `make test-install` (and `make test-all`) runs the
other Pythons and the extras.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

SUPPORTED = ("3.11", "3.12", "3.13")

# Run inside the fresh environment: what the core promises, and what it must not pull in.
CORE_CHECK = r"""
import importlib.util, json, sys, tempfile
from langchain_core.messages import AIMessage, HumanMessage
import sleep_agent
from sleep_agent import SleepConfig, SleepMemory, SleepPolicy
from sleep_agent.errors import MissingDependencyError

heavy = [m for m in ("torch", "transformers", "peft", "vllm", "matplotlib", "fastapi", "sentence_transformers")
         if importlib.util.find_spec(m) is not None]
memory = SleepMemory(SleepConfig(namespace="alice", home=tempfile.mkdtemp(), policy=SleepPolicy(context_fraction=None)))
memory.record_node({"messages": [HumanMessage("I moved to Lyon."), AIMessage("Noted.")]})
recalled = memory.recall_text("Where do I live now?")
try:
    memory.sleep()
    sleep_error = None
except MissingDependencyError as e:
    sleep_error = str(e)
print(json.dumps({"python": sys.version.split()[0], "heavy": heavy, "recalled": recalled, "sleep_error": sleep_error}))
"""


def interpreter(version: str) -> str | None:
    """A working ``python<version>``: on PATH, or among pyenv's versions when pyenv is there."""
    candidates = [shutil.which(f"python{version}")]
    root = os.environ.get("PYENV_ROOT") or (
        subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        if shutil.which("pyenv")
        else ""
    )
    if root:
        candidates += sorted(str(p) for p in Path(root).glob(f"versions/{version}*/bin/python{version}"))
    for exe in filter(None, candidates):
        ok = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
        )
        if ok.returncode == 0 and ok.stdout.strip() == version:
            return exe
    return None


def fresh_venv(python: str, where: Path, *requirements: str) -> Path:
    subprocess.run([python, "-m", "venv", str(where)], check=True)
    bin_dir = where / "bin"
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, *requirements], capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    return bin_dir


def run_in(bin_dir: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bin_dir / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
        cwd=bin_dir.parent,  # not the repository: the installed package is what is imported
    )


def check_core(bin_dir: Path) -> None:
    import json

    done = run_in(bin_dir, CORE_CHECK)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], f"the core installed {result['heavy']}"
    assert "I moved to Lyon." in result["recalled"]  # recorded and recalled with no PyTorch at all
    assert "sleep-agent[cpu]" in (result["sleep_error"] or ""), result  # a sleep names the extra


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    from sleep_agent.embeddings import export_onnx

    export_onnx()  # as `sleep-agent prepare-model` does; the light path runs this export
    return fresh_venv(sys.executable, tmp_path_factory.mktemp("core") / "venv", str(REPO))


@pytest.mark.slow
def test_the_core_installs_without_the_heavy_parts_and_records_and_recalls(core_venv):
    check_core(core_venv)


@pytest.mark.slow
def test_the_light_install_says_what_to_do_when_no_embedding_model_is_at_hand(core_venv, tmp_path):
    # no export in this cache, no PyTorch to make one, and Chroma's download cannot reach anything
    done = run_in(
        core_venv,
        CORE_CHECK,
        SLEEP_AGENT_CACHE=str(tmp_path),
        HOME=str(tmp_path),
        HTTPS_PROXY="http://127.0.0.1:9",
    )
    assert done.returncode != 0
    assert "BufferUnavailableError" in done.stderr and "sleep-agent[train]" in done.stderr
    assert "sleep-agent prepare-model" in done.stderr


@pytest.mark.slow
def test_commands_of_missing_extras_name_the_extra(core_venv, tmp_path):
    web = subprocess.run(
        [str(core_venv / "sleep-agent"), "web", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert web.returncode == 1 and "sleep-agent[chat]" in " ".join(web.stderr.split()), web.stderr
    plots = run_in(core_venv, "from sleep_agent.eval.plots import _pyplot; _pyplot()")
    assert "MissingDependencyError" in plots.stderr and "sleep-agent[eval]" in plots.stderr, plots.stderr[
        -2000:
    ]


@pytest.mark.install
@pytest.mark.parametrize(
    "version", [v for v in SUPPORTED if v != f"{sys.version_info[0]}.{sys.version_info[1]}"]
)
def test_the_core_installs_on_each_supported_python(version, tmp_path):
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no python{version} on this machine")
    from sleep_agent.embeddings import export_onnx

    export_onnx()
    check_core(fresh_venv(python, tmp_path / "venv", str(REPO)))


EXTRA_CHECKS = {
    "chat": "from sleep_agent.chatbot.web import create_app",
    "eval": "from sleep_agent.eval.plots import _pyplot; _pyplot()",
    "agents": "from sleep_agent import SleepMemoryMiddleware",
    "train": (
        "from sleep_agent.extras import require_training; require_training('a test');"
        "import sleep_agent.sleep.consolidate, sleep_agent.embeddings as e; e.TorchEncoder()"
    ),
}


@pytest.mark.install
@pytest.mark.parametrize("extra", list(EXTRA_CHECKS))
def test_each_extra_installs_what_its_code_imports(extra, tmp_path):
    # torch 2.13.0 is the release the [cpu] build pins; asked for directly, pip takes a CPU wheel
    # where pip's configuration or --extra-index-url provides one (docs/install.md)
    pins = ["torch==2.13.0"] if extra == "train" else []
    bin_dir = fresh_venv(sys.executable, tmp_path / "venv", f"{REPO}[{extra}]", *pins)
    done = run_in(bin_dir, EXTRA_CHECKS[extra])
    assert done.returncode == 0, done.stderr[-3000:]
