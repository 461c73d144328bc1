"""P4 knowledge incorporation, the SEAL protocol: passages consolidated, questions asked without them.

Conditions, in one run on the same passages: the base model, the passage in the prompt (the upper
bound), LoRA trained directly on the passage text, a sleep (extraction), and a sleep with dreaming.
Answers are scored against SQuAD's gold answer (normalised containment).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from sleep_agent.eval import metrics
from sleep_agent.eval.cost import sleep_record
from sleep_agent.eval.datasets import Passage, load_squad
from sleep_agent.eval.harness import Harness
from sleep_agent.eval.protocol import EvalOptions, ci_text, data_file

NAME = "P4 knowledge incorporation (SEAL protocol)"
CONDITIONS = {
    "base": "base model",
    "in_context": "passage in the prompt",
    "train_on_passage": "LoRA on the passage text",
    "sleep": "sleep",
    "sleep_dreams": "sleep with dreaming",
}
HELD_OUT = 30  # the last passages are reference text for perplexity, never slept on


def pick_passages(passages: list[Passage], n: int, seed: int) -> list[Passage]:
    """Seed 0: the first ``n``; other seeds: a random ``n`` of those not held out."""
    pool = passages[:-HELD_OUT] if len(passages) > HELD_OUT + n else passages
    return pool[:n] if seed == 0 else random.Random(seed).sample(pool, n)


def tell_passages(memory: Any, passages: list[Passage]) -> None:
    for i, p in enumerate(passages):
        memory.buffer.record([("user", p.context), ("ai", "Thanks, noted.")], thread_id=f"passage-{i}")


def score(h: Harness, prompts: list[str], golds: list[str], adapter: str, desc: str) -> dict[str, Any]:
    answers = h.answers(prompts, adapter=adapter, desc=desc)
    right = [metrics.answered(a, [g]) for a, g in zip(answers, golds, strict=True)]
    return {
        "right": right,
        "examples": [[q, g, a] for q, g, a in list(zip(prompts, golds, answers, strict=True))[:4]],
    }


def train_on_passage(h: Harness, passages: list[Passage], seed: int, name: str) -> dict[str, Any]:
    """The SEAL baseline: LoRA trained on the passage text itself, the cycle's training settings."""
    from sleep_agent.sleep.consolidate import ChatSample, train_adapter

    config = h.cycle(seed).config.training
    out = h.work_dir / name
    trained = train_adapter(
        h.model_path,
        [ChatSample.text(p.context, anchor=False) for p in passages],
        out,
        config,
        progress=h.progress,
    )
    h.backend.load_adapter(name, out)
    return {"seconds": round(trained.seconds, 1), "train_tokens_per_s": round(trained.tokens_per_s, 1)}


def check(options: EvalOptions) -> None:
    """Fail on missing or malformed data before the server starts."""
    load_squad(data_file("squad_dev.json", options))


def run(h: Harness, options: EvalOptions, conditions: tuple[str, ...] = tuple(CONDITIONS)) -> dict[str, Any]:
    n = options.size(3, 20)
    squad = load_squad(data_file("squad_dev.json", options))
    seeds = []
    for seed in range(options.seeds):
        passages = pick_passages(squad, n, seed)
        questions = [q["question"] for p in passages for q in p.questions]
        golds = [q["answer"] for p in passages for q in p.questions]
        in_context = [
            f"{p.context}\n\nAnswer in a few words: {q['question']}" for p in passages for q in p.questions
        ]
        out: dict[str, Any] = {"seed": seed, "passages": len(passages), "questions": len(questions)}
        base = h.backend.base_name
        if "base" in conditions:
            out["base"] = score(h, questions, golds, base, "base")
        if "in_context" in conditions:
            out["in_context"] = score(h, in_context, golds, base, "in context")
        if "train_on_passage" in conditions:
            name = f"p4-passage-seed{seed}@v1"
            cost = train_on_passage(h, passages, seed, name)
            out["train_on_passage"] = {**score(h, questions, golds, name, "trained on passage"), "cost": cost}
            h.backend.unload_adapter(name)
        for label, dreaming in (("sleep", False), ("sleep_dreams", True)):
            if label not in conditions:
                continue
            memory = h.memory(f"p4-{label.replace('_', '-')}-seed{seed}", dreaming=dreaming, seed=seed)
            tell_passages(memory, passages)
            report = memory.sleep()
            out[label] = {**score(h, questions, golds, h.active, label), "sleep": sleep_record(report)}
        seeds.append(out)
    pooled = {c: metrics.summarize([v for s in seeds for v in s[c]["right"]]) for c in conditions}
    return {
        "protocol": "p4",
        "name": NAME,
        "passages": n,
        "questions": seeds[0]["questions"],
        "seeds": seeds,
        "accuracy": pooled,
    }


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for condition, summary in result["accuracy"].items():
        seconds = [
            s[condition].get("sleep", s[condition].get("cost", {})).get("seconds") for s in result["seeds"]
        ]
        seconds = [x for x in seconds if x is not None]
        rows.append(
            [CONDITIONS[condition], ci_text(summary), f"{sum(seconds) / len(seconds):.0f}" if seconds else ""]
        )
    return [
        "condition",
        f"accuracy ({result['questions']} questions x {len(result['seeds'])} seeds)",
        "train/sleep s",
    ], rows


def plot(result: dict[str, Any], out_dir: Path) -> list[Path]:
    from sleep_agent.eval.plots import bars

    path = out_dir / "p4_incorporation.png"
    bars(
        path,
        {"accuracy": {CONDITIONS[c]: s for c, s in result["accuracy"].items()}},
        title=f"P4 SEAL protocol, {result['passages']} passages, no passage in the prompt unless said",
        ylabel="answers containing the gold answer",
    )
    return [path]
