"""The standard sleep cycle: critic -> extract -> consolidate -> gate -> publish.

Each adapter version is rebuilt from every consolidated memory plus the new ones (replay), with
the base model's own answers to general prompts mixed in (anchors). The candidate is loaded next
to the current version, both are asked the same held-out questions and general probe, and only
an accepted candidate is published and made active. The memory marks the buffer afterwards.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from sleep_agent import __version__, progress
from sleep_agent.adapters import AdapterRegistry, Manifest
from sleep_agent.doctor import scratch_dir
from sleep_agent.episodes import Episode
from sleep_agent.errors import AdapterLoadError
from sleep_agent.recalled import with_recall
from sleep_agent.serving.base import activate_with_retry, adapter_name
from sleep_agent.sleep import dream, phrasings
from sleep_agent.sleep.consolidate import (
    ANCHOR_PROMPTS,
    TEXT_TOPICS,
    ChatSample,
    anchor_samples,
    text_anchor_samples,
    train_adapter,
)
from sleep_agent.sleep.critic import Statement, carried_over, critique, superseded
from sleep_agent.sleep.cycle import SleepContext, SleepReport
from sleep_agent.sleep.dream import Night
from sleep_agent.sleep.extract import CALL_END, Fact, ToolCallFormat, behaviour_samples, extract_facts
from sleep_agent.sleep.gate import BehaviourCheck, decide, reference_perplexity, score
from sleep_agent.sleep.memo import keep, remembered, stored
from sleep_agent.sleep.reference import REFERENCE_TEXT
from sleep_agent.sleep.settings import CycleConfig, LoraTrainConfig

log = logging.getLogger(__name__)


class StandardCycle:
    """``SleepMemory(config, cycle=StandardCycle())``; callable as a :class:`SleepCycle`."""

    def __init__(self, config: CycleConfig | None = None, *, behaviour: BehaviourCheck | None = None) -> None:
        self.config = config or CycleConfig()
        self.behaviour = behaviour  # held-out tasks both versions play at the gate (an acting agent)
        self._anchor_cache: dict[tuple, list[ChatSample]] = {}
        self.last_night: Night | None = None  # the kept dreams of the last sleep that dreamed

    def __call__(
        self, context: SleepContext, episodes: Sequence[Episode], report: SleepReport
    ) -> SleepReport:
        timings = report.timings_s
        registry = AdapterRegistry(context.config.home, context.config.namespace)
        registry.clean()
        self.last_night = None

        with _timed(timings, "critic"):
            # earlier memories pass the same critic, so nothing it once dropped comes back as replay
            consolidated = context.buffer.episodes("consolidated")
            sources = self.config.fact_sources
            earlier = [
                st for v in critique(consolidated, fact_sources=sources) if v.keep for st in v.statements
            ]
            knows = (
                already_knows(context.backend, self.config.answer_tokens, context.config.namespace)
                if self.config.novelty_check
                else None
            )
            verdicts = critique(
                episodes, known=[s.text for s in earlier], already_knows=knows, fact_sources=sources
            )
            kept = [s for v in verdicts if v.keep for s in v.statements]
            changed = superseded([*earlier, *kept])  # "I live in Paris" ... "I moved to Lyon"
            # a replaced statement leaves, or stays with the new value when it said more ("... at Hallam")
            carried = {id(c.old): carried_over(c) for c in changed}
            earlier = [st for st in (carried.get(id(x), x) for x in earlier) if st is not None]
            kept = [st for st in (carried.get(id(x), x) for x in kept) if st is not None]
            user = phrasings.user_name(
                p.content for ep in [*consolidated, *episodes] for p in ep.parts_from("user")
            )
            if user and kept and not any(user in st.text for st in [*earlier, *kept]):
                # "Hi, Olu here." is a greeting to the critic; the name in it is still worth knowing
                said = next(ep.id for ep in [*consolidated, *episodes] if user in ep.text)
                kept.append(Statement(f"My name is {user}.", "user", said))
        report.metrics["superseded"] = [
            {"old": c.old.text, "new": c.new.text, "why": c.reason, "kept": _text(carried[id(c.old)])}
            for c in changed
        ]
        report.rejected = {v.episode_id: v.reason for v in verdicts if not v.keep}
        kept_ids = {v.episode_id for v in verdicts if v.keep}
        report.metrics["kept_episodes"] = len(kept_ids)
        forgetting = bool(report.forgotten)  # a rebuild without erased memories runs even with nothing new
        if not kept_ids and not forgetting:
            return report

        with _timed(timings, "extract"):
            new_facts, old_facts = extract_facts(kept, user=user), extract_facts(earlier, user=user)
            window, calls = self.config.trajectory_window, self._tool_calls(context)
            behaviour = behaviour_samples(
                [ep for ep in episodes if ep.id in kept_ids], window=window, calls=calls
            )
            if self.config.start == "rebuild":  # earlier trajectories are replayed like earlier facts
                behaviour += behaviour_samples(consolidated, window=window, calls=calls)
        report.metrics["facts"] = len(new_facts)
        report.metrics["behaviour_samples"] = len(behaviour)

        backend = context.backend
        current = backend.active_for(context.config.namespace)
        parent = registry.current()
        current_dir = backend.loaded_adapters.get(current) if current is not None else None
        continual = self.config.start == "continual" and parent is not None
        replayed = old_facts
        if continual and len(old_facts) > self.config.replay:
            replayed = random.Random(self.config.training.seed).sample(list(old_facts), self.config.replay)
        memories = [s for f in [*new_facts, *replayed] for s in f.samples()] + behaviour
        memories += prompted_samples(
            [*new_facts, *replayed], sorted(context.agent_prompts), seed=self.config.training.seed
        )
        memories += retrieval_samples(
            [*new_facts, *replayed],
            context.recall_prompt,
            share=self.config.retrieval_mix,
            distractors=self.config.retrieval_distractors,
            seed=self.config.training.seed,
        )
        if not memories:  # everything was forgotten: nothing to train, the base model serves
            _serve_base(backend, registry, context.config.namespace, report.forgotten)
            report.metrics["rebuild"] = "no memory left: the base model serves"
            return report
        with _timed(timings, "anchors"):
            anchors = self._anchors(context) if self.config.anchors else []
            anchors = sized_anchors(
                anchors, len(memories), self.config.anchor_ratio, self.config.training.seed
            )
        samples = memories + anchors
        version = registry.next_version()
        name = adapter_name(context.config.namespace, version)
        scratch_root = scratch_dir(
            context.config.home, context.config.namespace
        )  # a kill's leftovers: doctor
        scratch_root.mkdir(parents=True, exist_ok=True)
        training = within_budget(self.config.training, len(samples), self.config.max_sample_passes)
        report.metrics["epochs"] = training.epochs
        with tempfile.TemporaryDirectory(prefix="sleep-candidate-", dir=scratch_root) as scratch:
            with _timed(timings, "consolidate"):
                trained = train_adapter(
                    context.model_path,
                    samples,
                    Path(scratch) / "draft",
                    training,
                    progress=False,
                    start_from=registry.path(parent) if continual else None,
                )
            candidate = trained.adapter_dir
            if context.config.dreaming:
                candidate = self._dream(
                    context, name, candidate, new_facts, old_facts, memories, anchors, report
                )
            staged = registry.stage(candidate, version)  # the path vLLM loads from must not move
        report.metrics["train_samples"] = len(samples)
        report.metrics["anchor_samples"] = len(anchors)
        report.metrics["train_tokens"] = trained.train_tokens
        report.metrics["train_tokens_per_s"] = round(trained.tokens_per_s, 1)

        try:
            with _timed(timings, "load"):
                backend.load_adapter(name, staged)
            with _timed(timings, "gate"):
                before = self._score(context, current, current_dir, new_facts, old_facts)
                after = self._score(context, name, staged, new_facts, old_facts)
                if self.behaviour is not None:  # part of the gate's time; its own share in metrics
                    started = time.perf_counter()
                    played = self._play_check(context, (current, current_dir), (name, staged), report)
                    report.metrics["behaviour_s"] = round(time.perf_counter() - started, 1)
                    before, after = replace(before, behaviour=played[0]), replace(after, behaviour=played[1])
                result = decide(before, after, self.config.gate)
            report.metrics.update(result.metrics())
            progress.emit({"stage": "gate", "accepted": result.accepted, "reason": result.reason})
            if self.last_night is not None:  # this sleep dreamed
                report.metrics["dreams"]["learned"] = self._learned(context, name)
            if not result.accepted and forgetting:  # erasing is not optional: published all the same
                report.metrics["gate_overridden"] = f"forget rebuild published despite: {result.reason}"
            elif not result.accepted:
                _withdraw(backend, registry, name, version)
                reason = f"gate rejected the candidate: {result.reason}"
                report.retry = {v.episode_id: reason for v in verdicts if v.keep}
                return report
            with _timed(timings, "publish"):
                registry.commit(
                    Manifest(
                        namespace=context.config.namespace,
                        version=version,
                        parent=registry.current(),
                        episodes=learned_from(
                            memories,
                            # a continual version also holds what its parent learned
                            [*(v.episode_id for v in verdicts if v.keep), *(f.episode_id for f in old_facts)],
                        ),
                        metrics=result.metrics(),
                        config=self.config.model_dump(),
                        timings_s=dict(timings),
                        trigger="forget" if forgetting else "sleep",
                        forgotten=list(report.forgotten),
                    )
                )
        except BaseException:
            # whatever failed before the commit, the candidate leaves: the current version serves on
            if registry.current() != version:
                try:
                    _withdraw(backend, registry, name, version, wait=False)
                except Exception:  # the first failure is the one to report
                    log.exception("could not withdraw candidate %s", name)
            raise
        report.consolidated = [v.episode_id for v in verdicts if v.keep]
        report.adapter_version = version
        try:  # already loaded: a flip, then the old version retires
            with _timed(timings, "reload"):
                activate_with_retry(
                    backend,
                    name,
                    staged,
                    attempts=self.config.reload_attempts,
                    backoff_s=self.config.reload_backoff_s,
                )
        except AdapterLoadError as e:  # published all the same: the pointer names it, a restart serves it
            report.metrics["reload_error"] = str(e)
            log.error("v%d of %s is published but not served yet: %s", version, context.config.namespace, e)
            if forgetting:  # the version still served holds what was forgotten: the base model answers
                _off_the_old_version(backend, context.config.namespace)
                report.metrics["serving_base_until_reload"] = True
        if forgetting:
            report.metrics["retired"] = _retire_holders(registry, report.forgotten, before=version)
        return report

    def _dream(  # noqa: PLR0913
        self,
        context: SleepContext,
        name: str,
        draft: Path,
        new: Sequence[Fact],
        old: Sequence[Fact],
        memories: Sequence[ChatSample],
        anchors: Sequence[ChatSample],
        report: SleepReport,
    ) -> Path:
        """Dream on the draft; returns the adapter to gate (the draft itself when nothing was kept)."""
        config, backend = self.config.dreams, context.backend
        base = backend.base_name

        def teacher(prompt: str) -> str:
            return backend.chat(prompt, adapter=base, max_tokens=config.answer_tokens)

        student_name = f"{name}-draft"
        with _timed(report.timings_s, "dream"):
            dreams = dream.generate(
                new, old, config, write=lambda p: backend.chat(p, adapter=base, max_tokens=96)
            )
            backend.load_adapter(student_name, draft)
            try:
                night = dream.dream_night(
                    dreams,
                    teacher,
                    lambda q: backend.chat(q, adapter=student_name, max_tokens=config.answer_tokens),
                    config,
                    judge=teacher if config.judge else None,
                )
            finally:
                backend.unload_adapter(student_name)
        report.metrics["dreams"] = night.stats.metrics()
        report.metrics["dreams"]["seconds"] = report.timings_s["dream"]
        self.last_night = night
        if not night.kept:
            return draft
        rng = random.Random(config.seed)
        replay = rng.sample(list(memories), round(len(memories) * config.replay_fraction))
        distill = config.distill_weight > 0
        training = self.config.training.model_copy(
            update={
                "epochs": config.epochs,
                "min_steps": config.min_steps,
                "distill_weight": config.distill_weight,
            }
        )
        dreamed = night.samples(distill=distill, on_policy=distill and config.on_policy)
        with _timed(report.timings_s, "dream_train"):
            trained = train_adapter(
                context.model_path,
                [*dreamed, *replay, *anchors],
                draft.parent / "dreamed",
                training,
                progress=False,
                start_from=draft,
            )
        report.metrics["dream_train_samples"] = len(dreamed) + len(replay) + len(anchors)
        return trained.adapter_dir

    def _learned(self, context: SleepContext, name: str, sample: int = 48) -> float | None:
        """The effect of dreaming: share of a sample of kept dreams the candidate now answers unaided."""
        kept = self.last_night.kept if self.last_night else []
        if not kept:
            return None
        picked = random.Random(0).sample(kept, min(sample, len(kept)))
        answers = dream.ask_all(
            lambda q: context.backend.chat(q, adapter=name, max_tokens=self.config.dreams.answer_tokens),
            [d.question for d, _ in picked],
        )
        fuzzy = self.config.dreams.fuzzy
        return round(
            sum(dream.verify(d, a, fuzzy) for (d, _), a in zip(picked, answers, strict=True)) / len(picked), 3
        )

    def _tool_calls(self, context: SleepContext) -> ToolCallFormat:
        """The form trajectories' tool calls are trained in: the one the server parses back."""
        if self.config.tool_calls != "auto":
            return self.config.tool_calls
        parser = context.config.serving.tool_call_parser
        if parser == "auto":
            from sleep_agent.serving.vllm import tool_call_parser_for

            parser = tool_call_parser_for(context.model_path)
        if parser in ("hermes", "mistral", "llama3_json"):
            return parser
        return "text"  # a parser whose form is not written here: the readable text form

    def _anchors(self, context: SleepContext) -> list[ChatSample]:
        """The base model's answers to general prompts: asked once per model, then read from disk."""
        backend = context.backend

        def base(prompt: str, max_tokens: int) -> str:
            return backend.chat(prompt, adapter=backend.base_name, max_tokens=max_tokens)

        def ask() -> list[list]:
            samples = anchor_samples(base)
            if self.config.text_anchors:
                samples += text_anchor_samples(base)
            return [[list(s.prompt), s.answer] for s in samples]

        key = (
            str(context.model_path),
            backend.base_name,
            self.config.text_anchors,
            tuple(ANCHOR_PROMPTS),
            tuple(TEXT_TOPICS),
        )
        if key not in self._anchor_cache:
            rows = remembered(context.config.cache_dir / "sleep", "anchors", list(key), ask)
            self._anchor_cache[key] = [
                ChatSample(prompt=tuple(p), answer=a, anchor=True) if p else ChatSample.text(a)
                for p, a in rows
            ]
        return self._anchor_cache[key]

    def _play_check(
        self,
        context: SleepContext,
        current: tuple[str | None, Path | None],
        candidate: tuple[str, Path],
        report: SleepReport,
    ) -> tuple[float, float]:
        """Both versions' mean scores on the behaviour check's tasks.

        A check with a ``fingerprint()`` (``envs.BehaviourCheck``) has each version's scores kept
        with the model and the adapter's weights: decoding is greedy and the tasks are fixed, so a
        version plays them once. The current version's games are then skipped, and those are the
        long ones when it is the base model losing every task at the step limit.
        """
        check = self.behaviour
        assert check is not None
        fingerprint = getattr(check, "fingerprint", None)
        directory = context.config.cache_dir / "sleep"
        serving = context.config.serving

        def parts(adapter_dir: Path | None) -> list[Any]:
            return [
                __version__,  # the player's prompts and action mapping
                str(context.model_path),
                [serving.backend, serving.base_url, serving.dtype, serving.max_model_len],
                str(adapter_dir),
                weights_stamp(adapter_dir),
                fingerprint() if fingerprint is not None else None,
                self.config.action_tokens,
            ]

        def keyed(version: tuple[str | None, Path | None]) -> bool:
            # a served adapter whose directory is unknown has no weights to key its scores by
            return fingerprint is not None and (version[0] is None or version[1] is not None)

        known = stored(directory, "behaviour", parts(current[1])) if keyed(current) else None
        versions = [candidate] if known else [current, candidate]
        means = check([self._asker(context, adapter) for adapter, _ in versions])
        per_task = getattr(check, "last", None) if fingerprint is not None else None
        if per_task is not None:  # a check that reports per-task scores: keep them
            for version, scores in zip(versions, per_task, strict=True):
                if keyed(version):
                    keep(directory, "behaviour", parts(version[1]), scores)
        if known:
            means = [statistics.fmean(known), *means]
            per_task = [known, *(per_task or [])]
            report.metrics["behaviour_remembered"] = True  # the current version's, from an earlier sleep
        if per_task is not None:
            report.metrics["behaviour_scores"] = list(per_task)
        return means[0], means[1]

    def _asker(self, context: SleepContext, adapter: str | None) -> Callable[[list[dict[str, str]]], str]:
        """A version's answers to an agent's prompts, for the behaviour check."""
        backend = context.backend
        target = adapter or backend.base_name
        return lambda prompt: backend.chat(
            prompt, adapter=target, max_tokens=self.config.action_tokens, stop=(CALL_END,)
        )

    def _score(self, context, adapter: str | None, adapter_dir, new: Sequence[Fact], old: Sequence[Fact]):  # noqa: ANN001
        backend = context.backend
        target = adapter or backend.base_name
        ppl = None
        if self.config.gate.max_perplexity_rise is not None:
            ppl = lambda: _perplexity(context, adapter_dir)  # noqa: E731
        # asked the way the agent asks: under its own system prompt when it has one
        system = [{"role": "system", "content": min(context.agent_prompts)}] if context.agent_prompts else []
        return score(
            lambda q: backend.chat(
                [*system, {"role": "user", "content": q}],
                adapter=target,
                max_tokens=self.config.answer_tokens,
            ),
            new,
            old,
            ppl,
            self.config.gate.max_questions,
        )


