"""P3 general regression: what sleeping does to general ability, before and after each sleep.

The keyword probe (general_probe.jsonl, 20 items) and a larger probe of our own (40 items),
perplexity of held-out reference text (SQuAD passages never slept on), format keeping (one word, a
number, yes/no, a list, JSON) and refusal of harmful requests, on the base model and after each
sleep on a new batch of facts.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from sleep_agent.adapters import AdapterRegistry
from sleep_agent.eval import metrics
from sleep_agent.eval.cost import sleep_record
from sleep_agent.eval.datasets import load_squad
from sleep_agent.eval.facts import load_probe, probe_score, sample_facts, tell
from sleep_agent.eval.harness import Harness
from sleep_agent.eval.protocol import PACKAGE_DATA, EvalOptions, data_file

NAME = "P3 general regression"
MEASURES = ("general_probe", "probe_large", "perplexity", "format", "refusal")


def measure(
    h: Harness, adapter: str, adapter_dir: Path | None, items: dict[str, Any], desc: str
) -> dict[str, Any]:
    from sleep_agent.sleep.gate import reference_perplexity

    out: dict[str, Any] = {}
    for name in ("general_probe", "probe_large"):
        probe = items[name]
        out[name] = probe_score(
            probe, h.answers([q for q, _ in probe], adapter=adapter, desc=f"{desc} {name}")
        )
    behaviour = items["behaviour"]
    answers = h.answers(
        [b["prompt"] for b in behaviour], adapter=adapter, max_tokens=48, desc=f"{desc} behaviour"
    )
    kept = [(b["check"], metrics.follows(a, b["check"])) for b, a in zip(behaviour, answers, strict=True)]
    out["format"] = metrics.mean([ok for check, ok in kept if check != "refuse"])
    out["refusal"] = metrics.mean([ok for check, ok in kept if check == "refuse"])
    out["behaviour_answers"] = answers
    out["perplexity"] = reference_perplexity(h.model_path, adapter_dir, items["reference"])
    return out


def check(options: EvalOptions) -> None:
    """Fail on missing data before the server starts."""
    for name in ("squad_dev.json", "general_probe.jsonl"):
        data_file(name, options, override=False)
    data_file("facts_dev.json", options)


def run(h: Harness, options: EvalOptions) -> dict[str, Any]:
    k, size = options.size(2, 3), options.size(5, 10)
    squad = load_squad(data_file("squad_dev.json", options, override=False))
    items = {
        "general_probe": load_probe(data_file("general_probe.jsonl", options, override=False)),
        "probe_large": load_probe(PACKAGE_DATA / "probe_large.jsonl"),
        "behaviour": [
            json.loads(line) for line in (PACKAGE_DATA / "behaviour.jsonl").read_text().splitlines() if line
        ],
        "reference": [p.context for p in squad[-options.size(10, 30) :]],
    }
    facts_path = data_file("facts_dev.json", options)
    base = measure(h, h.backend.base_name, None, items, "base")
    seeds = []
    for seed in range(options.seeds):
        facts = sample_facts(facts_path, k * size, seed)
        memory = h.memory(f"p3-seed{seed}", seed=seed)
        registry = AdapterRegistry(memory.config.home, memory.config.namespace)
        after, sleeps = [], []
        for t in range(k):
            tell(memory, facts[t * size : (t + 1) * size], thread=f"batch{t}")
            report = memory.sleep()
            sleeps.append(sleep_record(report))
            version = registry.current()
            after.append(
                measure(
                    h, h.active, registry.path(version) if version else None, items, f"after sleep {t + 1}"
                )
            )
        seeds.append({"seed": seed, "after": after, "sleeps": sleeps})
    mean_after = [{m: statistics.fmean(s["after"][t][m] for s in seeds) for m in MEASURES} for t in range(k)]
    return {
        "protocol": "p3",
        "name": NAME,
        "sizes": {n: len(v) for n, v in items.items()},
        "sleeps": k,
        "batch_size": size,
        "base": base,
        "after": mean_after,
        "seeds": seeds,
        "perplexity_change": [a["perplexity"] / base["perplexity"] - 1 for a in mean_after],
    }


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    sizes = result["sizes"]
    columns = [
        "model",
        f"probe (of {sizes['general_probe']})",
        f"larger probe (of {sizes['probe_large']})",
        "perplexity (change)",
        "format kept",
        "refusals",
    ]
    runs = [("base", result["base"], None)]
    runs += [
        (f"after sleep {t + 1}", a, c)
        for t, (a, c) in enumerate(zip(result["after"], result["perplexity_change"], strict=True))
    ]
    rows = []
    for label, run, change in runs:
        ppl = f"{run['perplexity']:.2f}" + ("" if change is None else f" ({change:+.1%})")
        rows.append(
            [
                label,
                f"{run['general_probe']:.1f}",
                f"{run['probe_large']:.1f}",
                ppl,
                f"{run['format']:.0%}",
                f"{run['refusal']:.0%}",
            ]
        )
    return columns, rows


def plot(result: dict[str, Any], out_dir: Path) -> list[Path]:
    from sleep_agent.eval.plots import lines

    xs = ["base", *[f"sleep {t + 1}" for t in range(result["sleeps"])]]
    runs = [result["base"], *result["after"]]
    path = out_dir / "p3_regression.png"
    lines(
        path,
        xs,
        {
            f"probe (of {result['sizes']['general_probe']})": [r["general_probe"] for r in runs],
            f"larger probe (of {result['sizes']['probe_large']})": [r["probe_large"] for r in runs],
            "held-out perplexity": [r["perplexity"] for r in runs],
            "format kept": [r["format"] for r in runs],
            "refusals": [r["refusal"] for r in runs],
        },
        title=f"P3 general ability over {result['sleeps']} sleeps of {result['batch_size']} facts",
    )
    return [path]
