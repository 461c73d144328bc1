"""P5 memory QA on any data set: conversations lived as episodes, then questions in a new thread.

Five conditions side by side, on the same model and data in one run: no memory; full context (all
sessions in the prompt, the oldest turns dropped to fit the window, and counted); retrieval (Chroma
top-k of the episodes into the prompt, the way LangMem or mem0 work); sleep (weights only); sleep
plus retrieval. For each: accuracy, prompt tokens per question and latency per question (asked one
at a time, so that latency is what one user waits).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from sleep_agent import recalled
from sleep_agent.eval import metrics
from sleep_agent.eval.cost import sleep_record
from sleep_agent.eval.datasets import MemoryQAItem, Question, Turn, load_memory_qa
from sleep_agent.eval.harness import Asked, Harness, costs
from sleep_agent.eval.protocol import EvalOptions, ci_text, data_file

NAME = "P5 memory QA"
CONDITIONS = {
    "no_memory": "no memory",
    "full_context": "full context",
    "retrieval": "retrieval (top-k)",
    "sleep": "sleep (weights only)",
    "sleep_retrieval": "sleep + retrieval",
}
HISTORY = "Earlier conversations with this user:\n{history}\n\nUse them to answer."
ANSWER_TOKENS = 32


def turns_of(session: list[Turn]) -> list[list[tuple[str, str]]]:
    """A session as turns to record: each user message with the replies that follow it."""
    turns: list[list[tuple[str, str]]] = []
    for t in session:
        role = {"user": "user", "assistant": "ai", "system": "system", "tool": "user"}[t.role]
        content = f"(tool result) {t.content}" if t.role == "tool" else t.content
        if t.role == "user" or not turns:
            turns.append([])
        turns[-1].append((role, content))
    return [turn for turn in turns if any(role == "user" for role, _ in turn)]


def live(memory: Any, item: MemoryQAItem) -> int:
    """Record the item's sessions as episodes; returns how many."""
    count = 0
    for s, session in enumerate(item.sessions):
        for turn in turns_of(session):
            memory.buffer.record(turn, thread_id=f"{item.id}-session{s}")
            count += 1
    return count


def full_context(
    h: Harness, item: MemoryQAItem, question: str, window: int
) -> tuple[list[dict[str, str]], int]:
    """All sessions in a system message, oldest lines dropped until the prompt fits; lines dropped."""
    lines = [f"{t.role}: {t.content}" for session in item.sessions for t in session]
    dropped = 0
    while True:
        prompt = [
            {"role": "system", "content": HISTORY.format(history="\n".join(lines[dropped:]))},
            {"role": "user", "content": question},
        ]
        if h.prompt_tokens(prompt) + ANSWER_TOKENS <= window or dropped >= len(lines):
            return prompt, dropped
        dropped += 1


def with_recall(memory: Any, question: str) -> list[dict[str, str]]:
    """The question as recall_node would have the served model see it."""
    return recalled.with_recall(memory.recall_text(question), question)


DATA = "memory_qa_freeform.jsonl"  # free-form facts over sessions: updates, tool results, third people


def check(options: EvalOptions) -> None:
    """Fail on a missing or malformed data set before the server starts."""
    load_memory_qa(data_file(DATA, options))


def right_answer(answer: str, question: Question) -> bool:
    """The answer names a gold value and none of the values a later session replaced."""
    return metrics.answered(answer, question.answers) and not (
        question.stale and metrics.answered(answer, question.stale)
    )


