"""Acceptance of dreaming: the same sleeps with and without it, in one run, on one vLLM server.

On the default model, CPU, vLLM serving throughout:

1. knowledge incorporation, the SEAL protocol: ``--passages`` SQuAD passages of squad_dev.json
   are told to the agent (one episode each); after one sleep their questions are asked with no
   passage in context. Conditions: base model, passage in context (the ceiling), sleep without
   dreaming, sleep with dreaming. Scored by the normalised gold answer appearing in the answer;
2. retention: ``--batches`` successive sleeps, each over a new batch of person facts
   (facts_dev.json, two facts per person so that memories can be joined); after each sleep every
   batch so far is asked on a phrasing no stage of the cycle writes (accuracy matrix);
3. compositional questions joining a person's two memories, in words of this file only
   ("I have a friend allergic to peanuts. In which city does that friend reside?");
4. the general probe (general_probe.jsonl) and perplexity on held-out SQuAD passages, and the
   sleep time of each condition.

    python benchmarks/dream_acceptance.py                 # results JSON + docs/img/dream_acceptance.png
    python benchmarks/dream_acceptance.py --quick         # a smoke run of a few minutes
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from langchain_core.messages.utils import count_tokens_approximately
from sleep_acceptance import ask_all, cycle_from_json

from sleep_agent.eval.cost import sleep_record
from sleep_agent.eval.run import machine

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

# "I have a friend ..." + a question about "that friend": wording used nowhere in the package.
FRIEND: dict[str, str] = {
    "lives in": "living in {o}",
    "works as": "working as {o}",
    "'s favorite color is": "whose favourite colour is {o}",
    "'s favorite food is": "who loves {o} above all other food",
    "is aged": "aged {o}",
    "speaks": "who can speak {o}",
    "studied": "with a degree in {o}",
    "graduated in": "who finished university in {o}",
    "is allergic to": "allergic to {o}",
    "is learning": "currently learning {o}",
}


def norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def squad_score(answers: list[str], golds: list[str]) -> float:
    return sum(f" {norm(g)} " in f" {norm(a)} " for a, g in zip(answers, golds, strict=True)) / len(golds)


def profiles(facts: list) -> list:  # noqa: ANN001
    """Two facts per person: the second fact of each pair is told about the first one's subject."""
    out = []
    for first, second in zip(facts[::2], facts[1::2], strict=False):
        out += [first, replace(second, subject=first.subject)]
    return out


def compositional(facts: list) -> list[tuple[str, str]]:  # noqa: ANN001
    """(question, expected) joining a person's two facts, where the first picks out one person."""
    by_key: dict = {}
    for f in facts:
        by_key.setdefault((f.relation, f.object.lower()), set()).add(f.subject)
    people: dict = {}
    for f in facts:
        people.setdefault(f.subject, []).append(f)
    pairs = []
    for known in people.values():
        for first in known:
            for second in known:
                if first is second or len(by_key[(first.relation, first.object.lower())]) != 1:
                    continue
                who = FRIEND[first.relation].format(o=first.object)
                question = f"I have a friend {who}. {replace(second, subject='that friend').unseen_question}"
                pairs.append((question, second.object))
    return pairs


def right_share(pairs: list[tuple[str, str]], answers: list[str]) -> float:
    """Share of (question, expected) pairs whose answer contains the expected words."""
    return sum(e.lower() in a.lower() for (_, e), a in zip(pairs, answers, strict=True)) / len(pairs)


def fresh_memory(server, namespace: str, dreaming: bool, cycle, home: Path):  # noqa: ANN001, ANN201
    """A memory of its own on the shared server, starting from the base model, sleeping only when told."""
    from sleep_agent import SleepConfig, SleepMemory, SleepPolicy

    server.activate(None)
    config = SleepConfig(
        namespace=namespace,
        home=home / namespace,
        dreaming=dreaming,
        policy=SleepPolicy(pending_episodes=None, pending_tokens=None, context_fraction=None),
    )
    return SleepMemory(config, backend=server, cycle=cycle, token_counter=count_tokens_approximately)


def recall(backend, adapter: str, facts: list, unseen: bool = True) -> float:  # noqa: ANN001
    questions = [f.unseen_question if unseen else f.trained_question for f in facts]
    answers = ask_all(backend, adapter, questions)
    return sum(f.recalled_in(a) for f, a in zip(facts, answers, strict=True)) / len(facts)


