"""The buffer's embeddings: the ONNX path gives sentence-transformers' vectors, offline."""

from __future__ import annotations

import numpy as np

from sleep_agent.embeddings import OnnxEncoder, TorchEncoder, export_onnx, get_encoder, model_dir

TEXTS = ["Where does Zorblax Quenty live?", "ok", "My cat is called Pixel. " * 80]  # the last is truncated


def test_onnx_and_pytorch_give_the_same_unit_vectors():
    onnx = OnnxEncoder(export_onnx(), model_dir()).encode(TEXTS)
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
