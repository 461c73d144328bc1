"""One served model for a whole evaluation, a fresh memory per condition, timed and counted asks.

Every condition of a protocol runs on the same server and the same data in one process, so the
baselines and the memory under test differ only in what the protocol changes.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tqdm.auto import tqdm

from sleep_agent.config import RecallConfig, SleepConfig, SleepPolicy

if TYPE_CHECKING:
    from sleep_agent.nodes import SleepMemory
    from sleep_agent.serving.base import ServingBackend
    from sleep_agent.sleep.standard import CycleConfig

Message = dict[str, str]
Prompt = str | Sequence[Message]


@dataclass(frozen=True)
class Asked:
    """An answer with what it cost: prompt tokens (chat template included) and seconds."""

    answer: str
    prompt_tokens: int
    seconds: float


class Harness:
    """``with Harness(...) as h:`` starts the model server once; ``h.memory(label)`` per condition."""

    def __init__(
        self,
        *,
        model: str = "default",
        serving: Literal["vllm", "local"] = "vllm",
        work_dir: Path | None = None,
        cycle: CycleConfig | None = None,
        progress: bool = True,
    ) -> None:
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="sleep-agent-eval-"))
        self.config = SleepConfig(model=model, serving=serving, home=self.work_dir / "server")
        self.cycle_config = cycle
        self.progress = progress
        self._backend: ServingBackend | None = None
        self._memories: list[SleepMemory] = []

    # -- the model ----------------------------------------------------------------------

    @cached_property
    def model_path(self) -> Path:
        from sleep_agent.models import prepare_model

        return prepare_model(self.config.model, self.config.cache_dir, progress=self.progress)

    @property
    def backend(self) -> ServingBackend:
        if self._backend is None:
            from sleep_agent.serving import create_backend

            self._backend = create_backend(self.config, self.model_path)
            started = time.perf_counter()
            self._backend.start()
            self.server_start_s = round(time.perf_counter() - started, 1)
        return self._backend

    @cached_property
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.model_path)

    def prompt_tokens(self, prompt: Prompt) -> int:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)

    def cycle(self, seed: int = 0, settings: CycleConfig | None = None, behaviour: Any = None) -> Any:
        """A fresh standard cycle (nothing cached carries over) with ``seed`` for training and dreams;
        ``behaviour``: the gate's behaviour check, for an acting agent."""
        from sleep_agent.sleep.standard import CycleConfig, StandardCycle

        base = settings or self.cycle_config or CycleConfig()
        config = base.model_copy(
            update={
                "training": base.training.model_copy(update={"seed": seed}),
                "dreams": base.dreams.model_copy(update={"seed": seed}),
            }
        )
        return StandardCycle(config, behaviour=behaviour)

    def memory(
        self,
        label: str,
        *,
        dreaming: bool = False,
        seed: int = 0,
        recall_k: int = 4,
        recall: RecallConfig | None = None,
        cycle: CycleConfig | None = None,
        behaviour: Any = None,
    ) -> SleepMemory:
        """A memory of its own on the shared server, from the base model, sleeping only when told.

        ``recall`` replaces the default recall settings (top ``recall_k``, consolidated included);
        ``cycle`` the harness's cycle settings, for a protocol that trains differently; ``behaviour``
        a behaviour check for its gate.
        """
        from langchain_core.messages.utils import count_tokens_approximately

        from sleep_agent.nodes import SleepMemory

        self.backend.activate(None)
        config = SleepConfig(
            namespace=label,
            model=self.config.model,
            home=self.work_dir / label,
            dreaming=dreaming,
            recall=recall or RecallConfig(k=recall_k, include_consolidated=True),
            policy=SleepPolicy(pending_episodes=None, pending_tokens=None, context_fraction=None),
        )
        memory = SleepMemory(
            config,
            backend=self.backend,
            cycle=self.cycle(seed, cycle, behaviour),
            token_counter=count_tokens_approximately,
        )
        self._memories.append(memory)
        return memory

    @property
    def active(self) -> str:
        """The name requests go to now: the active adapter, or the base model."""
        return self.backend.active_adapter or self.backend.base_name

    # -- asking -------------------------------------------------------------------------

    def ask(
        self,
        prompts: Sequence[Prompt],
        *,
        adapter: str | None = None,
        max_tokens: int = 32,
        workers: int = 4,
        desc: str = "asking",
    ) -> list[Asked]:
        """Answers in order. ``workers=1`` for latencies that mean one user waiting on an idle server."""
        target = adapter or self.active

        def one(prompt: Prompt) -> Asked:
            started = time.perf_counter()
            answer = self.backend.chat(prompt, adapter=target, max_tokens=max_tokens)
            return Asked(answer, self.prompt_tokens(prompt), time.perf_counter() - started)

        bar = tqdm(total=len(prompts), desc=desc, unit="q", disable=not self.progress, leave=False)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            out = []
            for asked in pool.map(one, prompts):
                out.append(asked)
                bar.update()
        bar.close()
        return out

    def answers(self, prompts: Sequence[Prompt], **kwargs: Any) -> list[str]:
        return [a.answer for a in self.ask(prompts, **kwargs)]

    # -- lifetime -----------------------------------------------------------------------

    def __enter__(self) -> Harness:
        self.backend  # noqa: B018  (start the server before the first timing)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for memory in self._memories:
            memory.wait()
        if self._backend is not None:
            self._backend.stop()
            self._backend = None


def costs(asked: Sequence[Asked]) -> dict[str, float]:
    """Median prompt tokens and latency of a condition's questions."""
    return {
        "prompt_tokens": statistics.median(a.prompt_tokens for a in asked),
        "latency_s": round(statistics.median(a.seconds for a in asked), 3),
    }