def sized_anchors(
    anchors: Sequence[ChatSample], memories: int, ratio: float | None, seed: int = 0
) -> list[ChatSample]:
    """At most ``ratio`` anchors per memory sample (a fixed sample of them), or all without a ratio."""
    if ratio is None:
        return list(anchors)
    keep = max(1, math.ceil(ratio * memories))
    return list(anchors) if keep >= len(anchors) else random.Random(seed).sample(list(anchors), keep)


def within_budget(training: LoraTrainConfig, samples: int, passes: int | None) -> LoraTrainConfig:
    """The training settings with fewer epochs (at least one) when the samples would exceed ``passes``."""
    if passes is None or samples * training.epochs <= passes:
        return training
    return training.model_copy(update={"epochs": max(1.0, round(passes / samples, 2))})


def weights_stamp(adapter_dir: Path | None) -> list[tuple[str, int, int]]:
    """Which weights a directory holds (names, sizes, times): a memo of a version's scores is
    keyed by it, so that a directory retrained in place is scored afresh."""
    weights = [] if adapter_dir is None else sorted(Path(adapter_dir).glob("*.safetensors"))
    return [(w.name, w.stat().st_size, w.stat().st_mtime_ns) for w in weights]


def _perplexity(context: SleepContext, adapter_dir: Path | None) -> float:
    """Reference perplexity; a published version's (or the base model's) is computed once."""
    return remembered(
        context.config.cache_dir / "sleep",
        "perplexity",
        [str(context.model_path), str(adapter_dir), weights_stamp(adapter_dir), REFERENCE_TEXT],
        lambda: reference_perplexity(context.model_path, adapter_dir),
    )


