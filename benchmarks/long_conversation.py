"""One sleep over one long real conversation: time per stage, and what the weights hold after.

A support chat of 100 user turns of several sentences each (sleep_agent/eval/data/support_chat_long.jsonl)
is recorded turn by turn as episodes, then one ``memory.sleep()`` with the default cycle runs on
the default model, vLLM serving on the same CPU. Its questions are asked before and after, with an
empty context and no retrieval, so every right answer after comes from the weights.

    python benchmarks/long_conversation.py      # benchmarks/results/long_conversation.json + docs/img/long_conversation.png
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from sleep_agent.eval.run import machine

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "sleep_agent/eval/data/support_chat_long.jsonl"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timings = result["report"]["timings_s"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh(list(timings), list(timings.values()), color="#4c72b0")
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title(
        f"One sleep over {result['user_turns']} user turns: {result['sleep_s']:.0f} s "
        f"(recall {result['before']['right']}/{result['questions']} -> {result['after']['right']}/{result['questions']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/long_conversation.json")
    parser.add_argument("--plot", type=Path, default=REPO / "docs/img/long_conversation.png")
    args = parser.parse_args()

    from langchain_core.messages.utils import count_tokens_approximately

    from sleep_agent import SleepConfig, SleepMemory, SleepPolicy
    from sleep_agent.eval import metrics
    from sleep_agent.eval.datasets import load_memory_qa
    from sleep_agent.eval.memory_qa import live

    (item,) = load_memory_qa(args.data)
    questions = [q.question for q in item.questions]
    home = Path(tempfile.mkdtemp(prefix="long-conversation-"))
    config = SleepConfig(
        namespace="support", home=home, policy=SleepPolicy(pending_episodes=None, pending_tokens=None)
    )
    result: dict = {"machine": machine(), "data": args.data.name, "questions": len(questions)}
    result["user_turns"] = sum(t.role == "user" for s in item.sessions for t in s)
    result["user_chars"] = sum(len(t.content) for s in item.sessions for t in s if t.role == "user")

    def ask(memory: SleepMemory) -> dict:
        answers = [memory.backend.chat(q, max_tokens=32) for q in questions]  # the active adapter
        right = [metrics.answered(a, q.answers) for a, q in zip(answers, item.questions, strict=True)]
        return {"right": sum(right), "answers": answers}

    with SleepMemory(config, token_counter=count_tokens_approximately) as memory:
        result["episodes"] = live(memory, item)
        result["before"] = ask(memory)
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
        print(f"sleep: {result['sleep_s']} s {report.timings_s}", flush=True)
        print("gate:", report.metrics.get("gate_reason"), flush=True)
        result["after"] = ask(memory)
    print(f"recall {result['before']['right']} -> {result['after']['right']} of {len(questions)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(result, args.plot)
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
