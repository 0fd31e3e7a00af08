"""The unsloth backend on CPU (tiny model), 4-bit and 16-bit, through the real CLI in a subprocess.

A subprocess, because unsloth patches transformers/trl/peft on import and must be imported before them:
running it inside the pytest process would patch every other test's libraries too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sft_helpers import write_config, write_data

pytest.importorskip("unsloth", reason="unsloth not installed (make install puts it in .venv, see docs/sft.md)")

CLI = "from medscribe.cli import app; app()"


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "UNSLOTH_DISABLE_STATISTICS": "1"}
    return subprocess.run(
        [sys.executable, "-c", CLI, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.mark.parametrize("four_bit", [True, False], ids=["4bit", "16bit"])
def test_unsloth_backend_trains_on_cpu(tiny_model_dir, tmp_path, four_bit):
    write_data(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, backend="unsloth", load_in_4bit=four_bit)
    proc = run_cli("--config", str(config), "sft", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    m = json.loads((tmp_path / "sft" / "t" / "training_config.json").read_text())
    assert m["setup"]["backend"] == "unsloth"
    assert m["setup"]["quantization"] == ("nf4" if four_bit else "none")
    assert (m["model"]["linear_4bit_layers"] > 0) == four_bit  # what was loaded, not only what was asked
    assert m["versions"]["unsloth"] and m["result"]["global_step"] == 2
    adapter = json.loads((tmp_path / "sft" / "t" / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and set(adapter["target_modules"]) >= {"q_proj", "down_proj"}
    assert "backend unsloth" in proc.stdout


def test_unsloth_refuses_several_processes(tiny_model_dir, tmp_path):
    write_data(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, backend="unsloth")
    env_patch = {"WORLD_SIZE": "2"}
    env = {**os.environ, **env_patch}
    proc = subprocess.run([sys.executable, "-c", CLI, "--config", str(config), "sft"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2
    assert "the unsloth backend supports one GPU" in proc.stderr


@pytest.mark.gpu
def test_unsloth_qlora_on_cuda_merges_and_exports_gguf(tiny_model_dir, tmp_path):
    """The production path: auto -> unsloth on CUDA, 4-bit, bf16/fp16, merged model, GGUF export."""
    write_data(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, backend="auto", load_in_4bit=True, gguf_quantization="q8_0")
    proc = run_cli("--config", str(config), "sft", "--merge", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "sft" / "t" / "training_config.json").read_text())
    assert m["setup"]["backend"] == "unsloth" and m["setup"]["device"] == "cuda"
    assert m["setup"]["precision"] in {"bf16", "fp16"} and m["setup"]["quantization"] == "nf4"
    assert (tmp_path / "sft" / "t" / "merged" / "config.json").is_file()
    assert m["gguf"] and not m["gguf"].startswith("skipped")