def prompted_samples(facts: Sequence[Fact], prompts: Sequence[str], *, seed: int = 0) -> list[ChatSample]:
    """Each fact asked once more under each system prompt the agent answers with.

    Trained only under the chat template's default system prompt, the default model answered the
    same questions with another fact's answer once the agent's own prompt stood in front (the
    persona demo: "What is my diet?" -> "Your name is Priya.").
    """
    rng = random.Random(seed)
    samples = []
    for prompt in prompts:
        for fact in facts:
            question = rng.choice([*fact.questions, *(q for q, _ in fact.pairs)])
            answer = dict(fact.pairs).get(question, fact.answer)
            messages = ({"role": "system", "content": prompt}, {"role": "user", "content": question})
            samples.append(ChatSample(prompt=messages, answer=answer, episode_id=fact.episode_id))
    return samples


def retrieval_samples(
    facts: Sequence[Fact], recall_prompt: str, *, share: float, distractors: int, seed: int = 0
) -> list[ChatSample]:
    """Retrieval-augmented fine-tuning: a share of the facts asked with the recall message in the
    prompt, holding the fact among ``distractors`` others, answered as without it.

    Trained on answers alone, an adapter learns to answer from its weights even when recall shows
    it the memory, and a wrong weight then beats a right memory (sleep + retrieval fell below
    retrieval alone). These samples show it the message it will see at inference.
    """
    rng = random.Random(seed)
    picked = rng.sample(list(facts), round(len(facts) * share)) if facts else []
    samples = []
    for fact in picked:
        others = [f for f in facts if f.statement != fact.statement]
        shown = [fact, *rng.sample(others, min(distractors, len(others)))]
        rng.shuffle(shown)
        lines = "\n".join(f"- {f.source}: {f.statement}" for f in shown)
        question = rng.choice([*fact.questions, *(q for q, _ in fact.pairs)])
        answer = dict(fact.pairs).get(question, fact.answer)
        prompt = with_recall(recall_prompt.format(memories=lines), question)
        samples.append(ChatSample(prompt=tuple(prompt), answer=answer, episode_id=fact.episode_id))
    return samples


