"""Typed settings: one `Section` model per stage (medscribe/sections.py), read from `medscribe.toml`, env vars
and flags.

Precedence (stated once, here): flags > env (`MEDSCRIBE_SFT__LEARNING_RATE=1e-4`) > TOML file > defaults.

    from medscribe.settings import load_settings
    settings = load_settings("medscribe.toml", flags={"sft": {"learning_rate": 1e-4}})

Every section forbids unknown keys, so a typo in the TOML is an error, not a silently ignored value.
Secrets (`ask.api_key`, `data.phi.salt`) are `SecretStr` and may only come from the environment.

This module imports pydantic-settings, so the CLI imports it lazily (inside commands), keeping
`medscribe --help` fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tomllib
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from medscribe.errors import UsageError
from medscribe.sections import (  # noqa: F401  (re-exported: callers import sections from here)
    AskSection,
    ChatsSection,
    DataSection,
    DocumentsSection,
    EvalSection,
    IndexSection,
    OcrSection,
    PathsSection,
    PhiSection,
    PromptSection,
    Section,
    ServeSection,
    SftSection,
    SftStageSection,
)

ENV_PREFIX = "MEDSCRIBE_"
ENV_DELIMITER = "__"
CONFIG_ENV = "MEDSCRIBE_CONFIG"
DEFAULT_CONFIG = "medscribe.toml"
SECRET_KEYS = {("ask", "api_key"), ("data", "phi", "salt"), ("serve", "api_key")}


class Settings(BaseSettings):
    """All settings. Build it with `load_settings`, which applies the precedence rules."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    paths: PathsSection = Field(default_factory=PathsSection)
    data: DataSection = Field(default_factory=DataSection)
    prompt: PromptSection = Field(default_factory=PromptSection)
    index: IndexSection = Field(default_factory=IndexSection)
    ask: AskSection = Field(default_factory=AskSection)
    sft: SftSection = Field(default_factory=SftSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    serve: ServeSection = Field(default_factory=ServeSection)

    @field_validator("ask", mode="after")
    @classmethod
    def _api_key_fallback(cls, ask: AskSection) -> AskSection:
        # OpenAI's own variable works too, so users of an existing setup need nothing new.
        if ask.api_key is None and os.environ.get("OPENAI_API_KEY"):
            ask.api_key = SecretStr(os.environ["OPENAI_API_KEY"])
        return ask

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry flags and the TOML file, already merged by load_settings (flags win there);
        # env sits between them, so we pass the file through a context var instead of init kwargs.
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    """The TOML file's values, lowest precedence above defaults (set by load_settings)."""

    current: dict[str, Any] = {}

    def get_field_value(self, field, field_name):  # pragma: no cover - unused, __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_TomlSource.current)


def resolve_config_path(config: str | Path | None) -> Path | None:
    """The config file to read: the flag, else $MEDSCRIBE_CONFIG, else ./medscribe.toml if present.

    A file named explicitly (flag or env) that does not exist is an error, never silent defaults.
    """
    named = config or os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise UsageError(f"{path}: config file not found")
        return path
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML ({exc})") from None
    for secret in SECRET_KEYS:
        node: Any = data
        for part in secret:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            key = ".".join(secret)
            env = ENV_PREFIX + ENV_DELIMITER.join(p.upper() for p in secret)
            raise UsageError(f"{path}: {key}: secrets come only from the environment (set {env})")
    return data


def env_values() -> dict[str, Any]:
    """The settings that the environment sets, as a nested dict (used for source tracking)."""
    return EnvSettingsSource(Settings, env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER)()


def format_validation_error(exc: ValidationError, origin: str = "settings") -> str:
    """All problems at once, one `section.key: message` line each."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or origin
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (typo?)"
        lines.append(f"{loc}: {msg}")
    return "\n".join(lines)


def load_settings(config: str | Path | None = None, flags: dict[str, Any] | None = None) -> Settings:
    """Build Settings with precedence flags > env > TOML > defaults; raise UsageError listing all errors."""
    path = resolve_config_path(config)
    file_values = read_toml(path) if path else {}
    _TomlSource.current = file_values
    try:
        settings = Settings(**_drop_none(flags or {}))
    except ValidationError as exc:
        where = f"{path}" if path else "settings"
        raise UsageError(f"invalid settings ({where}):\n" + format_validation_error(exc)) from None
    finally:
        _TomlSource.current = {}
    settings._config_path = path  # type: ignore[attr-defined]
    return settings


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    """Flags left unset arrive as None: they must not override lower-precedence values."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out


def value_sources(config: str | Path | None = None, flags: dict[str, Any] | None = None) -> dict[str, str]:
    """Map each dotted setting key to where its value came from: default, file, env or flag."""
    path = resolve_config_path(config)
    layers = [
        ("file", read_toml(path) if path else {}),
        ("env", env_values()),
        ("flag", _drop_none(flags or {})),
    ]
    sources: dict[str, str] = {}
    for name, values in layers:
        for key in _flatten(values):
            sources[key] = name
    return sources


def _flatten(d: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in d.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and not _is_mapping_setting(dotted):
            keys.extend(_flatten(value, dotted + "."))
        else:
            keys.append(dotted)
    return keys


def _is_mapping_setting(dotted: str) -> bool:
    """Settings whose value is itself a dict (e.g. data.columns) are reported as one key."""
    node: Any = Settings
    for part in dotted.split("."):
        fields = getattr(node, "model_fields", None)
        if not fields or part not in fields:
            return False
        annotation = fields[part].annotation
        node = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if node is None:
            return True
    return False
