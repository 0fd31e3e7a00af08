"""Render resolved settings as TOML (for `medscribe config show`) and find the commented template.

    from medscribe.configfile import render_settings_toml
    print(render_settings_toml(settings, sources))
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

MASK = "********"


def template_text() -> str:
    """The commented medscribe.toml shipped with the package (also the root medscribe.toml)."""
    return resources.files("medscribe").joinpath("resources/medscribe.toml").read_text(encoding="utf-8")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key, ensure_ascii=False)


def render_settings_toml(settings: BaseModel, sources: dict[str, str]) -> str:
    """Every setting, grouped by section, each line commented with where its value came from."""
    lines: list[str] = []
    _render_model(settings, "", sources, lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _render_model(model: BaseModel, prefix: str, sources: dict[str, str], lines: list[str]) -> None:
    nested: list[tuple[str, BaseModel]] = []
    scalars: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        dotted = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            nested.append((dotted, value))
            continue
        source = sources.get(dotted, "default")
        if isinstance(value, SecretStr):
            scalars.append(f"# {name} = {json.dumps(MASK)}  # {source} (secret: env only)")
        elif value is None:
            scalars.append(f"# {name} is unset  # {source}")
        else:
            scalars.append(f"{name} = {toml_value(value)}  # {source}")
    if prefix and scalars:
        lines.append("")
        lines.append(f"[{prefix.rstrip('.')}]")
    lines.extend(scalars)
    for dotted, sub in nested:
        _render_model(sub, dotted + ".", sources, lines)