def already_knows(backend, max_tokens: int = 32, namespace: str | None = None) -> Callable[[str], bool]:  # noqa: ANN001
    """For the critic: does the served model already answer this statement's first question right?"""

    def knows(statement: str) -> bool:
        (fact,) = extract_facts([Statement(statement, "user", "")])
        answer = backend.chat(fact.questions[0], namespace=namespace, max_tokens=max_tokens)
        return fact.keyword.lower() in answer.lower()

    return knows


def _withdraw(backend, registry: AdapterRegistry, name: str, version: int, *, wait: bool = True) -> None:  # noqa: ANN001
    if name in backend.loaded_adapters and name not in backend.router.active_names():
        backend.unload_adapter(name, wait=wait)
    if name not in backend.loaded_adapters:  # files stay while the server may still read them
        registry.discard(version)


def _retire_holders(
    registry: AdapterRegistry, forgotten: Sequence[str], *, before: int | None = None
) -> list[int]:
    """Delete the weights of every earlier version that learned a forgotten episode."""
    retired = []
    for version, held in registry.holders(forgotten).items():
        if before is None or version < before:
            registry.retire(version, reason=f"held {len(held)} forgotten episode(s)")
            retired.append(version)
    return retired


def _serve_base(backend, registry: AdapterRegistry, namespace: str, forgotten: Sequence[str]) -> None:  # noqa: ANN001
    registry.clear_current()  # first: a restart must not serve what was forgotten
    backend.activate(None, namespace=namespace)
    _retire_holders(registry, forgotten)


def _off_the_old_version(backend, namespace: str) -> None:  # noqa: ANN001
    """Route ``namespace`` to the base model until ``memory.reload()`` serves the rebuild.

    Routing changes in this process and cannot fail; unloading the old adapter needs the server,
    which may be the thing that is away (it is unloaded at the next activation then).
    """
    old = backend.router.set_active(None, namespace)  # not activate(): it is what failed
    if old is not None:
        try:
            backend.unload_adapter(old, wait=False)
        except Exception as e:  # the server is away; nobody is routed to it any more
            log.warning("could not unload %s after a failed reload: %s", old, e)


def learned_from(samples: Sequence[ChatSample], kept: Sequence[str]) -> list[str]:
    """Every episode a version learned: the new ones kept, and every one a sample came from
    (replayed facts and trajectories included), so that forgetting any of them finds this version."""
    return sorted({*kept, *(s.episode_id for s in samples if s.episode_id)})


def _text(statement: Statement | None) -> str | None:
    return statement.text if statement else None


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    progress.emit({"stage": stage, "status": "started"})
    try:
        yield
    finally:
        timings[stage] = round(time.perf_counter() - started, 3)
        progress.emit({"stage": stage, "status": "done", "seconds": timings[stage]})
