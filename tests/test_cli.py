"""The CLI shell: help of every command, light start-up, config show/init, doctor, exit codes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from typer.testing import CliRunner

from medscribe.cli import app

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "transformers", "chromadb", "sentence_transformers", "datasets", "unsloth", "trl", "peft",
         "bert_score"]
runner = CliRunner()


def command_paths() -> list[list[str]]:
    import typer.main

    group = typer.main.get_command(app)
    paths = [[]]
    for name, cmd in group.commands.items():
        paths.append([name])
        for sub in getattr(cmd, "commands", {}):
            paths.append([name, sub])
    return paths


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "root")
def test_every_command_has_help(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_help_imports_no_heavy_module():
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from medscribe.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0\n"
        "for name in ['config','doctor','data','index','ask','sft','eval']:\n"
        "    CliRunner().invoke(app, [name, '--help'])\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_completion_is_light():
    env = {"_MEDSCRIBE_COMPLETE": "complete_bash", "COMP_WORDS": "medscribe da", "COMP_CWORD": "1"}
    probe = (
        "import os, sys\n"
        f"os.environ.update({env!r})\n"
        "from medscribe.cli import app\n"
        "try:\n    app(prog_name='medscribe')\nexcept SystemExit:\n    pass\n"
        f"sys.stderr.write(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert out.stderr.strip() == ""


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert "medscribe" in result.output


def test_config_show_sources_and_masked_secret(tmp_path, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[sft]\nlora_r = 8\n", encoding="utf-8")
    monkeypatch.setenv("MEDSCRIBE_ASK__API_KEY", "sk-very-secret-123")
    monkeypatch.setenv("MEDSCRIBE_SFT__EPOCHS", "3")
    result = runner.invoke(app, ["--config", str(cfg), "config", "show"])
    assert result.exit_code == 0, result.output
    assert "sk-very-secret-123" not in result.output
    assert "********" in result.output
    assert "lora_r = 8  # file" in result.output
    assert "epochs = 3.0  # env" in result.output
    assert "seed = 42  # default" in result.output


def test_config_show_output_is_valid_toml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["config", "show"], terminal_width=400)
    assert result.exit_code == 0, result.output
    body = "\n".join(line for line in result.output.splitlines() if not line.startswith("# resolved"))
    parsed = tomllib.loads(body)
    assert parsed["sft"]["lora_r"] == 16


def test_config_typo_exit_2_one_line_per_error(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[sft]\nlerning_rate = 1\nlora_r = "x"\n', encoding="utf-8")
    result = runner.invoke(app, ["--config", str(cfg), "config", "show"])
    assert result.exit_code == 2
    assert "sft.lerning_rate" in result.output and "sft.lora_r" in result.output
    assert "Traceback" not in result.output


def test_missing_config_exit_2(tmp_path):
    result = runner.invoke(app, ["--config", str(tmp_path / "missing.toml"), "config", "show"])
    assert result.exit_code == 2
    assert "config file not found" in result.output


def test_config_init_writes_template_that_loads(tmp_path):
    target = tmp_path / "medscribe.toml"
    result = runner.invoke(app, ["config", "init", str(target)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["config", "init", str(target)])
    assert again.exit_code == 2
    from medscribe.settings import Settings, load_settings

    assert load_settings(target).model_dump() == Settings().model_dump()


def test_root_config_is_the_shipped_template():
    shipped = (ROOT / "medscribe" / "resources" / "medscribe.toml").read_text(encoding="utf-8")
    assert (ROOT / "medscribe.toml").read_text(encoding="utf-8") == shipped


def test_template_mentions_every_setting():
    """The commented medscribe.toml documents every setting of every section (set or commented out)."""
    from pydantic import BaseModel

    from medscribe.settings import Settings

    text = (ROOT / "medscribe.toml").read_text(encoding="utf-8")
    sections = {}
    current = None
    for line in text.splitlines():
        stripped = line.lstrip("# ").strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped.strip("[]")
            sections.setdefault(current, set())
        elif current and ("=" in stripped or ":" in stripped):
            # `key = value`, or `key: env VAR only` for secrets
            sections[current].add(re.split(r"[=:]", stripped)[0].strip())

    def walk(model_cls, prefix):
        for name, field in model_cls.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                yield from walk(ann, f"{prefix}{name}.")
            else:
                yield prefix.rstrip("."), name

    missing = [f"{s}.{k}" for s, k in walk(Settings, "") if k not in sections.get(s, set())]
    assert not missing, f"medscribe.toml lacks: {missing}"


@pytest.mark.parametrize("name", ["demo.toml", "cpu.toml", "cpu-qa.toml"])
def test_example_configs_load(name):
    from medscribe.settings import load_settings

    settings = load_settings(ROOT / "examples" / name)
    assert settings.paths.artifacts
    if name.startswith("cpu"):  # the one-hour CPU recipe: one pass, fast path, no 4-bit
        assert (settings.sft.epochs, settings.sft.cpu_fast, settings.sft.load_in_4bit) == (1, "auto", False)


def test_doctor_runs_and_reports(tmp_path, monkeypatch, minilm, tiny_model_dir):
    cfg = tmp_path / "d.toml"
    cfg.write_text(
        f'[paths]\nartifacts = "{tmp_path}/a"\nindex = "{tmp_path}/a/index"\n'
        f'[sft]\nbase_model = "{tiny_model_dir}"\n[index]\nembedding_model = "{minilm}"\n'
        f'[eval]\nbertscore_model = "{minilm}"\n',
        encoding="utf-8",
    )
    result = runner.invoke(app, ["--config", str(cfg), "doctor"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "ready" in result.output
    from medscribe.sft.allocator import find_library, kind_of

    library = find_library("auto")  # no GPU here: the CPU training allocator is reported
    assert "allocator" in result.output
    assert f"{kind_of(library)}: sft on CPU runs under it" in result.output if library else \
        "libtcmalloc-minimal4" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[sft]\nbase_model = "/nonexistent/model"\n', encoding="utf-8")
    result = runner.invoke(app, ["--config", str(bad), "doctor"], terminal_width=200)
    assert result.exit_code == 1
    assert "sft.base_model" in result.output


def test_no_third_party_progress_bars_or_deprecation_noise(tmp_path, tiny_model_dir):
    """A local answer loads a model (transformers draws a 'Loading weights' bar by default): the user sees none."""
    import os

    config = tmp_path / "medscribe.toml"
    config.write_text(f'[ask]\nbackend = "local"\nlocal_model = "{tiny_model_dir}"\nmax_new_tokens = 4\n'
                      'device = "cpu"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    command = [str(Path(sys.executable).with_name("medscribe")), "-c", str(config), "ask", "--no-rag", "Очаг 5 мм"]
    out = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Loading weights" not in out.stderr and "it/s]" not in out.stderr
    assert "FutureWarning" not in out.stderr
