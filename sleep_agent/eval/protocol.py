"""What every protocol shares: its options, where its data comes from, and how a result is shaped.

A protocol is a module with ``run(harness, options) -> dict``, ``table(result) -> (columns, rows)``
and ``plot(result, out_dir) -> list[Path]``; :mod:`sleep_agent.eval.run` drives them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sleep_agent.eval.datasets import DatasetError

PACKAGE_DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class EvalOptions:
    """``quick``: a size that runs in minutes; ``seeds``: repeats where the protocol has randomness;
    ``env``: the environment an agent protocol plays."""

    quick: bool = False
    seeds: int = 1
    data: Path | None = None
    data_dir: Path | None = None
    env: str | None = None

    def size(self, quick: int, full: int) -> int:
        return quick if self.quick else full


def shared_data_dir(options: EvalOptions) -> Path:
    """The development data sets: ``--data-dir``, ``$SLEEP_AGENT_DATA``, or ``../shared/data``."""
    if options.data_dir is not None:
        return Path(options.data_dir)
    if os.environ.get("SLEEP_AGENT_DATA"):
        return Path(os.environ["SLEEP_AGENT_DATA"])
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def data_file(name: str, options: EvalOptions, *, override: bool = True) -> Path:
    """``--data`` when given (and ``override``), else ``name`` in the package's or the shared data."""
    if override and options.data is not None:
        path = Path(options.data)
    elif (PACKAGE_DATA / name).is_file():
        path = PACKAGE_DATA / name
    else:
        path = shared_data_dir(options) / name
    if not path.is_file():
        raise DatasetError(
            f"{path}: data file not found; pass --data FILE, or --data-dir DIR (or set SLEEP_AGENT_DATA) "
            f"to the folder that holds {name}"
        )
    return path


def ci_text(summary: dict[str, float | int]) -> str:
    """``42% [30%, 55%]``: a mean with its bootstrap interval, for tables."""
    return f"{summary['mean']:.0%} [{summary['ci_low']:.0%}, {summary['ci_high']:.0%}]"
