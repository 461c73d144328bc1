"""Settings of the sleep cycle: training, gate, dreams, and the cycle that holds them.

Kept apart from the stages so that ``SleepConfig`` can hold them without importing the stages,
and so that each default is set once, here, on the class that owns it: constructing any part
(``CycleConfig(training=LoraTrainConfig(rank=8))``) keeps every other tuned value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DreamKind = Literal["paraphrase", "inverse", "compositional", "check", "rehearsal", "cloze", "self_question"]


class LoraTrainConfig(BaseModel):
    """LoRA and optimiser settings of one consolidation run."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(16, ge=1, le=256, description="LoRA rank r (vLLM's --max-lora-rank must be >= r)")
    alpha: int = Field(32, ge=1, description="LoRA alpha; the update is scaled by alpha / rank")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    target_modules: list[str] | str = Field("all-linear", description="layers that get LoRA matrices")
    learning_rate: float = Field(5e-4, gt=0, description="AdamW learning rate")
    epochs: float = Field(5.0, gt=0, description="passes over the samples")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="learning-rate schedule over the run (transformers' names)"
    )
    max_steps: int = Field(
        -1,
        ge=-1,
        description="run at most this many optimiser steps, whatever epochs and min_steps ask (-1: no cap); "
        "bounds the cost of a sleep over many long samples",
    )
    min_steps: int = Field(
        40, ge=0, description="run at least this many steps, so that a sleep over a few memories still learns"
    )
    batch_size: int = Field(8, ge=1, description="samples per optimiser step")
    max_length: int = Field(256, ge=16, description="samples are truncated to this many tokens")
    seed: int = Field(0, description="seed for LoRA initialisation and data order")
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads while training (None: torch default)"
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="compute precision of the training steps (the adapter's weights stay float32): "
        "'auto' computes in bfloat16 where the hardware does so natively (a CUDA GPU with bfloat16, "
        "a CPU with AVX512-BF16 or AMX), else float32",
    )
    known_token_threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="leave out of the loss the answer tokens the model already predicts with at least "
        "this probability (MemFT-style: train only what is not yet known); None trains every token",
    )
    kl_weight: float = Field(
        2.0,
        ge=0,
        description="retention regulariser: weight of KL(base || adapter) on the anchor samples' answers",
    )
    distill_weight: float = Field(
        0.0,
        ge=0,
        description="context distillation: weight of KL(base model given the sample's teacher_prompt || "
        "adapter given its prompt) on the answer tokens of samples that have a teacher_prompt",
    )

    @field_validator("max_steps")
    @classmethod
    def _a_cap_or_none(cls, value: int) -> int:
        if value == 0:
            raise ValueError("max_steps=0 would train nothing: give a cap of 1 or more, or -1 for none")
        return value


class GateConfig(BaseModel):
    """How much better the candidate must be, and how much worse it may be."""

    model_config = ConfigDict(extra="forbid")

    min_recall_gain: float = Field(0.0, ge=0, le=1, description="held-out recall must rise by more than this")
    max_probe_drop: int = Field(1, ge=0, description="probe questions the candidate may lose")
    max_retention_drop: float = Field(
        0.1, ge=0, le=1, description="fraction of earlier memories' recall the candidate may lose"
    )
    max_retention_lost: int = Field(
        1,
        ge=0,
        description="earlier memories the candidate may lose however few there are (with 5, a fraction "
        "of 10% would allow none); the larger of the two allowances applies",
    )
    max_behaviour_drop: float = Field(
        0.0,
        ge=0,
        le=1,
        description="with a behaviour check (held-out tasks played by both versions): how much of the "
        "mean task score the candidate may lose",
    )
    probe_slack_if_better: int = Field(
        1,
        ge=0,
        description="more probe questions a candidate may lose when it plays the held-out tasks better",
    )
    max_perplexity_rise: float | None = Field(
        0.10,
        ge=0,
        description="relative rise of perplexity on reference text the candidate may cause (None: not measured)",
    )
    max_questions: int = Field(
        64,
        ge=1,
        description="held-out questions asked of new memories, and again of earlier ones, at most "
        "(a fixed sample beyond): keeps the gate's time bounded after a long conversation",
    )


