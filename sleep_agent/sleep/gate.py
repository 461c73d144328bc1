"""Gate: a candidate adapter is published only if recall rises and general ability holds.

Recall is measured on phrasings never used in training; general ability on a small keyword probe
answered by the served model and on perplexity over reference text (``reference.py``). Both are asked of the current version and of the candidate, loaded
side by side in the same server, so the comparison shares everything but the weights.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from sleep_agent.answers import says
from sleep_agent.extras import require_training
from sleep_agent.progress import emit
from sleep_agent.sleep.extract import Fact
from sleep_agent.sleep.reference import REFERENCE_TEXT
from sleep_agent.sleep.settings import GateConfig

# General questions with the words a right answer contains. Kept apart from any evaluation set:
# the gate must not be tuned on what the benchmarks report.
GATE_PROBE: list[tuple[str, tuple[str, ...]]] = [
    ("What is the largest planet in our solar system?", ("Jupiter",)),
    ("What is the chemical symbol for gold?", ("Au",)),
    ("How many days are there in a week?", ("seven", "7")),
    ("What color is the sky on a clear day?", ("blue",)),
    ("What is the opposite of hot?", ("cold",)),
    ("Which animal is known as the king of the jungle?", ("lion",)),
    ("What is 2 plus 2?", ("4", "four")),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("How many legs does a spider have?", ("eight", "8")),
    ("What do bees make?", ("honey",)),
    ("What is the freezing point of water in Celsius?", ("0", "zero")),
    ("What is the longest river in Africa?", ("Nile",)),
    ("What do plants need from the sun to grow?", ("light",)),
    ("Who was the first person to walk on the Moon?", ("Armstrong",)),
    ("What is the capital of Italy?", ("Rome",)),
    ("How many hours are in a day?", ("24", "twenty-four")),
    ("What is the main language spoken in Spain?", ("Spanish",)),
    ("What planet do we live on?", ("Earth",)),
    ("What is 10 times 10?", ("100", "hundred")),
    ("What is the fastest land animal?", ("cheetah",)),
]

Ask = Callable[[str], str]
ChatAsk = Callable[[list[dict[str, str]]], str]
# Plays held-out tasks once with each asker (each a model version), side by side, and returns each
# one's mean task score: an acting agent's gate asks whether it acts better, not only what it knows.
BehaviourCheck = Callable[[Sequence[ChatAsk]], list[float]]
TextLogprob = Callable[[str], tuple[float, int]]


@dataclass(frozen=True)
class Scores:
    recall: float | None  # new memories, held-out phrasings (None when the sleep has no new facts)
    retention: float | None  # earlier memories, held-out phrasings (None when there are none)
    probe: int  # general questions answered right
    perplexity: float | None = None  # on the reference text (None when not measured)
    earlier_asked: int = 0  # earlier memories behind ``retention``
    behaviour: float | None = None  # mean score on held-out tasks (None without a behaviour check)


@dataclass(frozen=True)
class GateResult:
    accepted: bool
    reason: str
    before: Scores
    after: Scores

    def metrics(self) -> dict[str, object]:
        return {
            "gate_accepted": self.accepted,
            "gate_reason": self.reason,
            "before": asdict(self.before),
            "after": asdict(self.after),
        }


def recall_of(ask: Ask, facts: Sequence[Fact], limit: int | None = None) -> float | None:
    """Fraction of held-out questions answered with their keyword, over every phrasing of every fact.

    A fact is asked in each phrasing the extractor kept out of training (the user's words and, when
    the user gave a name, the third person), so one lucky phrasing does not pass a weak sleep.
    """
    probes = held_out(facts, limit)
    return recall_in(probes, ask_all(ask, [p.question for p in probes]))


def held_out(facts: Sequence[Fact], limit: int | None = None) -> list:
    """The held-out questions of ``facts``; a fixed sample of ``limit`` of them, the same for both versions."""
    probes = [p for f in facts for p in f.checks()]
    if limit is not None and len(probes) > limit:
        probes = random.Random(0).sample(probes, limit)
    return probes


def recall_in(probes: Sequence, answers: Sequence[str]) -> float | None:
    if not probes:
        return None
    return sum(says(a, p.keyword) for p, a in zip(probes, answers, strict=True)) / len(probes)


def probe_of(ask: Ask) -> int:
    return probe_in(ask_all(ask, [q for q, _ in GATE_PROBE]))


def probe_in(answers: Sequence[str]) -> int:
    return sum(any(says(a, k) for k in keys) for (_, keys), a in zip(GATE_PROBE, answers, strict=True))


def ask_all(ask: Ask, questions: Sequence[str], workers: int = 8, *, stage: str = "gate") -> list[str]:
    """Each question through ``ask``, concurrently, so that vLLM answers them in one batch.

    Progress is emitted from this thread as answers arrive: a graph run's stream writer does not
    follow work into the pool's threads.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(ask, q) for q in questions]
        for done, _ in enumerate(as_completed(futures), 1):
            if done == len(futures) or done % 8 == 0:
                emit({"stage": stage, "answered": done, "of": len(futures)})
        return [f.result() for f in futures]


