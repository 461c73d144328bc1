"""Consolidation: train a LoRA adapter on chat samples with peft and the transformers Trainer.

Loss is taken on the assistant's answer only (the prompt is masked), so the adapter learns what
to say, not to reproduce questions. Saved adapters are plain peft directories that vLLM loads.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sleep_agent.extras import require_training
from sleep_agent.progress import emit, training_callback
from sleep_agent.sleep.settings import LoraTrainConfig

# One training at a time in a process: the Trainer's accelerate state and torch's thread count are
# process-wide, so two users' sleeps training at once break each other (and share the same cores).
_TRAINING = threading.Lock()

IGNORE_INDEX = -100


@dataclass(frozen=True)
class ChatSample:
    """One training sample: a conversation prompt and the answer the adapter should give."""

    prompt: Sequence[dict[str, str]]
    answer: str
    anchor: bool = False  # a general prompt answered by the base model (for the KL regulariser)
    # the same question with its source memory in context, for context distillation
    teacher_prompt: Sequence[dict[str, str]] | None = None
    imitate: bool = True  # False: the answer is only where the teacher is asked (distillation only)
    episode_id: str | None = None  # the episode it was learned from: the manifest lists every one

    @classmethod
    def qa(
        cls, question: str, answer: str, *, anchor: bool = False, episode_id: str | None = None
    ) -> ChatSample:
        return cls(
            prompt=[{"role": "user", "content": question}],
            answer=answer,
            anchor=anchor,
            episode_id=episode_id,
        )

    @classmethod
    def text(cls, text: str, *, anchor: bool = True) -> ChatSample:
        """Plain text, no chat template, every token trained: keeps the model's prose as it was."""
        return cls(prompt=(), answer=text, anchor=anchor)


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
    """Token ids of prompt+answer with labels masked on the prompt part.

    With a ``teacher_prompt``, the same answer after the teacher's prompt too (``teacher_*``), when
    both keep every answer token within their length limit (the teacher's is longer: it holds the
    memory), so that the answer positions of the two can be paired one to one.
    """
    encoded = _encode(tokenizer, sample.prompt, sample.answer, max_length)
    encoded["anchor"] = int(sample.anchor)
    encoded["imitate"] = int(sample.imitate)
    if sample.teacher_prompt is not None:
        teacher = _encode(tokenizer, sample.teacher_prompt, sample.answer, max_length * 4)
        if _answer_tokens(teacher["labels"]) == _answer_tokens(encoded["labels"]):
            encoded.update({f"teacher_{k}": v for k, v in teacher.items()})
    return encoded