class DreamConfig(BaseModel):
    """How much to dream and how to learn from it (the switch is ``SleepConfig.dreaming``)."""

    model_config = ConfigDict(extra="forbid")

    kinds: list[DreamKind] = Field(
        default_factory=lambda: [
            "paraphrase",
            "inverse",
            "compositional",
            "check",
            "rehearsal",
            "cloze",
            "self_question",
        ],
        description="which practice tasks to write",
    )
    per_memory: int = Field(3, ge=1, description="at most this many dreams of one kind per memory")
    rehearse: int = Field(20, ge=0, description="earlier memories rehearsed per sleep")
    compositions: int = Field(40, ge=0, description="at most this many compositional dreams per sleep")
    budget: int = Field(300, ge=1, description="at most this many dreams are trained per sleep")
    fuzzy: float = Field(
        0.8, gt=0, le=1, description="similarity at which an answer's words count as the source's"
    )
    judge: bool = Field(
        False,
        description="also ask the base model whether each teacher answer agrees with its source "
        "(one more generation per dream; useful with larger models)",
    )
    answer_tokens: int = Field(24, ge=4, description="tokens generated per teacher and student answer")
    epochs: float = Field(2.0, gt=0, description="passes over the kept dreams, continuing the draft")
    min_steps: int = Field(10, ge=0, description="at least this many optimiser steps on the dreams")
    replay_fraction: float = Field(
        1.0, ge=0, le=1, description="share of the draft's own memory samples replayed with the dreams"
    )
    distill_weight: float = Field(
        0.0,
        ge=0,
        description="add context distillation (GKD-style): KL from the base model reading the memory to "
        "the adapter without it, on the kept answers (0: off, the answers are learned as text only)",
    )
    on_policy: bool = Field(
        False,
        description="with distillation, also distil on the student's own wrong answers (on-policy)",
    )
    seed: int = Field(0, description="seed for sampling memories and dreams")


class CycleConfig(BaseModel):
    """Settings of the standard cycle."""

    model_config = ConfigDict(extra="forbid")

    training: LoraTrainConfig = Field(
        default_factory=LoraTrainConfig,
        description="LoRA and optimiser settings",
    )
    gate: GateConfig = Field(default_factory=GateConfig, description="acceptance bounds")
    anchors: bool = Field(True, description="mix the base model's answers to general prompts into training")
    anchor_ratio: float | None = Field(
        None,
        gt=0,
        description="at most this many anchors per memory sample (None: every anchor); a sleep on a "
        "handful of trajectories need not train 40 anchors each time",
    )
    novelty_check: bool = Field(
        False,
        description="ask the served model each new fact first and skip those it already answers right "
        "(one generation per fact)",
    )
    text_anchors: bool = Field(
        True,
        description="also train the base model's own paragraphs on general topics as plain text, with "
        "the KL term: keeps its prose outside the chat template (perplexity) where it was",
    )
    start: Literal["rebuild", "continual"] = Field(
        "rebuild",
        description="'rebuild': a fresh adapter from every consolidated memory (slower as memories grow, "
        "nothing drifts); 'continual': continue the current adapter on the new memories plus a replay sample",
    )
    replay: int = Field(50, ge=0, description="earlier facts replayed per sleep in 'continual' mode")
    answer_tokens: int = Field(32, ge=4, description="tokens generated per gate question")
    action_tokens: int = Field(
        48, ge=4, description="tokens generated per action in the gate's behaviour check"
    )
    reload_attempts: int = Field(
        5,
        ge=1,
        description="tries to serve a published version while the server is away (then it is left to reload())",
    )
    reload_backoff_s: float = Field(
        1.0, ge=0, description="first wait between tries; doubles each time, up to 30 s"
    )
    fact_sources: list[Literal["user", "tool"]] = Field(
        default_factory=lambda: ["user", "tool"],
        description="whose words become facts; [] for agents whose tools describe a world that is new "
        "each episode (a game): they learn from their won trajectories alone",
    )
    tool_calls: Literal["auto", "text", "hermes", "mistral", "llama3_json"] = Field(
        "auto",
        description="how trajectories' tool calls are trained: 'auto' writes them the way the server's "
        "tool-call parser reads them (a native tool-calling agent improves as it is really prompted), "
        "'text' as 'call name({...})' in the game agent's own prompt",
    )
    trajectory_window: int | None = Field(
        None,
        ge=0,
        description="steps of history each behaviour-cloning sample keeps after the opening user turn "
        "(None: all); an agent acting from the same window sees what it was trained on",
    )
    max_sample_passes: int | None = Field(
        1500,
        ge=1,
        description="at most this many samples x epochs per sleep: a sleep over a long conversation "
        "trains fewer epochs instead of taking hours (None: no limit)",
    )
    retrieval_mix: float = Field(
        0.35,
        ge=0,
        le=1,
        description="share of memories also trained with the recall message in the prompt, the memory "
        "among others (retrieval-augmented fine-tuning): the adapter learns to use what recall shows it",
    )
    retrieval_distractors: int = Field(
        2, ge=0, description="other memories shown beside the right one in those samples"
    )
    dreams: DreamConfig = Field(
        default_factory=DreamConfig,
        description="what to dream when SleepConfig.dreaming is on",
    )
