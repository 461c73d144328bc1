"""Acceptance of the sleep cycle: facts told in conversation, one sleep, recall and general ability.

On the default model with vLLM serving on CPU (it keeps running beside the sleep, as in use):

1. 50 facts from facts_dev.json (5 per relation) are told in conversations of 5 turns each, in
   varied wording ("By the way, ...", "My friend ..."), and recorded as episodes;
2. recall is asked of the served model with an empty context and no retrieval, on a phrasing the
   extractor trains ("Where does Aria live?") and on a phrasing written here that no stage of the
   cycle ever sees ("In which city does Aria reside?");
3. the general probe (general_probe.jsonl, 20 items) and a larger probe of our own (40 items,
   sleep_agent/eval/data/probe_large.jsonl), and perplexity on held-out reference text (SQuAD passages);
4. one ``memory.sleep()`` with the default cycle, timed per stage;
5. the same measures after, and, in the same run, the hand-made baseline of the issue: no critic,
   no gate, clean templates, 30 anchors, LoRA r=16, lr 2e-4, 4 epochs.

    python benchmarks/sleep_acceptance.py          # results JSON + docs/img/sleep_acceptance.png
    python benchmarks/sleep_acceptance.py --facts 20 --no-baseline   # quicker
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sleep_agent.eval.run import machine

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def ask_all(backend, adapter: str, prompts: list[str], max_tokens: int = 32) -> list[str]:  # noqa: ANN001
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda q: backend.chat(q, adapter=adapter, max_tokens=max_tokens), prompts))


def cycle_from_json(text: str):  # noqa: ANN201
    """The default CycleConfig with the fields given as JSON; nested settings are merged, not replaced."""
    from sleep_agent.sleep.standard import CycleConfig

    defaults, overrides = CycleConfig().model_dump(), json.loads(text)
    merged = {k: {**defaults[k], **v} if isinstance(v, dict) else v for k, v in overrides.items()}
    return CycleConfig.model_validate({**defaults, **merged})


def measure(backend, adapter: str, facts, probes) -> dict:  # noqa: ANN001
    from sleep_agent.eval.facts import probe_score

    def recall(questions: list[str]) -> tuple[float, list[str]]:
        answers = ask_all(backend, adapter, questions)
        return sum(f.recalled_in(a) for f, a in zip(facts, answers, strict=True)) / len(facts), answers

    out: dict = {"adapter": adapter}
    out["recall_trained"], _ = recall([f.trained_question for f in facts])
    out["recall_unseen"], unseen_answers = recall([f.unseen_question for f in facts])
    for name, items in probes.items():
        answers = ask_all(backend, adapter, [q for q, _ in items])
        out[name] = probe_score(items, answers)
        out[f"{name}_answers"] = answers
    out["examples"] = [[f.unseen_question, a] for f, a in zip(facts[:5], unseen_answers, strict=False)]
    return out


def _brief(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "examples" and not k.endswith("_answers")}


def perplexity(model_path: Path, adapter_dir: Path | None, texts: list[str]) -> float:
    """Token-weighted perplexity of ``texts`` under the model (with the adapter, if given)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=256).input_ids
            loss = model(input_ids=ids, labels=ids).loss
            nll += float(loss) * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    return math.exp(nll / count)


