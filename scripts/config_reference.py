"""Write the field tables of docs/configuration.md from the configuration classes themselves.

python scripts/config_reference.py          # rewrites the tables between the markers
python scripts/config_reference.py --check  # exits 1 if the page is out of date (tests run this)
"""

from __future__ import annotations

import argparse
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
BEGIN, END = "<!-- fields: begin (scripts/config_reference.py writes this part) -->", "<!-- fields: end -->"


def classes() -> list[tuple[str, type[BaseModel]]]:
    from sleep_agent.config import (
        BufferConfig,
        RecallConfig,
        RetentionConfig,
        ServingConfig,
        SleepConfig,
        SleepPolicy,
    )
    from sleep_agent.sleep.settings import CycleConfig, DreamConfig, GateConfig, LoraTrainConfig

    return [
        ("sleep_agent", SleepConfig),
        ("sleep_agent", SleepPolicy),
        ("sleep_agent", ServingConfig),
        ("sleep_agent", BufferConfig),
        ("sleep_agent", RecallConfig),
        ("sleep_agent", RetentionConfig),
        ("sleep_agent", CycleConfig),
        ("sleep_agent", LoraTrainConfig),
        ("sleep_agent", GateConfig),
        ("sleep_agent", DreamConfig),
    ]


def default_text(name: str, field: Any) -> str:
    if field.default_factory is not None:
        if name in ("model", "backend", "cache_dir"):  # read from the environment: say where from
            return {"model": "`'default'`", "backend": "`'vllm'`", "cache_dir": "user cache dir"}[name]
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):  # the fields that differ from the class's own defaults
        changed = ", ".join(f"{k}={getattr(value, k)!r}" for k in sorted(value.model_fields_set))
        if not changed:
            fresh = type(value)()
            changed = ", ".join(
                f"{k}={v!r}"
                for k, v in value.model_dump().items()
                if v != getattr(fresh, k) and not isinstance(v, dict)
            )
        return f"`{type(value).__name__}({changed})`"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    return f"`{value!r}`"


def type_text(field: Any) -> str:
    text = str(field.annotation).replace("typing.", "").replace("pathlib.", "")
    for prefix in ("sleep_agent.config.", "sleep_agent.sleep.settings.", "<class '", "'>"):
        text = text.replace(prefix, "")
    return text.replace("|", "\\|")


def tables() -> str:
    out = []
    for module, cls in classes():
        doc = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", (cls.__doc__ or "").strip().splitlines()[0]).replace(
            "``", "`"
        )
        out += [f"### `{cls.__name__}`", "", f"`from {module} import {cls.__name__}`: {doc}", ""]
        out += ["| field | type | default | what it does |", "|---|---|---|---|"]
        for name, field in cls.model_fields.items():
            description = (field.description or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"| `{name}` | `{type_text(field)}` | {default_text(name, field)} | {description} |")
        out.append("")
    return "\n".join(out)


def render(page: str) -> str:
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{tables()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    args = parser.parse_args()
    page = PAGE.read_text()
    fresh = render(page)
    if args.check:
        if fresh != page:
            print(f"{PAGE.name} is out of date: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