def perplexity_of(logprob: TextLogprob, texts: Sequence[str] = REFERENCE_TEXT, workers: int = 8) -> float:
    """Token-weighted perplexity of ``texts``; ``logprob(text)`` gives (sum of logprobs, tokens)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        scored = list(pool.map(logprob, texts))
    return math.exp(-sum(total for total, _ in scored) / max(1, sum(n for _, n in scored)))


def reference_perplexity(
    model_path: str | Path, adapter_dir: str | Path | None, texts: Sequence[str] = REFERENCE_TEXT
) -> float:
    """Perplexity of ``texts`` under the model with ``adapter_dir`` (None: the base model).

    Computed in-process with transformers and peft, not through vLLM: vLLM's prompt-logprobs path
    crashes its engine on CPU when requests with a LoRA adapter are batched.
    """
    require_training("the gate's perplexity check")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()

    def logprob(text: str) -> tuple[float, int]:
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.inference_mode():
            loss = model(input_ids=ids, labels=ids).loss
        return -float(loss) * (ids.shape[1] - 1), int(ids.shape[1] - 1)

    return perplexity_of(logprob, texts, workers=1)


def score(
    ask: Ask,
    new: Sequence[Fact],
    earlier: Sequence[Fact],
    perplexity: Callable[[], float] | None = None,
    limit: int | None = None,
) -> Scores:
    """One version's scores; its questions go to the server together, so that they batch (a batch
    of 32 answered a gate's questions about a fifth faster than batches of 8 on vLLM's CPU build)."""
    ppl = perplexity() if perplexity is not None else None
    fresh, kept = held_out(new, limit), held_out(earlier, limit)
    questions = [p.question for p in (*fresh, *kept)] + [q for q, _ in GATE_PROBE]
    answers = ask_all(ask, questions, workers=32)
    asked = min(sum(len(f.checks()) for f in earlier), limit or 1 << 30)
    return Scores(
        recall_in(fresh, answers[: len(fresh)]),
        recall_in(kept, answers[len(fresh) : len(fresh) + len(kept)]),
        probe_in(answers[len(fresh) + len(kept) :]),
        ppl,
        asked,
    )


def decide(before: Scores, after: Scores, config: GateConfig) -> GateResult:
    """Accept when recall rises and neither retention, the probe nor behaviour falls out of bounds.

    A sleep with no new facts (behaviour cloning only) has no recall to compare: the bounds alone
    decide. With a behaviour check, a candidate that plays the held-out tasks worse is refused, and
    one that plays them better may lose ``probe_slack_if_better`` more probe questions: the tasks
    are what the agent is for, the probe only a guard against general damage.
    """
    if (
        before.recall is not None
        and after.recall is not None
        and after.recall <= before.recall + config.min_recall_gain
    ):
        return GateResult(
            False, f"recall did not rise ({before.recall:.0%} -> {after.recall:.0%})", before, after
        )
    better = False
    if before.behaviour is not None and after.behaviour is not None:
        if before.behaviour - after.behaviour > config.max_behaviour_drop + 1e-9:
            return GateResult(
                False,
                f"plays held-out tasks worse: mean score {before.behaviour:.2f} -> {after.behaviour:.2f} "
                f"(allowed drop {config.max_behaviour_drop:.2f})",
                before,
                after,
            )
        better = after.behaviour > before.behaviour + 1e-9
    allowed_probe = config.max_probe_drop + (config.probe_slack_if_better if better else 0)
    if before.probe - after.probe > allowed_probe:
        return GateResult(
            False,
            f"general probe fell {before.probe} -> {after.probe} (allowed {allowed_probe})",
            before,
            after,
        )
    if config.max_perplexity_rise is not None and before.perplexity and after.perplexity:
        rise = after.perplexity / before.perplexity - 1
        if rise > config.max_perplexity_rise:
            return GateResult(
                False,
                f"perplexity on reference text rose {rise:+.0%} ({before.perplexity:.1f} -> "
                f"{after.perplexity:.1f}; allowed {config.max_perplexity_rise:+.0%})",
                before,
                after,
            )
    if before.retention is not None and after.retention is not None:
        allowed = config.max_retention_drop
        if after.earlier_asked:
            allowed = max(allowed, config.max_retention_lost / after.earlier_asked)
        if before.retention - after.retention > allowed + 1e-9:
            return GateResult(
                False,
                f"earlier memories fell {before.retention:.0%} -> {after.retention:.0%} (allowed {allowed:.0%})",
                before,
                after,
            )
    played = ""
    if before.behaviour is not None and after.behaviour is not None:
        played = f", held-out tasks {before.behaviour:.2f} -> {after.behaviour:.2f}"
    return GateResult(
        True,
        f"recall {_pct(before.recall)} -> {_pct(after.recall)}, probe {before.probe} -> {after.probe}{played}",
        before,
        after,
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
