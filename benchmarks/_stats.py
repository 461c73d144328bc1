"""Shared by the latency benchmarks: percentiles and summaries in milliseconds.

The machine description and sleep summaries come from ``sleep_agent.eval`` (``run.machine``,
``cost.sleep_record``), as in the evaluation protocols.
"""

from __future__ import annotations

import statistics


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    """Seconds in, milliseconds out: n, p50, p99, max, mean."""
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
    }
