"""Unexpected failures: one scrubbed line naming the command and place, a log with the traceback, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medscribe.cli import app

PHONE = "+7 912 345-67-89"


def _write_config(tmp_path: Path, minilm: str) -> Path:
    corpus = tmp_path / "data" / "corpus.jsonl"
    corpus.parent.mkdir(parents=True)
    rows = [{"id": f"c{i}", "text": f"finding number {i}", "answer": "conclusion", "task": "report"} for i in range(5)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = tmp_path / "medscribe.toml"
    config.write_text(
        f'[paths]\ndata = "{tmp_path / "data"}"\nindex = "{tmp_path / "index"}"\n'
        f'[index]\nembedding_model = "{minilm}"\ndevice = "cpu"\n',
        encoding="utf-8",
    )
    return config


@pytest.fixture
def failing_encode(monkeypatch):
    import medscribe.index.build as build

    def boom(*_args, **_kwargs):
        raise ValueError(f"cannot encode text of patient Иванов Иван Иванович, tel. {PHONE}")

    monkeypatch.setattr(build, "_encode_block", boom)


@pytest.mark.parametrize("verbose", [False, True])
def test_unexpected_failure_is_one_scrubbed_line_and_a_log(tmp_path, minilm, failing_encode, verbose):
    config = _write_config(tmp_path, minilm)
    args = ["-c", str(config), *(["-v"] if verbose else []), "index"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    out = result.output
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert "index failed unexpectedly: ValueError" in errors[0]
    assert "while embedding texts 1-5 of 5" in errors[0]
    assert PHONE not in out and "Иванов" not in out  # the exception text quoted PHI
    assert ("Traceback" in out) == verbose  # -v prints it; otherwise only the log has it
    logs = sorted((tmp_path / "index" / "logs").glob("medscribe-index-*.log"))
    assert len(logs) == 1 and str(logs[0]) in out.replace("\n", "")
    text = logs[0].read_text(encoding="utf-8")
    assert "Traceback" in text and "in _embed_and_write" in text and "ValueError" in text
    assert PHONE not in text and "Иванов" not in text


def test_usage_errors_keep_their_message_and_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["-c", str(tmp_path / "missing.toml"), "index"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert not (tmp_path / "logs").exists()


def test_a_commands_own_exit_code_is_not_a_failure(tmp_path, monkeypatch):
    """`doctor` exits 1 on purpose when something is missing: no "failed unexpectedly", no log."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "medscribe.toml"
    config.write_text(f'[paths]\nartifacts = "{tmp_path / "art"}"\n[index]\nembedding_model = "/nonexistent"\n',
                      encoding="utf-8")
    result = CliRunner().invoke(app, ["-c", str(config), "doctor"])
    assert result.exit_code == 1, result.output
    assert "unexpectedly" not in result.output
    assert not list(tmp_path.rglob("medscribe-doctor-*.log"))
