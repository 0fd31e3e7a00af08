"""The serve CLI: --help stays light, a public bind needs a key, --dry-run prints the vllm command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from medscribe.cli import app

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["torch", "transformers", "chromadb", "fastapi", "uvicorn", "starlette"]


def test_help_imports_nothing_heavy():
    probe = (
        "import sys\nfrom typer.testing import CliRunner\nfrom medscribe.cli import app\n"
        "for args in (['serve', '--help'], ['chat', '--help']):\n"
        "    r = CliRunner().invoke(app, args)\n    assert r.exit_code == 0, r.output\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_public_bind_without_key_exit_2():
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "MEDSCRIBE_SERVE__API_KEY" in result.output


def test_dry_run_prints_the_vllm_command(serve_root, tmp_path, tiny_adapter):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[ask]\nlocal_model = "{serve_root["flags"]["ask"]["local_model"]}"\nadapter = "{tiny_adapter}"\n',
                   encoding="utf-8")
    result = CliRunner().invoke(app, ["-c", str(cfg), "serve", "--engine", "vllm", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("vllm serve ") and "--enable-lora --lora-modules medscribe-tuned=" in result.output