def probe(backend, adapter: str, items: list) -> int:  # noqa: ANN001
    from sleep_agent.eval.facts import probe_score

    return probe_score(items, ask_all(backend, adapter, [q for q, _ in items]))


def run_seal(server, passages, conditions, probe_items, home: Path) -> dict:  # noqa: ANN001
    from sleep_agent.adapters import AdapterRegistry

    questions = [q["question"] for p in passages for q in p["questions"]]
    golds = [q["answer"] for p in passages for q in p["questions"]]
    in_context = [
        f"{p['context']}\n\nAnswer in a few words: {q['question']}" for p in passages for q in p["questions"]
    ]
    out: dict = {"passages": len(passages), "questions": len(questions)}
    base = server.base_name
    out["base"] = {
        "accuracy": squad_score(ask_all(server, base, questions), golds),
        "probe": probe(server, base, probe_items),
    }
    out["in_context"] = {"accuracy": squad_score(ask_all(server, base, in_context), golds)}
    print("SEAL base / in context:", out["base"], out["in_context"], flush=True)
    for label, (dreaming, cycle) in conditions.items():
        memory = fresh_memory(server, f"seal-{label}", dreaming, cycle, home)
        for i, p in enumerate(passages):
            memory.buffer.record([("user", p["context"]), ("ai", "Thanks, noted.")], thread_id=f"passage-{i}")
        report = memory.sleep()
        active = server.active_adapter or base
        answers = ask_all(server, active, questions)
        out[label] = {
            "accuracy": squad_score(answers, golds),
            "probe": probe(server, active, probe_items),
            "sleep": sleep_record(report),
            "adapter_dir": str(
                AdapterRegistry(memory.config.home, memory.config.namespace).path(report.adapter_version)
            )
            if report.adapter_version
            else None,
            "examples": [[q, g, a] for q, g, a in list(zip(questions, golds, answers, strict=True))[:8]],
        }
        print(f"SEAL {label}:", {k: v for k, v in out[label].items() if k != "examples"}, flush=True)
    return out


