"""Shared fixtures: every home under tmp_path, a tiny Llama built here, the real default model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_WORDS = (
    "where does zorblax quenty live ? he lives in vellmora the what is capital of france paris "
    "a an and to i you it yes no hello hi my name color favorite blue red green . , ! answer question"
).split()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in its own directory, so the default home (.sleep_agent) lands in tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def build_tiny_llama(path: Path, seed: int = 0) -> Path:
    """A 2-layer, 64-wide Llama with a word-level tokenizer and a ChatML template (fast to train)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
    words = ["user", "assistant", "system", "tool", *dict.fromkeys(TINY_WORDS)]
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[2:]})
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=vocab["<|im_start|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<pad>"],
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = vocab["<|im_end|>"]
    model.generation_config.pad_token_id = vocab["<pad>"]
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The real default model, converted once into the user cache (make test prepares it first)."""
    from sleep_agent.models import prepare_model

    return prepare_model("default", progress=False)


def torch_threads() -> int:
    return int(os.environ.get("SLEEP_AGENT_TEST_THREADS", "2"))


def tiny_config(model_dir: Path, home: Path, namespace: str = "alice"):  # noqa: ANN201
    """A memory on the tiny Llama served in-process, sleeping only when told to, without dreams."""
    from sleep_agent import SleepConfig, SleepPolicy

    return SleepConfig(
        namespace=namespace,
        home=home,
        model=str(model_dir),
        serving="local",
        dreaming=False,
        policy=SleepPolicy(pending_episodes=None, pending_tokens=None, context_fraction=None),
    )


@pytest.fixture
def gate_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate accepts every candidate: the tiny model learns nothing a real gate would accept, and
    tests using this check what happens around a publish, not what the gate decides."""
    from sleep_agent.sleep import standard
    from sleep_agent.sleep.gate import GateResult, Scores

    accept = GateResult(True, "accepted by the test", Scores(0.0, None, 0), Scores(1.0, None, 0))
    monkeypatch.setattr(standard, "decide", lambda *a, **k: accept)
