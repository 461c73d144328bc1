"""P6 dream utility: the same sleeps with and without dreaming; what dreaming buys and costs.

Two parts on the same server: SEAL passages (P4's sleep and sleep-with-dreaming conditions) and a
batch of person facts asked in an unseen phrasing (P1's measure). For each: accuracy both ways,
dreams written, kept and their yield, and the sleep time with dreaming against without.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from sleep_agent.eval import incorporation, metrics
from sleep_agent.eval.cost import sleep_record
from sleep_agent.eval.facts import sample_facts, tell
from sleep_agent.eval.harness import Harness
from sleep_agent.eval.protocol import EvalOptions, ci_text, data_file

NAME = "P6 dream utility"
LABELS = {"sleep": "without dreaming", "sleep_dreams": "with dreaming"}


def facts_part(h: Harness, options: EvalOptions) -> dict[str, Any]:
    path = data_file("facts_dev.json", options, override=False)
    seeds = []
    for seed in range(options.seeds):
        facts = sample_facts(path, options.size(10, 30), seed)
        out: dict[str, Any] = {"seed": seed}
        for label, dreaming in (("sleep", False), ("sleep_dreams", True)):
            memory = h.memory(f"p6-facts-{label.replace('_', '-')}-seed{seed}", dreaming=dreaming, seed=seed)
            tell(memory, facts)
            report = memory.sleep()
            answers = h.answers([f.unseen_question for f in facts], desc=f"facts {label}")
            out[label] = {
                "right": [f.recalled_in(a) for f, a in zip(facts, answers, strict=True)],
                "sleep": sleep_record(report),
            }
        seeds.append(out)
    return {"facts": len(facts), "seeds": seeds, "accuracy": _accuracy(seeds)}


def _accuracy(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    return {c: metrics.summarize([v for s in seeds for v in s[c]["right"]]) for c in LABELS}


def _dream_costs(part: dict[str, Any]) -> dict[str, Any]:
    without = [s["sleep"]["sleep"]["seconds"] for s in part["seeds"]]
    with_ = [s["sleep_dreams"]["sleep"]["seconds"] for s in part["seeds"]]
    dreams = [s["sleep_dreams"]["sleep"].get("dreams", {}) for s in part["seeds"]]
    generated = sum(d.get("generated", 0) for d in dreams)
    kept = sum(d.get("kept", 0) for d in dreams)
    return {
        "sleep_s": statistics.fmean(without),
        "sleep_dreams_s": statistics.fmean(with_),
        "time_ratio": statistics.fmean(with_) / statistics.fmean(without),
        "dreams_generated": generated,
        "dreams_kept": kept,
        "yield": kept / generated if generated else None,
        "dream_s": statistics.fmean(d.get("seconds", 0.0) for d in dreams),
    }


def check(options: EvalOptions) -> None:
    """Fail on missing data before the server starts."""
    incorporation.check(options)
    data_file("facts_dev.json", options, override=False)


def run(h: Harness, options: EvalOptions) -> dict[str, Any]:
    passages = incorporation.run(h, options, conditions=tuple(LABELS))
    facts = facts_part(h, options)
    return {
        "protocol": "p6",
        "name": NAME,
        "parts": {
            "passages": {
                "questions": passages["questions"],
                "accuracy": passages["accuracy"],
                "seeds": passages["seeds"],
            },
            "facts": facts,
        },
        "costs": {"passages": _dream_costs(passages), "facts": _dream_costs(facts)},
    }


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    columns = ["part", *LABELS.values(), "dreams kept / written (yield)", "sleep s without / with (ratio)"]
    rows = []
    for part, label in (("passages", "SEAL passages"), ("facts", "facts, unseen phrasing")):
        accuracy, cost = result["parts"][part]["accuracy"], result["costs"][part]
        yield_ = "n/a" if cost["yield"] is None else f"{cost['yield']:.0%}"
        rows.append(
            [
                label,
                *[ci_text(accuracy[c]) for c in LABELS],
                f"{cost['dreams_kept']} / {cost['dreams_generated']} ({yield_})",
                f"{cost['sleep_s']:.0f} / {cost['sleep_dreams_s']:.0f} ({cost['time_ratio']:.2f}x)",
            ]
        )
    return columns, rows


def plot(result: dict[str, Any], out_dir: Path) -> list[Path]:
    from sleep_agent.eval.plots import bars

    path = out_dir / "p6_dreams.png"
    parts = result["parts"]
    bars(
        path,
        {
            LABELS[c]: {
                "SEAL passages": parts["passages"]["accuracy"][c],
                "facts (unseen phrasing)": parts["facts"]["accuracy"][c],
            }
            for c in LABELS
        },
        title="P6 dream utility: the same sleeps with and without dreaming",
        ylabel="accuracy",
    )
    return [path]
