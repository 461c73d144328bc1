"""Consolidation: train a LoRA adapter on chat samples with peft and the transformers Trainer.

Loss is taken on the assistant's answer only (the prompt is masked), so the adapter learns what
to say, not to reproduce questions. Saved adapters are plain peft directories that vLLM loads.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

IGNORE_INDEX = -100


class LoraTrainConfig(BaseModel):
    """LoRA and optimiser settings of one consolidation run."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(16, ge=1, le=256, description="LoRA rank r (vLLM's --max-lora-rank must be >= r)")
    alpha: int = Field(32, ge=1, description="LoRA alpha; the update is scaled by alpha / rank")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    target_modules: list[str] | str = Field("all-linear", description="layers that get LoRA matrices")
    learning_rate: float = Field(2e-4, gt=0, description="AdamW learning rate")
    epochs: float = Field(4.0, gt=0, description="passes over the samples")
    max_steps: int = Field(-1, description="stop after this many steps (-1: run all epochs)")
    min_steps: int = Field(
        0, ge=0, description="run at least this many steps, so that a sleep over a few memories still learns"
    )
    batch_size: int = Field(8, ge=1, description="samples per optimiser step")
    max_length: int = Field(256, ge=16, description="samples are truncated to this many tokens")
    seed: int = Field(0, description="seed for LoRA initialisation and data order")
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads while training (None: torch default)"
    )


@dataclass(frozen=True)
class ChatSample:
    """One training sample: a conversation prompt and the answer the adapter should give."""

    prompt: Sequence[dict[str, str]]
    answer: str

    @classmethod
    def qa(cls, question: str, answer: str) -> ChatSample:
        return cls(prompt=[{"role": "user", "content": question}], answer=answer)


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    steps: int
    train_tokens: int
    seconds: float
    final_loss: float

    @property
    def tokens_per_s(self) -> float:
        return self.train_tokens / max(self.seconds, 1e-9)


def encode_sample(tokenizer: Any, sample: ChatSample, max_length: int) -> dict[str, list[int]]:
    """Token ids of prompt+answer with labels masked on the prompt part."""
    prompt_ids = tokenizer.apply_chat_template(
        list(sample.prompt), add_generation_prompt=True, tokenize=True, return_dict=False
    )
    full = [*sample.prompt, {"role": "assistant", "content": sample.answer}]
    full_ids = tokenizer.apply_chat_template(full, tokenize=True, return_dict=False)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError(
            "the chat template renders the prompt differently inside the full conversation; "
            "cannot mask the prompt tokens"
        )
    full_ids = list(full_ids)[:max_length]
    labels = [IGNORE_INDEX] * min(len(prompt_ids), len(full_ids)) + full_ids[len(prompt_ids) :]
    return {"input_ids": full_ids, "attention_mask": [1] * len(full_ids), "labels": labels}


def pad_batch(features: list[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch; labels are padded with IGNORE_INDEX."""
    import torch

    width = max(len(f["input_ids"]) for f in features)

    def pad(key: str, value: int) -> Any:
        return torch.tensor([f[key] + [value] * (width - len(f[key])) for f in features])

    return {
        "input_ids": pad("input_ids", pad_id),
        "attention_mask": pad("attention_mask", 0),
        "labels": pad("labels", IGNORE_INDEX),
    }


def train_adapter(
    model_path: str | Path,
    samples: Sequence[ChatSample],
    output_dir: str | Path,
    config: LoraTrainConfig | None = None,
    *,
    progress: bool = True,
) -> TrainResult:
    """Train a fresh LoRA adapter on ``samples`` and save it to ``output_dir`` (a peft directory)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    config = config or LoraTrainConfig()
    if not samples:
        raise ValueError("train_adapter() needs at least one sample")
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    scratch = tempfile.TemporaryDirectory(prefix="sleep-agent-train-")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        torch.manual_seed(config.seed)
        model = get_peft_model(
            model,
            LoraConfig(
                r=config.rank,
                lora_alpha=config.alpha,
                lora_dropout=config.dropout,
                target_modules=config.target_modules,
                task_type="CAUSAL_LM",
                bias="none",
            ),
        )
        encoded = [encode_sample(tokenizer, s, config.max_length) for s in samples]
        steps_per_epoch = -(-len(encoded) // config.batch_size)
        max_steps = config.max_steps
        if max_steps < 0 and config.epochs * steps_per_epoch < config.min_steps:
            max_steps = config.min_steps
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        args = TrainingArguments(
            output_dir=scratch.name,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            num_train_epochs=config.epochs,
            max_steps=max_steps,
            train_sampling_strategy="group_by_length",  # batches of similar length waste less compute on padding
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=0.0,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=config.seed,
            data_seed=config.seed,
            disable_tqdm=not progress,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            remove_unused_columns=False,
        )
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=encoded,
            data_collator=lambda batch: pad_batch(batch, pad_id),
        )
        if not progress:  # with tqdm off, the Trainer prints every log dict instead
            trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
        hf_logging.set_verbosity(verbosity)
        output_dir = Path(output_dir)
        model.save_pretrained(output_dir)
        steps = int(output.global_step)
        epochs_run = steps * config.batch_size / len(encoded)
        tokens = int(sum(len(e["input_ids"]) for e in encoded) * epochs_run)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        return TrainResult(
            adapter_dir=output_dir,
            steps=steps,
            train_tokens=tokens,
            seconds=seconds,
            final_loss=float(losses[-1]) if losses else float("nan"),
        )
    finally:
        torch.set_num_threads(previous_threads)
        scratch.cleanup()


# General prompts the base model answers before training; its own answers are trained alongside
# the new memories so that the adapter keeps answering them the same way (self-distillation
# anchors). Disjoint from the gate's probe and from every evaluation set (tests/test_gate.py
# checks general_probe.jsonl).
ANCHOR_PROMPTS = [
    "Hello! How are you today?",
    "What is the capital of Germany?",
    "Name three primary colors.",
    "What is 3 plus 5?",
    "Explain what a noun is in one sentence.",
    "What do cows drink?",
    "How many continents are there?",
    "What do you call a baby cat?",
    "Give me a synonym for happy.",
    "What is the capital of Spain?",
    "Who painted the Mona Lisa?",
    "What is the square root of 16?",
    "Translate 'thank you' into French.",
    "What season comes after summer?",
    "Write a short sentence about the sea.",
    "What is the largest mammal?",
    "How many minutes are in an hour?",
    "What is the capital of Canada?",
    "What does a thermometer measure?",
    "Name a fruit that is yellow.",
    "What is the plural of mouse?",
    "What is the closest star to Earth?",
    "What is 9 minus 4?",
    "What language is spoken in Brazil?",
]


def anchor_samples(
    answer: Any, prompts: Sequence[str] = ANCHOR_PROMPTS, max_tokens: int = 48
) -> list[ChatSample]:
    """``answer(prompt, max_tokens)`` is the model before training (usually the base model).

    Asked concurrently, so that a serving backend answers them in one batch.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda p: answer(p, max_tokens), prompts))
    return [ChatSample.qa(p, a) for p, a in zip(prompts, answers, strict=True)]
