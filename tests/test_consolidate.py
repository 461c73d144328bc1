import json

import pytest

from sleep_agent.serving.base import check_adapter_dir
from sleep_agent.sleep.consolidate import (
    IGNORE_INDEX,
    ChatSample,
    LoraTrainConfig,
    encode_sample,
    pad_batch,
    planned_steps,
    train_adapter,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_prompt_tokens_are_masked_and_answer_tokens_are_learned(tokenizer):
    encoded = encode_sample(
        tokenizer, ChatSample.qa("where does zorblax quenty live ?", "he lives in vellmora ."), 256
    )
    learned = [
        t for t, label in zip(encoded["input_ids"], encoded["labels"], strict=True) if label != IGNORE_INDEX
    ]
    assert tokenizer.decode(learned, skip_special_tokens=True).split() == "he lives in vellmora .".split()
    assert learned[-1] == tokenizer.eos_token_id  # the adapter learns to stop
    assert encoded["labels"][0] == IGNORE_INDEX


def test_truncation_keeps_lengths_aligned(tokenizer):
    encoded = encode_sample(tokenizer, ChatSample.qa("where " * 50, "he lives in vellmora ."), 20)
    assert len(encoded["input_ids"]) == len(encoded["labels"]) == len(encoded["attention_mask"]) == 20


def test_pad_batch_pads_labels_with_ignore_index():
    batch = pad_batch(
        [
            {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
            {"input_ids": [5], "attention_mask": [1], "labels": [5]},
        ],
        pad_id=0,
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]


def test_train_adapter_writes_a_peft_directory_vllm_can_load(tiny_model_dir, tmp_path):
    samples = [ChatSample.qa("where does zorblax quenty live ?", "he lives in vellmora .")]
    result = train_adapter(
        tiny_model_dir,
        samples,
        tmp_path / "v1",
        LoraTrainConfig(rank=4, alpha=8, max_steps=3, batch_size=1),
        progress=False,
    )
    assert check_adapter_dir(result.adapter_dir) == tmp_path / "v1"
    config = json.loads((tmp_path / "v1" / "adapter_config.json").read_text())
    # vLLM's LoRA path accepts plain LoRA only: no DoRA, no bias, no modules_to_save
    assert config["r"] == 4 and config["use_dora"] is False and config["bias"] == "none"
    assert not config.get("modules_to_save")
    assert result.steps == 3 and result.train_tokens > 0 and result.tokens_per_s > 0


def test_a_few_samples_still_get_min_steps_of_training(tiny_model_dir, tmp_path):
    samples = [ChatSample.qa("where does zorblax quenty live ?", "he lives in vellmora .")] * 2
    config = LoraTrainConfig(rank=4, epochs=1, min_steps=4, batch_size=2)
    assert train_adapter(tiny_model_dir, samples, tmp_path / "v1", config, progress=False).steps == 4
    many = LoraTrainConfig(rank=4, epochs=1, min_steps=0, batch_size=2)
    assert train_adapter(tiny_model_dir, samples, tmp_path / "v2", many, progress=False).steps == 1


def test_max_steps_caps_a_long_run_and_min_steps_a_short_one(tiny_model_dir, tmp_path):
    """The cap bounds a sleep over many samples; it never lengthens one over a few."""
    capped = LoraTrainConfig(epochs=3, min_steps=10, max_steps=30, batch_size=4)
    assert planned_steps(78, capped) == 30  # 20 steps an epoch, 3 epochs: 60, capped
    assert planned_steps(14, capped) == 12  # 4 an epoch, 3 epochs
    assert planned_steps(3, capped) == 10  # 1 an epoch: min_steps
    assert planned_steps(3, capped.model_copy(update={"max_steps": 5})) == 5  # the cap wins over min_steps
    assert planned_steps(78, capped.model_copy(update={"max_steps": -1})) == 60
    assert planned_steps(5, LoraTrainConfig(epochs=1.5, min_steps=0, batch_size=2)) == 5  # ceil(1.5 * 3)
    samples = [ChatSample.qa("where does zorblax quenty live ?", "he lives in vellmora .")] * 6
    config = LoraTrainConfig(rank=4, epochs=3, min_steps=0, max_steps=2, batch_size=2)
    assert train_adapter(tiny_model_dir, samples, tmp_path / "v1", config, progress=False).steps == 2


def test_a_cap_of_zero_steps_is_refused():
    with pytest.raises(ValueError, match="max_steps=0 would train nothing"):
        LoraTrainConfig(max_steps=0)


def test_train_adapter_refuses_no_samples(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="at least one sample"):
        train_adapter(tiny_model_dir, [], tmp_path / "v1")


@pytest.mark.parametrize(
    "field,value",
    [("rank", 0), ("learning_rate", 0.0), ("dropout", 1.0), ("batch_size", 0), ("lr_schedule", "cyclic")],
)
def test_bad_train_config_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        LoraTrainConfig(**{field: value})


def test_token_loss_is_cross_entropy_on_answer_tokens_and_skips_known_ones():
    import torch

    from sleep_agent.sleep.consolidate import token_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor(
        [[IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5], [IGNORE_INDEX, 1, 2, IGNORE_INDEX, IGNORE_INDEX]]
    )
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )
    assert torch.allclose(token_loss(logits[:, :-1], labels[:, 1:]), expected)

    logits[0, 1, 3] = 50.0  # token 3 is already predicted with certainty: MemFT leaves it out
    known = token_loss(logits[:, :-1], labels[:, 1:], known_threshold=0.9)
    keep = labels[:, 1:].clone()
    keep[0, 1] = IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 7), keep.reshape(-1), ignore_index=IGNORE_INDEX
    )
    assert torch.allclose(known, expected)


