"""The buffer's embeddings: the ONNX path gives sentence-transformers' vectors, offline."""

from __future__ import annotations

import shutil

import numpy as np

from sleep_agent import embeddings
from sleep_agent.embeddings import (
    ChromaOnnxEncoder,
    OnnxEncoder,
    TorchEncoder,
    export_onnx,
    get_encoder,
    tokenizer_of,
)

TEXTS = ["Where does Zorblax Quenty live?", "ok", "My cat is called Pixel. " * 80]  # the last is truncated


def test_onnx_and_pytorch_give_the_same_unit_vectors():
    onnx = OnnxEncoder(export_onnx(), tokenizer_of(export_onnx())).encode(TEXTS)
    torch = TorchEncoder().encode(TEXTS)
    assert onnx.shape == torch.shape == (3, 384)
    assert np.abs(onnx - torch).max() < 1e-4
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)


def test_the_export_is_made_once_and_reused():
    path = export_onnx()
    stamp = path.stat().st_mtime_ns
    assert export_onnx() == path and path.stat().st_mtime_ns == stamp


def test_similar_meanings_are_closer_than_unrelated_ones():
    a, b, c = get_encoder().encode(
        ["What is my cat called?", "My cat's name is Pixel.", "The stock market fell."]
    )
    assert float(a @ b) > float(a @ c) + 0.2


def test_the_light_install_embeds_with_chromas_copy_of_the_same_network(monkeypatch, tmp_path):
    # Without the train extra there is no PyTorch to export with: Chroma's ONNX copy of
    # all-MiniLM-L6-v2 is used. Chroma would download it; here its folder is filled with our
    # export of the same network, so the vectors must agree (Chroma pads every text to 256 tokens).
    folder = tmp_path / "all-MiniLM-L6-v2" / "onnx"
    folder.mkdir(parents=True)
    shutil.copyfile(export_onnx(), folder / "model.onnx")
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
        "config.json",
    ):
        shutil.copyfile(embeddings.model_dir() / name, folder / name)
    from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2

    monkeypatch.setattr(ONNXMiniLM_L6_V2, "DOWNLOAD_PATH", folder.parent)
    monkeypatch.setattr(embeddings, "exported_onnx", lambda: tmp_path / "none.onnx")
    monkeypatch.setattr(embeddings, "_can_export", lambda: False)
    encoder = embeddings._make_encoder("cpu")
    assert isinstance(encoder, ChromaOnnxEncoder)
    assert np.abs(encoder.encode(TEXTS) - TorchEncoder().encode(TEXTS)).max() < 1e-4