def _encode(
    tokenizer: Any, prompt: Sequence[dict[str, str]], answer: str, max_length: int
) -> dict[str, list[int]]:
    if not prompt:
        ids = list(tokenizer(answer).input_ids)[:max_length]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ids}
    prompt_ids = tokenizer.apply_chat_template(
        list(prompt), add_generation_prompt=True, tokenize=True, return_dict=False
    )
    full = [*prompt, {"role": "assistant", "content": answer}]
    full_ids = tokenizer.apply_chat_template(full, tokenize=True, return_dict=False)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError(
            "the chat template renders the prompt differently inside the full conversation; "
            "cannot mask the prompt tokens"
        )
    answer_ids = list(full_ids)[len(prompt_ids) :]
    # A long prompt (a trajectory's history) loses its oldest tokens, not the answer: cut on the
    # right, a long behaviour-cloning sample would train nothing at all.
    budget = max(max_length - len(answer_ids), max_length // 2)
    prompt_ids = list(prompt_ids)[-budget:]
    full_ids = (prompt_ids + answer_ids)[:max_length]
    labels = [IGNORE_INDEX] * min(len(prompt_ids), len(full_ids)) + full_ids[len(prompt_ids) :]
    return {"input_ids": full_ids, "attention_mask": [1] * len(full_ids), "labels": labels}


def _answer_tokens(labels: list[int]) -> list[int]:
    return [t for t in labels if t != IGNORE_INDEX]


def pad_batch(features: list[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch; labels are padded with IGNORE_INDEX.

    Rows without a teacher sequence get an empty one (one pad token, no label) when others have it.
    """
    import torch

    def pad(key: str, value: int) -> Any:
        rows = [f.get(key, [value]) for f in features]
        width = max(len(r) for r in rows)
        return torch.tensor([r + [value] * (width - len(r)) for r in rows])

    batch = {
        "input_ids": pad("input_ids", pad_id),
        "attention_mask": pad("attention_mask", 0),
        "labels": pad("labels", IGNORE_INDEX),
        "anchor": torch.tensor([f.get("anchor", 0) for f in features]),
        "imitate": torch.tensor([f.get("imitate", 1) for f in features]),
    }
    if any("teacher_input_ids" in f for f in features):
        batch["teacher_input_ids"] = pad("teacher_input_ids", pad_id)
        batch["teacher_attention_mask"] = pad("teacher_attention_mask", 0)
        batch["teacher_labels"] = pad("teacher_labels", IGNORE_INDEX)
        batch["distill"] = torch.tensor([int("teacher_input_ids" in f) for f in features])
    return batch


def train_adapter(
    model_path: str | Path,
    samples: Sequence[ChatSample],
    output_dir: str | Path,
    config: LoraTrainConfig | None = None,
    *,
    progress: bool = True,
    start_from: str | Path | None = None,
) -> TrainResult:
    """Train a LoRA adapter on ``samples`` and save it to ``output_dir`` (a peft directory).

    A fresh adapter by default; ``start_from`` continues training an existing one (its rank and
    target modules win over ``config``'s). Trainings in one process run one after another.
    """
    require_training("training an adapter (a sleep)")
    if not _TRAINING.acquire(blocking=False):
        emit({"stage": "consolidate", "waiting": "another sleep in this process is training"})
        _TRAINING.acquire()
    try:
        return _train(model_path, samples, output_dir, config, progress=progress, start_from=start_from)
    finally:
        _TRAINING.release()


def _train(
    model_path: str | Path,
    samples: Sequence[ChatSample],
    output_dir: str | Path,
    config: LoraTrainConfig | None,
    *,
    progress: bool,
    start_from: str | Path | None,
) -> TrainResult:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    config = config or LoraTrainConfig()
    if not samples:
        raise ValueError("train_adapter() needs at least one sample")
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    Path(output_dir).parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.TemporaryDirectory(prefix=".train-", dir=Path(output_dir).parent)  # beside the output
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        torch.manual_seed(config.seed)
        if start_from is not None:
            model = PeftModel.from_pretrained(model, start_from, is_trainable=True)
        else:
            model = _fresh_lora(get_peft_model, LoraConfig, model, config)
        encoded = [encode_sample(tokenizer, s, config.max_length) for s in samples]
        max_steps = planned_steps(len(encoded), config)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        args = TrainingArguments(
            output_dir=scratch.name,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            num_train_epochs=config.epochs,
            max_steps=max_steps,
            train_sampling_strategy="group_by_length",  # batches of similar length waste less compute on padding
            lr_scheduler_type=config.lr_schedule,
            warmup_steps=0,
            weight_decay=0.0,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=config.seed,
            data_seed=config.seed,
            disable_tqdm=not progress,
            use_cpu=not torch.cuda.is_available(),
            bf16=train_in_bfloat16(config.precision),
            dataloader_num_workers=0,
            remove_unused_columns=False,
        )
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        trainer = _retention_trainer(Trainer, config)(
            model=model,
            args=args,
            train_dataset=encoded,
            data_collator=lambda batch: pad_batch(batch, pad_id),
        )
        if not progress:  # with tqdm off, the Trainer prints every log dict instead
            trainer.remove_callback(PrinterCallback)
        trainer.add_callback(training_callback())  # step and loss to a streaming graph run
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


def planned_steps(samples: int, config: LoraTrainConfig) -> int:
    """Optimiser steps of a run: its epochs over ``samples``, at least ``min_steps``, at most
    ``max_steps`` when set. Always passed to the Trainer, which otherwise rounds epochs its own way."""
    steps = max(math.ceil(config.epochs * math.ceil(samples / config.batch_size)), config.min_steps, 1)
    return min(steps, config.max_steps) if config.max_steps > 0 else steps


def train_in_bfloat16(precision: str) -> bool:
    """Whether to compute in bfloat16: asked for, or 'auto' on hardware with native bfloat16 math.

    Mixed precision keeps float32 master weights; on a CPU without bfloat16 instructions it would be
    emulated and slower, so 'auto' stays in float32 there.
    """
    import torch

    if precision != "auto":
        return precision == "bfloat16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _fresh_lora(get_peft_model: Any, lora_config: Any, model: Any, config: LoraTrainConfig) -> Any:
    return get_peft_model(
        model,
        lora_config(
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=config.target_modules,
            task_type="CAUSAL_LM",
            bias="none",
        ),
    )


def _retention_trainer(trainer_cls: Any, config: LoraTrainConfig) -> Any:
    """The Trainer with the loss this project needs: prompt-masked cross-entropy, optionally only on
    tokens not yet known, plus an optional KL term to the base model on anchor answers.

    Written as a ``compute_loss`` override because neither term is a Trainer or TRL option.
    """

    class RetentionTrainer(trainer_cls):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN202
            anchor, imitate = inputs.pop("anchor"), inputs.pop("imitate")
            teacher = {k: inputs.pop(k) for k in list(inputs) if k.startswith("teacher_") or k == "distill"}
            logits, targets, keep = answer_logits(model, inputs, inputs.pop("labels"))
            imitated = targets.masked_fill(~imitate.bool()[:, None], IGNORE_INDEX)
            loss = token_loss(logits, imitated, config.known_token_threshold)
            if config.distill_weight > 0 and teacher and bool(teacher["distill"].any()):
                rows = teacher["distill"].bool()  # the base model, reading the memory, is the teacher
                with torch_no_grad(), model.disable_adapter():
                    teacher_logits, teacher_targets, _ = answer_logits(
                        model,
                        {
                            "input_ids": teacher["teacher_input_ids"][rows],
                            "attention_mask": teacher["teacher_attention_mask"][rows],
                        },
                        teacher["teacher_labels"][rows],
                    )
                kl = distill_kl(logits[rows], targets[rows], teacher_logits, teacher_targets)
                loss = loss + config.distill_weight * kl
            if config.kl_weight > 0 and bool(anchor.any()):
                rows = anchor.bool()  # the base model is asked about the anchor rows only
                with torch_no_grad(), model.disable_adapter():
                    base_logits = logits_at(model, {k: v[rows] for k, v in inputs.items()}, keep)
                kl = anchor_kl(logits[rows], base_logits, targets[rows], anchor[rows])
                loss = loss + config.kl_weight * kl
            return (loss, {"logits": logits}) if return_outputs else loss

    return RetentionTrainer


def answer_logits(model: Any, inputs: dict[str, Any], labels: Any) -> tuple[Any, Any, Any]:
    """Logits only where an answer token is predicted, the token each one should predict, and the
    positions kept.

    The vocabulary projection is a fifth of a small model's compute and a prompt is most of each
    sample, so projecting the prompt positions (which the loss masks anyway) wastes about a third
    of a training step. Positions are kept for the whole batch (the union over its rows).
    """
    import torch

    targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)  # position i predicts i+1
    keep = kept_positions(targets)
    return logits_at(model, inputs, keep), targets[:, keep], keep


def logits_at(model: Any, inputs: dict[str, Any], positions: Any) -> Any:
    """The model's logits at ``positions`` only, projected there alone when the model allows it."""
    import inspect

    forward = (model.get_base_model() if hasattr(model, "get_base_model") else model).forward
    if "logits_to_keep" in inspect.signature(forward).parameters:
        return model(**inputs, logits_to_keep=positions).logits
    return model(**inputs).logits[:, positions]


def kept_positions(targets: Any) -> Any:
    """The sequence positions where some row of the batch predicts an answer token."""
    return (targets != IGNORE_INDEX).any(0).nonzero().squeeze(-1)


def torch_no_grad() -> Any:
    import torch

    return torch.no_grad()


def token_loss(logits: Any, targets: Any, known_threshold: float | None = None) -> Any:
    """Mean cross-entropy over answer tokens; with a threshold, over the tokens not yet known.

    ``targets[:, i]`` is the token ``logits[:, i]`` should predict (IGNORE_INDEX where none).
    """
    logp = logits.float().log_softmax(-1)
    token_logp = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    mask = targets != IGNORE_INDEX
    if known_threshold is not None:
        mask = mask & (token_logp.detach().exp() < known_threshold)
    return -(token_logp * mask).sum() / mask.sum().clamp(min=1)


def distill_kl(logits: Any, targets: Any, teacher_logits: Any, teacher_targets: Any) -> Any:
    """KL(teacher || student) per answer token, the i-th answer token of each paired with the i-th of the other."""
    student = logits[targets != IGNORE_INDEX].float().log_softmax(-1)
    teacher = teacher_logits[teacher_targets != IGNORE_INDEX].float().log_softmax(-1)
    if student.shape[0] == 0:
        return logits.sum() * 0.0
    return (teacher.exp() * (teacher - student)).sum(-1).mean()


def anchor_kl(logits: Any, base_logits: Any, targets: Any, anchor: Any) -> Any:
    """KL(base || adapter) per answer token of the anchor samples, averaged."""
    logp = logits.float().log_softmax(-1)
    base = base_logits.float().log_softmax(-1)
    mask = (targets != IGNORE_INDEX) & anchor.bool()[:, None]
    kl = (base.exp() * (base - logp)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


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
    return [ChatSample.qa(p, a, anchor=True) for p, a in zip(prompts, answers, strict=True)]


# Topics the base model writes a paragraph about before training; its paragraphs are trained as
# plain text (with the KL term, its distribution on them) so that its prose outside the chat
# template drifts less. Disjoint from the gate's reference text.
TEXT_TOPICS = [
    "mountains",
    "the post office",
    "tea",
    "bicycles",
    "volcanoes",
    "learning to play the piano",
    "honeybees",
    "bridges",
    "markets",
    "clocks",
    "paper",
    "glass",
    "elephants",
    "lighthouses",
    "gardens",
    "the weather",
]


def text_anchor_samples(
    answer: Any, topics: Sequence[str] = TEXT_TOPICS, max_tokens: int = 96
) -> list[ChatSample]:
    """The model's own paragraphs on general topics, as plain-text samples."""
    from concurrent.futures import ThreadPoolExecutor

    prompts = [f"Write a short paragraph about {topic}." for topic in topics]
    with ThreadPoolExecutor(max_workers=8) as pool:
        texts = list(pool.map(lambda p: answer(p, max_tokens), prompts))
    return [ChatSample.text(t) for t in texts if t.strip()]
