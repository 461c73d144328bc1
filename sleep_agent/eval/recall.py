"""P1 fact recall: facts told in conversation, then asked with an empty context and retrieval off.

Recall on the phrasing the extractor trains and on one no stage of the cycle sees, precision (right
over attempted), and how many sleeps it takes to reach 90% on the unseen phrasing (the facts are
told again each day, as a user repeats what matters). Cost figures come with it: sleep seconds per
memory, training tokens/s and their share of this machine's matmul peak, adapter swap time and the
memory node's overhead per turn (recording plus retrieval).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from sleep_agent.eval import metrics
from sleep_agent.eval.cost import matmul_gflops, parameter_count, sleep_costs, sleep_record
from sleep_agent.eval.facts import PersonFact, sample_facts, tell
from sleep_agent.eval.harness import Harness
from sleep_agent.eval.protocol import EvalOptions, ci_text, data_file

NAME = "P1 fact recall"


def measure(h: Harness, adapter: str, facts: list[PersonFact], desc: str) -> dict[str, Any]:
    """Per-fact right/wrong on both phrasings, and precision on the unseen one."""
    trained = h.answers([f.trained_question for f in facts], adapter=adapter, desc=f"{desc} trained")
    unseen = h.answers([f.unseen_question for f in facts], adapter=adapter, desc=f"{desc} unseen")
    right_unseen = [f.recalled_in(a) for f, a in zip(facts, unseen, strict=True)]
    return {
        "trained": [f.recalled_in(a) for f, a in zip(facts, trained, strict=True)],
        "unseen": right_unseen,
        "precision": metrics.precision(right_unseen, unseen),
        "examples": [[f.unseen_question, f.object, a] for f, a in list(zip(facts, unseen, strict=True))[:5]],
    }


def check(options: EvalOptions) -> None:
    """Fail on missing data before the server starts."""
    data_file("facts_dev.json", options)


def run(h: Harness, options: EvalOptions) -> dict[str, Any]:
    n, days = options.size(10, 50), options.size(1, 3)
    path = data_file("facts_dev.json", options)
    peak, parameters = matmul_gflops(), parameter_count(h.model_path)
    seeds: list[dict[str, Any]] = []
    for seed in range(options.seeds):
        facts = sample_facts(path, n, seed)
        memory = h.memory(f"p1-seed{seed}", seed=seed)
        base = measure(h, h.backend.base_name, facts, "base")
        record_s: list[float] = []
        after, sleeps = [], []
        for day in range(days):
            record_s += tell(memory, facts, thread=f"day{day}")
            sleeps.append(sleep_record(memory.sleep()))
            after.append(measure(h, h.active, facts, f"after sleep {day + 1}"))
            if metrics.mean(after[-1]["unseen"]) >= 0.9:
                break
        recall_s = []
        for fact in facts:
            started = time.perf_counter()
            memory.recall_text(fact.unseen_question)
            recall_s.append(time.perf_counter() - started)
        seeds.append(
            {
                "seed": seed,
                "base": base,
                "after": after,
                "sleeps": sleeps,
                "sleeps_to_90": metrics.sleeps_to([metrics.mean(a["unseen"]) for a in after]),
                "cost": {
                    **sleep_costs(sleeps, len(facts) * len(sleeps), parameters, peak),
                    "record_ms_per_turn": round(statistics.median(record_s) * 1000, 2),
                    "recall_ms_per_turn": round(statistics.median(recall_s) * 1000, 2),
                },
            }
        )
    return {"protocol": "p1", "name": NAME, "facts": n, "max_sleeps": days, "seeds": seeds, **_pooled(seeds)}


def _pooled(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-question results pooled over seeds, with bootstrap intervals."""

    def pool(pick: str, key: str) -> dict[str, float | int]:
        values = [
            v
            for s in seeds
            for v in (s["base"] if pick == "base" else s["after"][0 if pick == "first" else -1])[key]
        ]
        return metrics.summarize(values)

    out: dict[str, Any] = {}
    for pick in ("base", "first", "last"):
        out[pick] = {key: pool(pick, key) for key in ("trained", "unseen")}
    precisions = [s["after"][-1]["precision"] for s in seeds if s["after"][-1]["precision"] is not None]
    out["last"]["precision"] = statistics.fmean(precisions) if precisions else None
    out["sleeps_to_90"] = [s["sleeps_to_90"] for s in seeds]
    out["cost"] = {
        key: statistics.median(s["cost"][key] for s in seeds if s["cost"][key] is not None)
        for key in seeds[0]["cost"]
        if any(s["cost"][key] is not None for s in seeds)
    }
    return out


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    columns = ["condition", "recall (trained phrasing)", "recall (unseen phrasing)", "precision"]
    rows = []
    for label, pick in (("base model", "base"), ("after 1 sleep", "first"), ("after last sleep", "last")):
        run = result[pick]
        precision = run.get("precision")
        rows.append(
            [
                label,
                ci_text(run["trained"]),
                ci_text(run["unseen"]),
                "" if precision is None else f"{precision:.0%}",
            ]
        )
    cost = result["cost"]
    rows.append(["sleeps to 90% (per seed)", str(result["sleeps_to_90"]), "", ""])
    rows.append(["sleep s per memory", f"{cost.get('sleep_s_per_memory')}", "", ""])
    if cost.get("train_tokens_per_s"):
        rows.append(
            [
                "training tokens/s (share of matmul peak)",
                f"{cost['train_tokens_per_s']:.0f} ({cost.get('train_peak_fraction', 0):.1%} of "
                f"{cost['peak_gflops']:.0f} GFLOP/s)",
                "",
                "",
            ]
        )
    rows.append(["adapter swap s", f"{cost.get('adapter_swap_s')}", "", ""])
    rows.append(
        [
            "memory node ms/turn (record + recall)",
            f"{cost['record_ms_per_turn']} + {cost['recall_ms_per_turn']}",
            "",
            "",
        ]
    )
    return columns, rows


def plot(result: dict[str, Any], out_dir: Path) -> list[Path]:
    from sleep_agent.eval.plots import bars

    groups = {
        label: result[pick]
        for label, pick in (("base", "base"), ("1 sleep", "first"), ("last sleep", "last"))
    }
    path = out_dir / "p1_recall.png"
    bars(
        path,
        {
            "trained phrasing": {k: v["trained"] for k, v in groups.items()},
            "unseen phrasing": {k: v["unseen"] for k, v in groups.items()},
        },
        title=f"P1 fact recall, {result['facts']} facts, empty context (95% bootstrap CI)",
        ylabel="recall",
    )
    return [path]
