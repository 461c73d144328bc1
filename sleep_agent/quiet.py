"""Third-party chatter (warnings, progress bars, advisory logs) kept out of a person's terminal.

The command line and the examples call :func:`quiet_libraries` unless asked to be verbose. The
library itself never changes its caller's warning filters or logging: a program that imports
``sleep_agent`` sees its dependencies' output as it would without it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Environment settings the libraries read when they are first imported.
_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
# Loggers that speak at INFO or WARNING about things a user cannot act on.
_LOGGERS = ("httpx", "httpcore", "chromadb", "urllib3", "torch", "onnxscript", "peft", "accelerate")


def quiet_libraries(verbose: bool = False) -> None:
    """Silence dependencies' warnings, bars and logs for this process; ``verbose`` leaves them all on."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return
    for name, value in _ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"sleep_agent(\.|$)")  # ours still reach the user
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:  # imported before the environment was set
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