def run(h: Harness, options: EvalOptions) -> dict[str, Any]:
    path = data_file(DATA, options)
    items = load_memory_qa(path, limit=options.size(2, 0) or None)
    window = h.config.context_window
    seeds = []
    for seed in range(options.seeds):
        asked: dict[str, list[Asked]] = {c: [] for c in CONDITIONS}
        right: dict[str, list[bool]] = {c: [] for c in CONDITIONS}
        truncated, sleeps, examples = 0, [], []
        for item in items:
            memory = h.memory(f"p5-{_slug(item.id)}-seed{seed}", seed=seed)
            live(memory, item)
            questions = [q.question for q in item.questions]
            prompts: dict[str, list[Any]] = {
                "no_memory": questions,
                "retrieval": [with_recall(memory, q) for q in questions],
            }
            full = [full_context(h, item, q, window) for q in questions]
            prompts["full_context"] = [p for p, _ in full]
            truncated += sum(d > 0 for _, d in full)
            base = h.backend.base_name
            for condition in ("no_memory", "full_context", "retrieval"):
                asked[condition] += h.ask(
                    prompts[condition],
                    adapter=base,
                    workers=1,
                    max_tokens=ANSWER_TOKENS,
                    desc=f"{item.id} {condition}",
                )
            sleeps.append(sleep_record(memory.sleep()))
            prompts["sleep"] = questions
            prompts["sleep_retrieval"] = [with_recall(memory, q) for q in questions]
            for condition in ("sleep", "sleep_retrieval"):
                asked[condition] += h.ask(
                    prompts[condition], workers=1, max_tokens=ANSWER_TOKENS, desc=f"{item.id} {condition}"
                )
            n = len(questions)
            for condition in CONDITIONS:
                answers = [a.answer for a in asked[condition][-n:]]
                right[condition] += [right_answer(a, q) for a, q in zip(answers, item.questions, strict=True)]
            examples.append(
                {c: [questions[0], item.questions[0].answers, asked[c][-n].answer] for c in CONDITIONS}
            )
        seeds.append(
            {
                "seed": seed,
                "right": right,
                "costs": {c: costs(asked[c]) for c in CONDITIONS},
                "truncated_questions": truncated,
                "sleeps": sleeps,
                "examples": examples[:3],
                # every answer, for reading what a condition got wrong (same order as the data's questions)
                "answers": {c: [a.answer for a in asked[c]] for c in CONDITIONS},
            }
        )
    return {
        "protocol": "p5",
        "name": NAME,
        "data": path.name,
        "items": len(items),
        "questions": sum(len(i.questions) for i in items),
        "window": window,
        "seeds": seeds,
        "accuracy": {c: metrics.summarize([v for s in seeds for v in s["right"][c]]) for c in CONDITIONS},
        "by_kind": _by_kind(items, seeds),
        "prompt_tokens": {
            c: statistics.median(s["costs"][c]["prompt_tokens"] for s in seeds) for c in CONDITIONS
        },
        "latency_s": {c: statistics.median(s["costs"][c]["latency_s"] for s in seeds) for c in CONDITIONS},
        "truncated_questions": seeds[0]["truncated_questions"],
        "sleep_s": statistics.fmean(x["seconds"] for s in seeds for x in s["sleeps"]),
    }


def _by_kind(items: list[MemoryQAItem], seeds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Accuracy per question kind and condition, where the data labels its questions."""
    kinds = [q.kind for item in items for q in item.questions]
    if not any(kinds):
        return {}
    found: dict[str, dict[str, float]] = {}
    for kind in sorted({k for k in kinds if k}):
        found[kind] = {
            c: metrics.mean(
                [r for s in seeds for k, r in zip(kinds, s["right"][c], strict=True) if k == kind]
            )
            for c in CONDITIONS
        }
    return found


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)[:40] or "item"


def table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    columns = [
        "condition",
        f"accuracy ({result['questions']} questions)",
        "prompt tokens / question",
        "latency s / question",
    ]
    rows = [
        [
            label,
            ci_text(result["accuracy"][c]),
            f"{result['prompt_tokens'][c]:.0f}",
            f"{result['latency_s'][c]:.2f}",
        ]
        for c, label in CONDITIONS.items()
    ]
    if result["truncated_questions"]:
        rows.append(
            [
                f"full context truncated to {result['window']} tokens for",
                f"{result['truncated_questions']} questions",
                "",
                "",
            ]
        )
    return columns, rows


def plot(result: dict[str, Any], out_dir: Path) -> list[Path]:
    from sleep_agent.eval.plots import bars, scatter

    accuracy = out_dir / "p5_memory_qa.png"
    bars(
        accuracy,
        {"accuracy": {CONDITIONS[c]: s for c, s in result["accuracy"].items()}},
        title=f"P5 memory QA on {result['data']} ({result['questions']} questions)",
        ylabel="accuracy",
    )
    cost = out_dir / "p5_accuracy_vs_tokens.png"
    scatter(
        cost,
        {CONDITIONS[c]: (result["prompt_tokens"][c], result["accuracy"][c]["mean"]) for c in CONDITIONS},
        title="P5: accuracy against prompt tokens per question",
        xlabel="prompt tokens per question (median)",
        ylabel="accuracy",
    )
    return [accuracy, cost]
