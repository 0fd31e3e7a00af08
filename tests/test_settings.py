"""Settings: precedence, typos, all errors at once, secrets only from env."""

from __future__ import annotations

import pytest

from medscribe.errors import UsageError
from medscribe.settings import Settings, load_settings, value_sources


def write(tmp_path, text: str):
    path = tmp_path / "m.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.sft.learning_rate == Settings().sft.learning_rate
    assert settings.sft.base_model == "Qwen/Qwen2.5-7B-Instruct"


def test_precedence_flag_over_env_over_file_over_default(tmp_path, monkeypatch):
    path = write(tmp_path, "[sft]\nlearning_rate = 0.001\nlora_r = 8\nepochs = 5\n")
    monkeypatch.setenv("MEDSCRIBE_SFT__LORA_R", "4")
    monkeypatch.setenv("MEDSCRIBE_SFT__EPOCHS", "7")
    settings = load_settings(path, flags={"sft": {"epochs": 9, "batch_size": None}})
    assert settings.sft.learning_rate == 0.001  # file over default
    assert settings.sft.lora_r == 4  # env over file
    assert settings.sft.epochs == 9  # flag over env
    assert settings.sft.batch_size == Settings().sft.batch_size  # unset flag does not override
    sources = value_sources(path, flags={"sft": {"epochs": 9}})
    assert sources["sft.learning_rate"] == "file"
    assert sources["sft.lora_r"] == "env"
    assert sources["sft.epochs"] == "flag"
    assert "sft.seed" not in sources  # default


def test_env_nested_dict_and_unicode(tmp_path):
    path = write(tmp_path, '[data]\ncolumns = {finding = "Описание", conclusion = "Заключение"}\n')
    settings = load_settings(path)
    assert settings.data.columns["finding"] == "Описание"
    assert value_sources(path)["data.columns"] == "file"


def test_typo_is_an_error_naming_the_key(tmp_path):
    path = write(tmp_path, "[sft]\nlerning_rate = 0.1\n")
    with pytest.raises(UsageError) as err:
        load_settings(path)
    assert "sft.lerning_rate" in str(err.value)


def test_all_errors_reported_at_once(tmp_path):
    path = write(tmp_path, '[sft]\nlora_r = "x"\n[ask]\nconcurrency = 0\n[index]\nk = -1\n[nonsense]\na = 1\n')
    with pytest.raises(UsageError) as err:
        load_settings(path)
    message = str(err.value)
    for key in ("sft.lora_r", "ask.concurrency", "index.k", "nonsense"):
        assert key in message


def test_missing_config_file_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")
    monkeypatch.setenv("MEDSCRIBE_CONFIG", str(tmp_path / "also-nope.toml"))
    with pytest.raises(UsageError, match="also-nope.toml"):
        load_settings()


def test_invalid_toml_is_a_usage_error(tmp_path):
    path = write(tmp_path, "[sft\nx=1")
    with pytest.raises(UsageError, match="invalid TOML"):
        load_settings(path)


def test_secrets_only_from_env(tmp_path, monkeypatch):
    path = write(tmp_path, '[ask]\napi_key = "sk-in-file"\n')
    with pytest.raises(UsageError) as err:
        load_settings(path)
    assert "MEDSCRIBE_ASK__API_KEY" in str(err.value)
    assert "sk-in-file" not in str(err.value)
    monkeypatch.setenv("MEDSCRIBE_ASK__API_KEY", "sk-from-env")
    settings = load_settings(write(tmp_path, ""))
    assert settings.ask.api_key.get_secret_value() == "sk-from-env"
    assert "sk-from-env" not in repr(settings)


def test_openai_api_key_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    settings = load_settings(write(tmp_path, ""))
    assert settings.ask.api_key.get_secret_value() == "sk-openai"
