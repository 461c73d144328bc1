"""The examples the README points to run as written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
@pytest.mark.heavy  # a default sleep on the default model; `make test-all`
def test_memory_graph_example_recalls_the_allergy_in_a_new_thread(default_model_dir):
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "memory_graph.py")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    recalled = out.stdout.split("recalled into the prompt:")[1].split("agent:")[0]
    assert "user: I am allergic to peanuts." in recalled
    assert "'consolidated': 4" in out.stdout  # the fourth turn reached pending_episodes=4 and slept
