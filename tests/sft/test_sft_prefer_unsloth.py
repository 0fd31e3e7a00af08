"""DPO on the unsloth backend (tiny model on CPU; the CUDA path is the gpu-marked test), from the base model and
from an SFT adapter, through the real CLI in a subprocess (unsloth patches trl/transformers/peft on import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sft_helpers import write_config, write_data, write_jsonl
from test_sft_prefer import pair_rows

pytest.importorskip("unsloth", reason="unsloth not installed (make install puts it in .venv, see docs/sft.md)")

CLI = "from medscribe.cli import app; app()"
pytestmark = pytest.mark.slow


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "UNSLOTH_DISABLE_STATISTICS": "1"}
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def _dpo_from_sft(tiny_model_dir, tmp_path, backend: str, four_bit: bool) -> dict:
    write_data(tmp_path)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    sft_config = write_config(tmp_path, tiny_model_dir, backend=backend, load_in_4bit=four_bit, run_name="sft")
    proc = run_cli("--config", str(sft_config), "sft", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    config = write_config(tmp_path, tiny_model_dir, backend=backend, load_in_4bit=four_bit, run_name="dpo",
                          pairs_eval_fraction=0.25)
    proc = run_cli("--config", str(config), "sft", "--method", "dpo", "--pairs", str(pairs), "--init-adapter",
                   str(tmp_path / "sft" / "sft"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    m = json.loads((tmp_path / "sft" / "dpo" / "training_config.json").read_text())
    assert m["setup"]["backend"] == ("unsloth" if backend != "hf" else "hf")
    assert m["reference"].startswith("SFT model") and m["result"]["global_step"] == 2
    history = json.loads((tmp_path / "sft" / "dpo" / "history.json").read_text())
    assert history["train"][0]["rewards/chosen"] == 0.0  # policy == reference (the SFT model) before any update
    assert all("eval_rewards/margins" in e for e in history["eval"])
    import torch
    from safetensors.torch import load_file

    before = load_file(tmp_path / "sft" / "sft" / "adapter" / "adapter_model.safetensors")
    after = load_file(tmp_path / "sft" / "dpo" / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    return m


def test_dpo_on_unsloth_from_an_sft_adapter(tiny_model_dir, tmp_path):
    _dpo_from_sft(tiny_model_dir, tmp_path, "unsloth", four_bit=False)


@pytest.mark.gpu
def test_dpo_on_unsloth_4bit_on_cuda(tiny_model_dir, tmp_path):
    m = _dpo_from_sft(tiny_model_dir, tmp_path, "auto", four_bit=True)
    assert m["setup"]["device"] == "cuda" and m["setup"]["quantization"] == "nf4"
    assert m["model"]["linear_4bit_layers"] > 0
