"""A scripted persona tells the chatbot their preferences across sessions; after one sleep, a new
session with an empty context is asked about them. Prints a before/after table and writes it.

    .venv/bin/python examples/persona_demo.py --out docs/eval/persona      # default model, ~15 min on CPU

"Before" is the same questions asked of the base model before anything was told; "after" is a new
session after the sleep, with nothing in its prompt: recall of consolidated memories is off, so
every right answer comes from the adapter's weights.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from sleep_agent import RecallConfig, ServingConfig, SleepConfig, SleepPolicy
from sleep_agent.chatbot.session import ChatSession, describe_sleep

# Told in three sessions, as a user would over a few days.
SESSIONS = [
    ["Hi! My name is Priya.", "My diet is vegetarian."],
    ["My preferred unit system is metric.", "My favourite tool is Affinity Designer."],
    ["My preferred answer format is bullet points."],
]
# (preference, phrasing, question in a new session, a word the right answer contains). "trained":
# a question the sleep trains on for that statement; "unseen": words no training sample used.
QUESTIONS = [
    ("name", "trained", "What is my name?", "priya"),
    ("diet", "trained", "What is my diet?", "vegetarian"),
    ("units", "trained", "What is my preferred unit system?", "metric"),
    ("favourite tool", "trained", "What is my favourite tool?", "affinity"),
    ("answer format", "trained", "What is my preferred answer format?", "bullet"),
    ("name", "unseen", "Remind me, what am I called?", "priya"),
    ("diet", "unseen", "What kind of diet do I follow?", "vegetarian"),
    ("units", "unseen", "Which units should you use with me?", "metric"),
    ("favourite tool", "unseen", "Which tool do I like best?", "affinity"),
    ("answer format", "unseen", "How do I like answers formatted?", "bullet"),
]


def ask_all(session: ChatSession) -> list[str]:
    answers = []
    for _, _, question, _ in QUESTIONS:
        session.new_session()  # each question alone, in an empty context
        answers.append(session.send(question).text)
    return answers


def run(serving: str, home: Path) -> dict:
    config = SleepConfig(
        home=home,
        serving=ServingConfig(backend=serving),
        policy=SleepPolicy(pending_episodes=None, pending_tokens=None, context_fraction=None),
        recall=RecallConfig(include_consolidated=False),  # after the sleep, the weights alone answer
    )
    session = ChatSession.open("priya", config)
    try:
        before = ask_all(session)
        for messages in SESSIONS:
            session.new_session()
            for text in messages:
                print(f"priya: {text}\nbot:   {session.send(text).text}")
        # the questions were recorded too; only the told preferences should be learned
        started = time.perf_counter()
        report = session.sleep()
        sleep_s = time.perf_counter() - started
        print("\n".join(describe_sleep(report, session.memory)))
        after = ask_all(session)
        adapter = session.memory.status()["active_adapter"]
    finally:
        session.close()
    rows = [
        {
            "preference": name,
            "phrasing": phrasing,
            "question": question,
            "keyword": keyword,
            "before": b,
            "after": a,
            "before_right": keyword in b.lower(),
            "after_right": keyword in a.lower(),
        }
        for (name, phrasing, question, keyword), b, a in zip(QUESTIONS, before, after, strict=True)
    ]
    return {
        "serving": serving,
        "adapter": adapter,
        "sleep_s": round(sleep_s, 1),
        "gate": report.metrics.get("gate_reason"),
        "rows": rows,
        "before_right": sum(r["before_right"] for r in rows),
        "after_right": sum(r["after_right"] for r in rows),
    }


def table(result: dict) -> str:
    lines = [
        "| preference | phrasing | question (new session, empty context) | before: base model "
        "| after one sleep: weights only |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        mark = lambda right: "right" if right else "wrong"  # noqa: E731
        before = f"{_cell(r['before'])} ({mark(r['before_right'])})"
        after = f"{_cell(r['after'])} ({mark(r['after_right'])})"
        lines.append(f"| {r['preference']} | {r['phrasing']} | {r['question']} | {before} | {after} |")
    for phrasing in ("trained", "unseen"):
        rows = [r for r in result["rows"] if r["phrasing"] == phrasing]
        before, after = (sum(r[key] for r in rows) for key in ("before_right", "after_right"))
        lines.append(f"| **right** | {phrasing} | | **{before} / {len(rows)}** | **{after} / {len(rows)}** |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    """An answer on one table line: newlines and pipes would break the Markdown table."""
    return " ".join(text.split()).replace("|", "/")[:60]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serving", default="vllm", choices=["vllm", "local"])
    parser.add_argument("--out", type=Path, help="folder for persona.json and persona.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="persona-") as home:
        result = run(args.serving, Path(home))
    text = table(result)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "persona.json").write_text(json.dumps(result, indent=2))
        (args.out / "persona.md").write_text(text + "\n")
        print(f"wrote {args.out / 'persona.json'} and persona.md")


if __name__ == "__main__":
    main()