def baseline_samples(facts, anchors_answer) -> list:  # noqa: ANN001
    """The hand-made baseline: 3 clean question phrasings plus the statement, 30 anchors."""
    from sleep_agent.sleep.consolidate import ANCHOR_PROMPTS, ChatSample
    from sleep_agent.sleep.critic import Statement
    from sleep_agent.sleep.extract import extract_facts

    samples = []
    for fact in facts:
        (rule,) = extract_facts([Statement(fact.sentence, "user", "")])
        for q in (*rule.questions[:2], f"Tell me about {fact.subject}."):
            samples.append(ChatSample.qa(q, fact.sentence))
        samples.append(ChatSample.qa(f"What do you know about {fact.subject}?", fact.sentence))
    extra = [
        "What is the capital of Portugal?",
        "Name an animal that can fly.",
        "What is 7 plus 6?",
        "What colour are bananas?",
        "Say hello in Spanish.",
        "What is ice made of?",
    ]
    prompts = [*ANCHOR_PROMPTS, *extra][:30]
    answers = anchors_answer(prompts)
    return samples + [ChatSample.qa(p, a) for p, a in zip(prompts, answers, strict=True)]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [("base model", result["before"]), ("after sleep (default cycle)", result["after"])]
    runs += [(label, run) for label, run in result.get("variants", {}).items()]
    if result.get("baseline"):
        runs.append(("hand-made baseline", result["baseline"]))
    metrics = [
        ("recall_trained", "recall, trained phrasing", 1),
        ("recall_unseen", "recall, unseen phrasing", 1),
        ("general_probe", "general probe (of 20)", 20),
        ("probe_large", "larger probe (of 40)", 40),
    ]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(runs)
    for i, (label, run) in enumerate(runs):
        values = [run[key] / scale for key, _, scale in metrics]
        ax.bar([m + i * width for m in range(len(metrics))], values, width, label=label)
    ax.set_xticks([m + width * (len(runs) - 1) / 2 for m in range(len(metrics))])
    ax.set_xticklabels([name for _, name, _ in metrics])
    ax.set_ylabel("fraction right")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"One sleep over {result['facts']} facts told in conversation (CPU, default model)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--facts", type=int, default=50)
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--cycle", default="{}", help='CycleConfig fields as JSON, e.g. \'{"training": {"kl_weight": 1.0}}\''
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/sleep_acceptance.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs/img/sleep_acceptance.png")
    args = parser.parse_args()
    if not (SHARED / "facts_dev.json").exists():
        sys.exit(f"the shared data sets are missing: expected {SHARED}/facts_dev.json")

    from langchain_core.messages.utils import count_tokens_approximately

    from sleep_agent import SleepConfig, SleepMemory, SleepPolicy
    from sleep_agent.adapters import AdapterRegistry
    from sleep_agent.eval.facts import load_facts, load_probe, tell
    from sleep_agent.sleep.consolidate import LoraTrainConfig, train_adapter

    facts = load_facts(SHARED / "facts_dev.json", args.facts)
    probes = {
        "general_probe": load_probe(SHARED / "general_probe.jsonl"),
        "probe_large": load_probe(REPO / "sleep_agent/eval/data/probe_large.jsonl"),
    }
    reference = [p["context"] for p in json.loads((SHARED / "squad_dev.json").read_text())[-30:]]
    result: dict = {"facts": len(facts), "machine": machine()}

    home = Path(tempfile.mkdtemp(prefix="sleep-acceptance-"))
    config = SleepConfig(
        namespace="bench", home=home, policy=SleepPolicy(pending_episodes=None, pending_tokens=None)
    )
    from sleep_agent.sleep.standard import StandardCycle

    cycle_config = cycle_from_json(args.cycle)
    result["cycle"] = cycle_config.model_dump()
    with SleepMemory(
        config, cycle=StandardCycle(cycle_config), token_counter=count_tokens_approximately
    ) as memory:
        started = time.perf_counter()
        backend = memory.backend
        result["server_start_s"] = round(time.perf_counter() - started, 1)
        tell(memory, facts)
        result["before"] = measure(backend, backend.base_name, facts, probes)
        print("before:", _brief(result["before"]), flush=True)

        started = time.perf_counter()
        report = memory.sleep()
        result["sleep_s"] = round(time.perf_counter() - started, 1)
        result["report"] = report.model_dump(exclude={"consolidated", "rejected", "retry"})
        result["report"]["counts"] = {
            "in": report.episodes_in,
            "consolidated": len(report.consolidated),
            "rejected": len(report.rejected),
            "retry": len(report.retry),
        }
        result["rejected_reasons"] = sorted(set(report.rejected.values()))
        print(f"sleep: {result['sleep_s']} s, {result['report']['counts']}, {report.timings_s}", flush=True)
        print("gate:", report.metrics.get("gate_reason"), flush=True)
        active = backend.active_adapter or backend.base_name
        result["after"] = measure(backend, active, facts, probes)
        print("after:", _brief(result["after"]), flush=True)

        adapter_dir = None
        if report.adapter_version is not None:
            adapter_dir = AdapterRegistry(home, "bench").path(report.adapter_version)

        if args.baseline:
            samples = baseline_samples(facts, lambda ps: ask_all(backend, backend.base_name, ps, 48))
            baseline_dir = home / "baseline"
            trained = train_adapter(
                memory.model_path,
                samples,
                baseline_dir,
                LoraTrainConfig(rank=16, alpha=32, learning_rate=2e-4, epochs=4, batch_size=8),
            )
            backend.load_adapter("baseline@v1", baseline_dir)
            result["baseline"] = measure(backend, "baseline@v1", facts, probes)
            result["baseline"]["train_s"] = round(trained.seconds, 1)
            result["baseline"]["tokens_per_s"] = round(trained.tokens_per_s, 1)
            print("baseline:", _brief(result["baseline"]), flush=True)
        model_path = memory.model_path

    # perplexity after the server is gone, so it does not compete for the cores
    result["before"]["perplexity"] = perplexity(model_path, None, reference)
    if adapter_dir is not None:
        result["after"]["perplexity"] = perplexity(model_path, adapter_dir, reference)
    if args.baseline:
        result["baseline"]["perplexity"] = perplexity(model_path, home / "baseline", reference)
    for run in ("after", "baseline"):
        if run in result and "perplexity" in result[run]:
            result[run]["perplexity_change"] = result[run]["perplexity"] / result["before"]["perplexity"] - 1

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(result, args.plot)
    print(json.dumps({k: result[k] for k in ("before", "after", "sleep_s")}, indent=2, default=str))
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