def test_anchor_kl_counts_anchor_answers_only():
    import torch

    from sleep_agent.sleep.consolidate import anchor_kl

    torch.manual_seed(0)
    base = torch.randn(2, 4, 6)
    labels = torch.tensor([[1, 2, 3, IGNORE_INDEX], [1, 2, 3, IGNORE_INDEX]])  # what each position predicts
    assert anchor_kl(base, base, labels, torch.tensor([1, 1])).item() == pytest.approx(0.0, abs=1e-6)
    moved = base.clone()
    moved[1] += torch.randn(4, 6)  # only the second sample drifts
    assert anchor_kl(moved, base, labels, torch.tensor([1, 0])).item() == pytest.approx(0.0, abs=1e-6)
    assert anchor_kl(moved, base, labels, torch.tensor([0, 1])).item() > 0.01


def test_the_loss_on_answer_positions_alone_equals_the_loss_on_every_position(tiny_model_dir, tokenizer):
    """Only answer positions are projected onto the vocabulary; the loss must not change."""
    import torch
    from transformers import AutoModelForCausalLM

    from sleep_agent.sleep.consolidate import answer_logits, token_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    samples = [
        ChatSample.qa("where does zorblax quenty live ?", "he lives in vellmora ."),
        ChatSample.qa("hi", "hello there , how are you doing today ?"),
        ChatSample.text("rivers shape the land ."),
    ]
    batch = pad_batch([encode_sample(tokenizer, s, 64) for s in samples], pad_id=0)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    logits, targets, keep = answer_logits(model, inputs, batch["labels"])
    full = model(**inputs).logits
    assert len(keep) < full.shape[1]  # prompt positions were left out
    expected = torch.nn.functional.cross_entropy(
        full[:, :-1].reshape(-1, full.shape[-1]),
        batch["labels"][:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
    )
    assert torch.allclose(token_loss(logits, targets), expected, atol=1e-5)


def test_with_every_token_known_nothing_is_learned_and_kl_trains_anchors(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    samples = [ChatSample.qa("where does zorblax quenty live ?", "he lives in vellmora .")] * 2
    samples.append(ChatSample.qa("hello", "hi there .", anchor=True))
    frozen = LoraTrainConfig(rank=4, max_steps=3, batch_size=3, known_token_threshold=1e-12, kl_weight=0.0)
    train_adapter(tiny_model_dir, samples, tmp_path / "known", frozen, progress=False)
    weights = load_file(tmp_path / "known" / "adapter_model.safetensors")
    assert all(not w.any() for k, w in weights.items() if "lora_B" in k)  # B starts at zero and stayed

    with_kl = LoraTrainConfig(rank=4, max_steps=3, batch_size=3, kl_weight=1.0)
    result = train_adapter(tiny_model_dir, samples, tmp_path / "kl", with_kl, progress=False)
    weights = load_file(tmp_path / "kl" / "adapter_model.safetensors")
    assert result.steps == 3 and any(w.any() for k, w in weights.items() if "lora_B" in k)


def test_continual_training_starts_from_the_given_adapter(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    samples = [ChatSample.qa("where does zorblax quenty live ?", "he lives in vellmora .")]
    train_adapter(
        tiny_model_dir,
        samples,
        tmp_path / "v1",
        LoraTrainConfig(rank=4, max_steps=3, batch_size=1),
        progress=False,
    )
    frozen = LoraTrainConfig(rank=8, max_steps=2, batch_size=1, known_token_threshold=1e-12)  # learns nothing
    train_adapter(
        tiny_model_dir, samples, tmp_path / "v2", frozen, progress=False, start_from=tmp_path / "v1"
    )
    v1, v2 = (load_file(tmp_path / v / "adapter_model.safetensors") for v in ("v1", "v2"))
    assert v1.keys() == v2.keys() and all(
        torch.equal(v1[k], v2[k]) for k in v1
    )  # rank 4 kept, weights carried
    assert any(w.any() for k, w in v2.items() if "lora_B" in k)


def test_plain_text_samples_train_every_token_without_the_chat_template(tokenizer):
    encoded = encode_sample(tokenizer, ChatSample.text("rivers shape the land ."), max_length=64)
    assert encoded["labels"] == encoded["input_ids"] == list(tokenizer("rivers shape the land .").input_ids)
    assert encoded["anchor"] == 1
    chat = encode_sample(tokenizer, ChatSample.qa("hi", "rivers shape the land ."), max_length=64)
    assert len(chat["input_ids"]) > len(encoded["input_ids"])  # the template adds turns around it


def test_a_teacher_prompt_pairs_the_same_answer_tokens_after_a_longer_prompt(tokenizer):
    sample = ChatSample.qa("where does zorblax live ?", "he lives in vellmora .")
    teacher = [{"role": "user", "content": "zorblax lives in vellmora .\n\nwhere does zorblax live ?"}]
    encoded = encode_sample(tokenizer, ChatSample(sample.prompt, sample.answer, teacher_prompt=teacher), 256)
    answer = [t for t in encoded["labels"] if t != IGNORE_INDEX]
    assert [t for t in encoded["teacher_labels"] if t != IGNORE_INDEX] == answer
    assert len(encoded["teacher_input_ids"]) > len(encoded["input_ids"])
    assert "teacher_input_ids" not in encode_sample(tokenizer, sample, 256)
    batch = pad_batch([encoded, encode_sample(tokenizer, sample, 256)], pad_id=0)
    assert batch["distill"].tolist() == [1, 0] and batch["teacher_labels"][1].eq(IGNORE_INDEX).all()


def test_distill_kl_pairs_answer_tokens_across_prompts_of_different_length():
    import torch

    from sleep_agent.sleep.consolidate import distill_kl

    torch.manual_seed(0)
    student = torch.randn(1, 4, 6)
    labels = torch.tensor([[IGNORE_INDEX, 2, 3, IGNORE_INDEX]])  # answer predicted at positions 1, 2
    teacher = torch.cat([torch.randn(1, 3, 6), student], dim=1)  # 3 more prompt tokens in front
    teacher_labels = torch.tensor([[IGNORE_INDEX] * 4 + [2, 3, IGNORE_INDEX]])
    assert distill_kl(student, labels, teacher, teacher_labels).item() == pytest.approx(0.0, abs=1e-6)
    teacher[0, 4] += 3 * torch.randn(6)  # the teacher disagrees on the first answer token
    assert distill_kl(student, labels, teacher, teacher_labels).item() > 0.01


def test_a_distillation_only_sample_trains_the_adapter_only_through_the_distillation_term(
    tiny_model_dir, tmp_path
):
    """A distillation-only sample (imitate=False) trains nothing without the distillation term."""
    from safetensors.torch import load_file

    teacher = [{"role": "user", "content": "zorblax lives in vellmora . where does zorblax live ?"}]
    samples = [ChatSample.qa("where does zorblax live ?", "he lives in paris .")]
    samples = [ChatSample(samples[0].prompt, samples[0].answer, teacher_prompt=teacher, imitate=False)] * 2
    off = LoraTrainConfig(rank=4, max_steps=3, batch_size=2)
    train_adapter(tiny_model_dir, samples, tmp_path / "off", off, progress=False)
    weights = load_file(tmp_path / "off" / "adapter_model.safetensors")
    assert all(not w.any() for k, w in weights.items() if "lora_B" in k)

    on = LoraTrainConfig(rank=4, max_steps=3, batch_size=2, distill_weight=1.0, learning_rate=1e-2)
    result = train_adapter(tiny_model_dir, samples, tmp_path / "on", on, progress=False)
    weights = load_file(tmp_path / "on" / "adapter_model.safetensors")
    assert any(w.any() for k, w in weights.items() if "lora_B" in k)
    assert result.final_loss > 0  # the KL to a teacher that read the memory; no cross-entropy term


def test_a_long_conversation_trains_fewer_epochs_within_the_budget():
    from sleep_agent.sleep.standard import within_budget

    config = LoraTrainConfig(epochs=5)
    assert within_budget(config, 200, 1600) is config  # 1000 passes: as configured
    assert within_budget(config, 800, 1600).epochs == 2.0
    assert within_budget(config, 5000, 1600).epochs == 1.0  # never below one pass
    assert within_budget(config, 5000, None) is config


def test_two_trainings_started_at_once_in_one_process_both_finish(tiny_model_dir, tmp_path):
    """Two users' sleeps may train at the same moment: the Trainer's accelerate state is
    process-wide, so the second waits for the first instead of breaking it."""
    import threading

    from safetensors.torch import load_file

    samples = [ChatSample.qa("where does zorblax quenty live ?", "he lives in vellmora .")]
    config = LoraTrainConfig(rank=4, max_steps=3, batch_size=1)
    results: dict[str, object] = {}

    def train(name: str) -> None:
        try:
            results[name] = train_adapter(tiny_model_dir, samples, tmp_path / name, config, progress=False)
        except Exception as exc:  # noqa: BLE001 -- reported by the assertion below
            results[name] = exc

    threads = [threading.Thread(target=train, args=(name,)) for name in ("ana", "ben")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert all(getattr(r, "steps", None) == 3 for r in results.values()) and len(results) == 2, results
    for name in ("ana", "ben"):
        assert any(
            w.any()
            for k, w in load_file(tmp_path / name / "adapter_model.safetensors").items()
            if "lora_B" in k
        )


def test_bfloat16_training_learns_and_keeps_float32_adapter_weights(tiny_model_dir, tmp_path):
    """Mixed precision computes in bfloat16; what vLLM loads must still be float32 weights that moved."""
    from safetensors.torch import load_file

    samples = [ChatSample.qa("where does zorblax quenty live ?", "he lives in vellmora .")] * 4
    config = LoraTrainConfig(rank=4, max_steps=4, batch_size=4, precision="bfloat16", kl_weight=0.0)
    train_adapter(tiny_model_dir, samples, tmp_path / "bf16", config, progress=False)
    weights = load_file(tmp_path / "bf16" / "adapter_model.safetensors")
    assert {str(w.dtype) for w in weights.values()} == {"torch.float32"}
    assert any(w.any() for k, w in weights.items() if "lora_B" in k)


@pytest.mark.parametrize(("precision", "expected"), [("float32", False), ("bfloat16", True)])
def test_an_explicit_precision_is_obeyed(precision, expected):
    from sleep_agent.sleep.consolidate import train_in_bfloat16

    assert train_in_bfloat16(precision) is expected
