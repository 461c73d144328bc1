"""P2 continual retention: K sleeps, each on a new batch of facts; every earlier batch asked after each.

The accuracy matrix (recall on the unseen phrasing of batch i after sleep t), ACC, backward transfer
and the worst forgetting of batch 1, averaged over seeds, with a heat map.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from sleep_agent.eval import metrics
from sleep_agent.eval.cost import sleep_record
from sleep_agent.eval.facts import PersonFact, sample_facts, tell
from sleep_agent.eval.harness import Harness
from sleep_agent.eval.protocol import EvalOptions, ci_text, data_file

NAME = "P2 continual retention"


def recall(h: Harness, facts: list[PersonFact], desc: str) -> list[bool]:
    answers = h.answers([f.unseen_question for f in facts], desc=desc)
    return [f.recalled_in(a) for f, a in zip(facts, answers, strict=True)]


def check(options: EvalOptions) -> None:
    """Fail on missing data before the server starts."""
    data_file("facts_dev.json", options)


def run(h: Harness, options: EvalOptions) -> dict[str, Any]:
    k, size = options.size(2, 3), options.size(5, 10)
    path = data_file("facts_dev.json", options)
    seeds = []
    for seed in range(options.seeds):
        facts = sample_facts(path, k * size, seed)
        batches = [facts[i * size : (i + 1) * size] for i in range(k)]
        memory = h.memory(f"p2-seed{seed}", seed=seed)
        base = [metrics.mean(recall(h, b, f"base batch {i + 1}")) for i, b in enumerate(batches)]
        matrix: list[list[float]] = []
        right_first: list[bool] = []
        sleeps = []
        for t, batch in enumerate(batches):
            tell(memory, batch, thread=f"batch{t}")
            sleeps.append(sleep_record(memory.sleep()))
            row = [
                recall(h, b, f"after sleep {t + 1}, batch {i + 1}") for i, b in enumerate(batches[: t + 1])
            ]
            matrix.append([metrics.mean(r) for r in row])
            right_first = row[0]
        seeds.append(
            {
                "seed": seed,
                "base": base,
                "matrix": matrix,
                "scores": metrics.retention(matrix),
                "first_batch_last_right": right_first,
                "sleeps": sleeps,
            }
        )
    matrix = [[statistics.fmean(s["matrix"][t][i] for s in seeds) for i in range(t + 1)] for t in range(k)]
    return {
        "protocol": "p2",
        "name": NAME,
        "batches": k,
        "batch_size": size,
        "seeds": seeds,
        "matrix": matrix,
        "base": [statistics.fmean(s["base"][i] for s in seeds) for i in range(k)],
        "scores": {
            key: statistics.fmean(s["scores"][key] for s in seeds)
            if seeds[0]["scores"][key] is not None
            else None
            for key in seeds[0]["scores"]
        },
        "first_batch_last": metrics.summarize([v for s in seeds for v in s["first_batch_last_right"]]),
        "sleep_s": statistics.fmean(sum(x["seconds"] for x in s["sleeps"]) for s in seeds),
    }


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    k = result["batches"]
    columns = ["after sleep", *[f"batch {i + 1}" for i in range(k)], "gate"]
    rows = [["base model", *[f"{v:.0%}" for v in result["base"]], ""]]
    for t, row in enumerate(result["matrix"]):
        rows.append([str(t + 1), *[f"{v:.0%}" for v in row], *[""] * (k - len(row)), gate_text(result, t)])
    scores = result["scores"]
    bwt = "n/a" if scores["bwt"] is None else f"{scores['bwt']:+.0%}"
    pad = [""] * k
    rows.append(["ACC (mean after the last sleep)", f"{scores['acc']:.0%}", *pad])
    rows.append(["backward transfer (BWT)", bwt, *pad])
    rows.append(["worst forgetting of batch 1", f"{scores['first_batch_forgetting']:.0%}", *pad])
    rows.append(["batch 1 after the last sleep", ci_text(result["first_batch_last"]), *pad])
    return columns, rows


def gate_text(result: dict[str, Any], t: int) -> str:
    """What the gate did with sleep ``t``: a rejected sleep leaves its batch pending, so say so."""
    sleeps = [s["sleeps"][t] for s in result["seeds"]]
    if len(sleeps) == 1:
        verdict = "published" if sleeps[0].get("adapter_version") else "rejected"
        return f"{verdict}: {sleeps[0].get('gate_reason', '')}".rstrip(": ")
    published = sum(1 for s in sleeps if s.get("adapter_version"))
    return f"published in {published}/{len(sleeps)} seeds"


def plot(result: dict[str, Any], out_dir: Path) -> list[Path]:
    from sleep_agent.eval.plots import heatmap

    path = out_dir / "p2_retention.png"
    scores = result["scores"]
    bwt = "n/a" if scores["bwt"] is None else f"{scores['bwt']:+.0%}"
    heatmap(
        path,
        result["matrix"],
        title=f"P2 retention, {result['batches']} sleeps x {result['batch_size']} facts "
        f"(ACC {scores['acc']:.0%}, BWT {bwt})",
    )
    return [path]
