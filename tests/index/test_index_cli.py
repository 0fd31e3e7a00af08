"""`medscribe index` end to end through the real CLI (CliRunner): build, rerun, query table, errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medscribe.cli import app
from medscribe.commands.index import parse_filters

runner = CliRunner()


def write_config(tmp_path, minilm, extra: str = "") -> str:
    path = tmp_path / "medscribe.toml"
    path.write_text(
        f'[paths]\ndata = "{tmp_path / "data"}"\nindex = "{tmp_path / "index"}"\n'
        f'[index]\nembedding_model = "{minilm}"\nbatch_size = 16\ndevice = "cpu"\n{extra}',
        encoding="utf-8",
    )
    return str(path)


def test_build_rerun_and_query(tmp_path, minilm, corpus):
    config = write_config(tmp_path, minilm)
    result = runner.invoke(app, ["--config", config, "index"])
    assert result.exit_code == 0, result.output
    assert "added" in result.output and "entries" in result.output
    manifest = json.loads((tmp_path / "index" / "index_manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["added"] == 7

    result = runner.invoke(app, ["--config", config, "index"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "index" / "index_manifest.json").read_text())["counts"]["unchanged"] == 7

    result = runner.invoke(
        app, ["--config", config, "index", "--query", "What causes asthma attacks?", "--k", "2", "--filter", "task=qa"]
    )
    assert result.exit_code == 0, result.output
    assert "q-asthma" in result.output and "Allergens" in result.output
    assert "r-liver" not in result.output  # filtered out (task=report)


def test_knowledge_flag_and_prune(tmp_path, minilm, corpus):
    config = write_config(tmp_path, minilm)
    kb = tmp_path / "kb.md"
    kb.write_text("# Hepatic cysts\n\nSimple liver cysts need no follow-up.", encoding="utf-8")
    result = runner.invoke(app, ["--config", config, "index", "--knowledge", str(kb), "--corpus", str(corpus)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "index" / "index_manifest.json").read_text())["counts"]["entries"] == 8
    result = runner.invoke(
        app, ["--config", config, "index", "--query", "liver cyst follow-up", "--k", "1", "--filter", "kind=knowledge"]
    )
    assert result.exit_code == 0 and "kb-" in result.output


def test_errors_are_one_line_with_exit_codes(tmp_path, minilm):
    config = write_config(tmp_path, minilm)
    result = runner.invoke(app, ["--config", config, "index"])  # no corpus yet
    assert result.exit_code == 2
    assert "corpus not found" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["--config", config, "index", "--query", "x"])  # no index yet
    assert result.exit_code == 2 and "run `medscribe index` first" in result.output
    result = runner.invoke(app, ["--config", config, "index", "--query", "x", "--filter", "novalue"])
    assert result.exit_code == 2 and "--filter: expected key=value" in result.output
    bad = write_config(tmp_path, minilm, extra="threshold = 3\n")
    result = runner.invoke(app, ["--config", bad, "index"])
    assert result.exit_code == 2 and "index.threshold" in result.output


def test_parse_filters_types_and_repeats():
    assert parse_filters(None) is None
    assert parse_filters(["organ=печень", "chunk=3", "has_finding=true", "modality=CT", "modality=MRI"]) == {
        "organ": "печень",
        "chunk": 3,
        "has_finding": True,
        "modality": ["CT", "MRI"],
    }
