"""A missing optional part is reported as the extra to install, not as a bare import error."""

from __future__ import annotations

import sys

import pytest

from sleep_agent.errors import MissingDependencyError
from sleep_agent.extras import install_hint, require, require_training


def test_a_missing_module_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(
        MissingDependencyError,
        match=r"matplotlib is not installed \(needed for the plots\).*sleep-agent\[eval\]",
    ):
        require("matplotlib", "the plots")


def test_training_parts_name_the_train_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(MissingDependencyError, match=r"sleep-agent\[train\]") as err:
        require_training("a sleep")
    assert isinstance(err.value, ImportError)  # still an ImportError for code that catches those


def test_vllm_points_at_the_cpu_index():
    assert "download.pytorch.org/whl/cpu" in install_hint("cpu") and "[gpu]" in install_hint("cpu")


def test_a_broken_dependency_of_an_installed_module_is_shown_as_it_is(monkeypatch, tmp_path):
    (tmp_path / "halfbroken.py").write_text("import no_such_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_module_anywhere"):
        require("halfbroken", "something")


def test_an_installed_module_is_returned():
    assert require("json", "parsing").dumps([1]) == "[1]"


def test_a_torchvision_built_for_another_torch_is_explained(monkeypatch, tmp_path):
    (tmp_path / "visionbroken.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependencyError, match="pip uninstall torchvision"):
        require("visionbroken", "a sleep")
