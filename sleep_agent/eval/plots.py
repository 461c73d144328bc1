"""The protocols' figures (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sleep_agent.extras import require


def _pyplot() -> Any:
    matplotlib = require("matplotlib", "the evaluation plots")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bars(
    path: Path, series: Mapping[str, Mapping[str, Mapping[str, float]]], *, title: str, ylabel: str
) -> None:
    """Grouped bars of summaries (``mean``, ``ci_low``, ``ci_high``): one bar group per series."""
    plt = _pyplot()
    groups = list(next(iter(series.values())))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) * len(series) / 2 + 3), 4.2))
    width = 0.8 / len(series)
    for i, (label, summaries) in enumerate(series.items()):
        means = [summaries[g]["mean"] for g in groups]
        errors = [
            [summaries[g]["mean"] - summaries[g]["ci_low"] for g in groups],
            [summaries[g]["ci_high"] - summaries[g]["mean"] for g in groups],
        ]
        xs = [x + i * width for x in range(len(groups))]
        ax.bar(xs, means, width, yerr=errors, capsize=3, label=label)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(groups))])
    ax.set_xticklabels(groups, rotation=15 if len(groups) > 4 else 0)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def heatmap(path: Path, matrix: Sequence[Sequence[float | None]], *, title: str) -> None:
    """Accuracy matrix: row = after sleep t, column = batch i (blank above the diagonal)."""
    plt = _pyplot()
    size = len(matrix)
    grid = [
        [row[i] if i < len(row) and row[i] is not None else float("nan") for i in range(size)]
        for row in matrix
    ]
    fig, ax = plt.subplots(figsize=(1.2 * size + 3, 1.0 * size + 2))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    for t, row in enumerate(grid):
        for i, value in enumerate(row):
            if value == value:  # not NaN
                ax.text(i, t, f"{value:.0%}", ha="center", va="center", color="w" if value < 0.6 else "k")
    ax.set_xticks(range(size), [f"batch {i + 1}" for i in range(size)])
    ax.set_yticks(range(size), [f"after sleep {t + 1}" for t in range(size)])
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="recall")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def lines(path: Path, xs: Sequence[str], series: Mapping[str, Sequence[float | None]], *, title: str) -> None:
    """One panel per series, over the same x (e.g. before and after each sleep)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(3.2 * len(series), 3.4), squeeze=False)
    for ax, (label, values) in zip(axes[0], series.items(), strict=True):
        ax.plot(list(xs), [float("nan") if v is None else v for v in values], marker="o")
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scatter(
    path: Path, points: Mapping[str, tuple[float, float]], *, title: str, xlabel: str, ylabel: str
) -> None:
    """Labelled points, e.g. accuracy against prompt tokens per question for each condition."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, (x, y) in points.items():
        ax.scatter([x], [y], s=60)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.05)
    ax.set_xscale("symlog", linthresh=100)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curves(
    path: Path,
    xs: Sequence[float],
    panels: Mapping[str, Mapping[str, Sequence[float | None]]],
    *,
    title: str,
    xlabel: str,
    limits: Mapping[str, tuple[float, float]] | None = None,
) -> None:
    """Learning curves: one panel per measure, one line per condition, over the same x.

    ``limits``: a panel's fixed y range, so that a flat line reads as what it is (a share of 0
    on a 0-1 axis) rather than filling an axis matplotlib centred on it."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":")]  # lines that coincide stay visible
    for ax, (panel, series) in zip(axes[0], panels.items(), strict=True):
        for i, (label, values) in enumerate(series.items()):
            marker, line = styles[i % len(styles)]
            ys = [float("nan") if v is None else v for v in values]
            ax.plot(list(xs), ys, marker=marker, linestyle=line, markersize=8 - 1.5 * (i % 4), label=label)
        if limits and panel in limits:
            ax.set_ylim(*limits[panel])
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_xticks(list(xs))
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