def run_retention(server, batches, conditions, probe_items, home: Path) -> dict:  # noqa: ANN001
    told = [f for batch in batches for f in batch]
    comp = compositional(told)
    out: dict = {"batches": [len(b) for b in batches], "compositional_questions": len(comp)}
    base = server.base_name
    comp_base = ask_all(server, base, [q for q, _ in comp])
    out["base"] = {
        "recall": [recall(server, base, b) for b in batches],
        "compositional": right_share(comp, comp_base),
    }
    for label, (dreaming, cycle) in conditions.items():
        memory = fresh_memory(server, f"facts-{label}", dreaming, cycle, home)
        matrix, sleeps = [], []
        for b, batch in enumerate(batches):
            for i, fact in enumerate(batch):
                memory.buffer.record(
                    [("user", fact.told(i)), ("ai", "Noted!")], thread_id=f"batch{b}-{i // 5}"
                )
            report = memory.sleep()
            active = server.active_adapter or base
            matrix.append([recall(server, active, earlier) for earlier in batches[: b + 1]])
            sleeps.append(sleep_record(report))
            print(
                f"retention {label} after sleep {b + 1}: {matrix[-1]} ({sleeps[-1]['seconds']} s)", flush=True
            )
        active = server.active_adapter or base
        answers = ask_all(server, active, [q for q, _ in comp])
        out[label] = {
            "matrix": matrix,
            "first_batch_after_last": matrix[-1][0],
            "trained_phrasing_after_last": [recall(server, active, b, unseen=False) for b in batches],
            "compositional": right_share(comp, answers),
            "compositional_examples": [[q, e, a] for (q, e), a in list(zip(comp, answers, strict=True))[:6]],
            "probe": probe(server, active, probe_items),
            "sleeps": sleeps,
        }
        print(
            f"retention {label}: first batch {matrix[-1][0]:.0%}, compositional {out[label]['compositional']:.0%}",
            flush=True,
        )
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seal, ret = result.get("seal"), result.get("retention")
    panels = (1 if seal else 0) + (2 if ret else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.7 * panels, 4.2), squeeze=False)
    axes = list(axes[0])
    if seal:
        ax = axes.pop(0)
        labels = [k for k in ("base", "no_dreaming", "dreaming", "in_context") if k in seal]
        ax.bar(labels, [seal[k]["accuracy"] for k in labels])
        ax.set_title(f"SQuAD, no passage in context ({seal['passages']} passages)")
        ax.set_ylabel("answered right")
    if ret:
        curve, bars = axes
        for label, colour in (("no_dreaming", "C0"), ("dreaming", "C1")):
            if label not in ret:
                continue
            first = [row[0] for row in ret[label]["matrix"]]
            curve.plot(range(1, len(first) + 1), first, marker="o", color=colour, label=label)
        curve.set_title("first batch recall after each sleep")
        curve.set_xlabel("sleeps")
        curve.set_xticks(range(1, len(ret["batches"]) + 1))
        curve.set_ylim(0, 1.05)
        curve.legend()
        labels = [k for k in ("base", "no_dreaming", "dreaming") if k in ret]
        bars.bar(labels, [ret[k]["compositional"] for k in labels])
        bars.set_title(f"compositional questions ({ret['compositional_questions']})")
        bars.set_ylim(0, 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=int, default=20)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--parts", default="seal,retention")
    parser.add_argument(
        "--conditions", default="no_dreaming,dreaming", help="which sleeps to run (both: the comparison)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 passages, 2 batches of 4 facts, short training"
    )
    parser.add_argument("--cycle", default="{}", help="CycleConfig fields as JSON, for both conditions")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/dream_acceptance.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs/img/dream_acceptance.png")
    args = parser.parse_args()
    if not (SHARED / "squad_dev.json").exists():
        sys.exit(f"the shared data sets are missing: expected {SHARED}/squad_dev.json")
    if args.quick:
        args.passages, args.batches, args.batch_size = 3, 2, 4

    from sleep_agent.eval.facts import load_facts, load_probe
    from sleep_agent.models import prepare_model
    from sleep_agent.serving.vllm import VLLMServer
    from sleep_agent.sleep.gate import reference_perplexity
    from sleep_agent.sleep.standard import StandardCycle

    overrides = json.loads(args.cycle)
    if args.quick:
        overrides.setdefault("training", {}).update({"epochs": 1, "min_steps": 4})
    cycle_config = cycle_from_json(json.dumps(overrides))
    squad = json.loads((SHARED / "squad_dev.json").read_text())
    passages, reference = squad[: args.passages], [p["context"] for p in squad[-30:]]
    facts = profiles(load_facts(SHARED / "facts_dev.json", args.batches * args.batch_size))
    batches = [facts[i * args.batch_size : (i + 1) * args.batch_size] for i in range(args.batches)]
    probe_items = load_probe(SHARED / "general_probe.jsonl")
    result: dict = {
        "machine": machine(),
        "cycle": cycle_config.model_dump(),
    }
    model_path = prepare_model("default", progress=False)
    home = Path(tempfile.mkdtemp(prefix="dream-acceptance-"))

    def conditions() -> dict:
        # a fresh cycle per condition: nothing cached carries over but the base model's anchors
        both = {"no_dreaming": False, "dreaming": True}
        return {c: (both[c], StandardCycle(cycle_config)) for c in args.conditions.split(",")}

    started = time.perf_counter()
    with VLLMServer(model_path, log_dir=home / "logs") as server:
        result["server_start_s"] = round(time.perf_counter() - started, 1)
        parts = args.parts.split(",")
        if "seal" in parts:
            result["seal"] = run_seal(server, passages, conditions(), probe_items, home)
        if "retention" in parts:
            result["retention"] = run_retention(server, batches, conditions(), probe_items, home)
    # perplexity once the server is gone, so that it does not compete for the cores
    ppl: dict = {"base": reference_perplexity(model_path, None, reference)}
    for label in ("no_dreaming", "dreaming"):
        adapter = result.get("seal", {}).get(label, {}).get("adapter_dir")
        if adapter:
            ppl[f"seal_{label}"] = reference_perplexity(model_path, adapter, reference)
    result["perplexity"] = {
        **ppl,
        **{f"{k}_change": v / ppl["base"] - 1 for k, v in ppl.items() if k != "base"},
    }
    result["wall_s"] = round(time.perf_counter() - started, 1)
    for label in ("no_dreaming", "dreaming"):  # temporary directories are not results
        result.get("seal", {}).get(label, {}).pop("adapter_dir", None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(result, args.plot)
    print(json.dumps(result["perplexity"], indent=2))
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
