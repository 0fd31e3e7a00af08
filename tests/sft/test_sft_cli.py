"""End-to-end `medscribe sft` (hf backend) through the real CLI on the tiny model: 16-bit and 4-bit
training, outputs, merge + two-stage training, resume, early stopping."""

from __future__ import annotations

import json

import pytest
from sft_helpers import write_config, write_data
from typer.testing import CliRunner

from medscribe.cli import app

runner = CliRunner()


def invoke(config, *args):
    result = runner.invoke(app, ["--config", str(config), "sft", *args])
    return result


def manifest(tmp_path, run="t"):
    return json.loads((tmp_path / "sft" / run / "training_config.json").read_text(encoding="utf-8"))


def test_hf_train_writes_adapter_history_config_and_merges(tiny_model_dir, tmp_path):
    write_data(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, report_to="tensorboard", max_steps=3)
    result = invoke(config, "--merge")
    assert result.exit_code == 0, result.output
    # On CPU the hf backend takes the fast path (tests/sft/test_sft_cpu_fast.py): bf16 where the CPU has it.
    from medscribe.sft.cpu_fast import native_bf16

    dtype = "bf16" if native_bf16()[0] else "fp32"
    assert "backend hf" in result.output and f"dtype {dtype}" in result.output and "quantization none" in result.output
    run = tmp_path / "sft" / "t"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (run / "adapter" / name).is_file(), name
    m = manifest(tmp_path)
    assert m["setup"]["backend"] == "hf" and m["setup"]["precision"] == dtype and m["setup"]["cpu_fast"]["enabled"]
    assert m["setup"]["quantization"] == "none"
    assert m["result"]["global_step"] == 3 and not m["result"]["stopped_early"]
    assert m["versions"]["trl"] and m["versions"]["peft"] and m["settings"]["sft"]["lora_r"] == 4
    assert m["data"]["train"]["examples"] == 8 and m["data"]["eval"]["examples"] == 4
    history = json.loads((run / "history.json").read_text())
    assert [e["step"] for e in history["train"]] == [1, 2, 3]
    assert [e["step"] for e in history["eval"]] == [1, 2, 3] and all("eval_loss" in e for e in history["eval"])
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))

    # The merged folder is a plain 16-bit HF model + tokenizer (what vLLM serves) ...
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(run / "merged")
    assert str(merged.dtype) == "torch.bfloat16" and (run / "merged" / "tokenizer.json").is_file()
    assert not (run / "merged" / "adapter_config.json").exists()
    # ... and stage 2 trains on top of it (base_model = the merged stage-1 model).
    config2 = write_config(tmp_path, run / "merged", run_name="stage2", max_steps=1)
    result = invoke(config2)
    assert result.exit_code == 0, result.output
    stage2 = json.loads((tmp_path / "sft" / "stage2" / "adapter" / "adapter_config.json").read_text())
    assert stage2["base_model_name_or_path"] == str(run / "merged")

    # `sft merge ADAPTER --out DIR` does the same from an adapter folder.
    out = tmp_path / "merged-by-command"
    result = runner.invoke(app, ["sft", "merge", str(tmp_path / "sft" / "stage2" / "adapter"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()


def test_hf_4bit_qlora(tiny_model_dir, tmp_path):
    write_data(tmp_path, n_eval=0)
    # cpu_fast = false: the CPU fast path would skip 4-bit (the model fits in RAM); this is QLoRA as a GPU user has it.
    result = invoke(write_config(tmp_path, tiny_model_dir, load_in_4bit=True, cpu_fast=False))
    assert result.exit_code == 0, result.output
    assert "quantization nf4" in result.output and "no eval rows" in result.output
    m = manifest(tmp_path)
    assert m["setup"]["quantization"] == "nf4" and m["result"]["global_step"] == 2
    # the weights really are 4-bit (bitsandbytes Linear4bit under every LoRA target), not just the setting
    assert m["model"]["linear_4bit_layers"] >= 7 * 2  # 7 projections x 2 layers of the tiny Llama
    assert (tmp_path / "sft" / "t" / "adapter" / "adapter_model.safetensors").is_file()


def test_resume_continues_from_last_checkpoint_without_duplicate_steps(tiny_model_dir, tmp_path):
    write_data(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, max_steps=2, save_total_limit=5)
    assert invoke(config).exit_code == 0
    again = invoke(config)  # starting over in the same run folder would mix two runs
    assert again.exit_code == 2 and "already has checkpoints; continue it with --resume" in again.output
    # a resume with another learning rate or LoRA rank would mix two configurations: refused, naming them
    other = invoke(config, "--resume", "--max-steps", "4", "--lr", "0.001", "--lora-r", "8")
    assert other.exit_code == 2 and "learning_rate" in other.output and "lora_r: 4 -> 8" in other.output, other.output
    result = invoke(config, "--resume", "--max-steps", "4")
    assert result.exit_code == 0, result.output
    m = manifest(tmp_path)
    assert m["resumed_from"].endswith("checkpoint-2") and m["result"]["global_step"] == 4
    assert (tmp_path / "sft" / "t" / "examples.json").is_file()  # the resumed run reuses the same prompts
    history = json.loads((tmp_path / "sft" / "t" / "history.json").read_text())
    assert [e["step"] for e in history["train"]] == [1, 2, 3, 4]
    assert m["config_fingerprint"] == json.loads((tmp_path / "sft" / "t" / "sft_config.json").read_text())["digest"]
    # a run whose settings cannot be checked (no sft_config.json: an older medscribe) is not resumed blindly
    (tmp_path / "sft" / "t" / "sft_config.json").unlink()
    blind = invoke(config, "--resume", "--max-steps", "5")
    assert blind.exit_code == 2 and "sft_config.json" in blind.output


def test_early_stopping_keeps_best_checkpoint(tiny_model_dir, tmp_path):
    write_data(tmp_path)
    # A threshold no step can beat: patience 1 stops after the second evaluation, deterministically.
    config = write_config(tmp_path, tiny_model_dir, max_steps=20, early_stopping_patience=1,
                          early_stopping_threshold=100.0)
    result = invoke(config)
    assert result.exit_code == 0, result.output
    m = manifest(tmp_path)
    assert m["result"]["stopped_early"] and m["result"]["global_step"] == 2
    assert "stopped early" in result.output
    # The saved adapter is the best checkpoint's (lowest eval loss), reloaded by load_best_model_at_end.
    history = json.loads((tmp_path / "sft" / "t" / "history.json").read_text())
    best = min(history["eval"], key=lambda e: e["eval_loss"])
    assert m["result"]["best_checkpoint"].endswith(f"checkpoint-{best['step']}")
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "sft" / "t" / "adapter" / "adapter_model.safetensors")
    kept = load_file(f"{m['result']['best_checkpoint']}/adapter_model.safetensors")
    assert saved.keys() == kept.keys() and all((saved[k] == kept[k]).all() for k in saved)


@pytest.mark.parametrize(
    ("sft", "message"),
    [
        ({"base_model": "no-such-org/no-such-model"}, "sft.base_model: 'no-such-org/no-such-model' is neither"),
        ({"target_modules": ["c_attn"]}, "sft.target_modules: c_attn not in this model; its linear layers are: "),
        ({"precision": "fp16"}, "sft.precision = 'fp16' needs a CUDA GPU"),
        ({"max_seq_length": 16}, "longer than sft.max_seq_length=16"),
        ({"lr_scheduler": "cosinus"}, "sft settings rejected by TRL/transformers: cosinus is not a valid"),
        ({"chat_template": "missing.jinja"}, "sft.chat_template: missing.jinja not found"),
    ],
)
def test_config_errors_are_one_line_exit_2(tiny_model_dir, tmp_path, sft, message):
    write_data(tmp_path)
    result = invoke(write_config(tmp_path, tiny_model_dir, **sft))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_missing_training_set_and_resume_without_checkpoint(tiny_model_dir, tmp_path):
    config = write_config(tmp_path, tiny_model_dir)
    result = invoke(config)
    assert result.exit_code == 2 and "train.jsonl: training set not found" in result.output
    write_data(tmp_path)
    result = invoke(config, "--resume")
    assert result.exit_code == 2 and "has no checkpoint to continue from" in result.output


def test_tokenizer_without_chat_template(tiny_model_dir, tmp_path):
    import shutil

    model = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, model)
    (model / "chat_template.jinja").unlink()
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    write_data(tmp_path)
    result = invoke(write_config(tmp_path, model))
    assert result.exit_code == 2 and "the tokenizer has no chat template" in result.output
    # sft.chat_template fixes it (and the adapter's tokenizer then carries the template for ask).
    template = tmp_path / "chatml.jinja"
    template.write_text((tiny_model_dir / "chat_template.jinja").read_text())
    result = invoke(write_config(tmp_path, model, chat_template=str(template), max_steps=1))
    assert result.exit_code == 0, result.output


def test_out_of_memory_is_a_runtime_failure(tiny_model_dir, tmp_path, monkeypatch):
    import torch
    from trl import SFTTrainer

    def oom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SFTTrainer, "train", oom)
    write_data(tmp_path)
    result = invoke(write_config(tmp_path, tiny_model_dir))
    assert result.exit_code == 1
    assert "out of memory while training" in result.output and "lower sft.batch_size" in result.output


def test_packing_trains(tiny_model_dir, tmp_path):
    write_data(tmp_path, n_eval=0)
    result = invoke(write_config(tmp_path, tiny_model_dir, packing=True, max_steps=1, max_seq_length=256))
    assert result.exit_code == 0, result.output
    m = manifest(tmp_path)
    assert m["settings"]["sft"]["packing"] is True and m["result"]["global_step"] == 1


def test_sft_help_imports_no_ml_library():
    import subprocess
    import sys

    code = (
        "import sys; from typer.testing import CliRunner; from medscribe.cli import app;"
        "r = CliRunner().invoke(app, ['sft', '--help']); assert r.exit_code == 0, r.output;"
        "r = CliRunner().invoke(app, ['sft', 'merge', '--help']); assert r.exit_code == 0, r.output;"
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'unsloth', 'datasets') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_several_processes_need_a_run_name(tiny_model_dir, tmp_path, monkeypatch):
    write_data(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, run_name=None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = invoke(config)
    assert result.exit_code == 2 and "name the run with --run" in result.output


def test_wandb_only_when_asked_and_then_it_needs_the_package(tiny_model_dir, tmp_path):
    from medscribe.settings import load_settings

    assert load_settings().sft.report_to == "tensorboard"  # the default never talks to W&B
    write_data(tmp_path)
    result = invoke(write_config(tmp_path, tiny_model_dir, report_to="wandb"))
    assert result.exit_code == 2, result.output
    assert "pip install wandb" in result.output and "Traceback" not in result.output


def test_gguf_export_off_gpu_says_what_to_do_instead():
    from medscribe.sft.backends import Setup
    from medscribe.sft.merge import export_gguf

    said: list[str] = []
    setup = Setup(backend="hf", reason="test", device="cpu", precision="fp32", quantization="none")
    result = export_gguf(None, None, None, setup, "q4_k_m", lambda text, **_: said.append(text))
    assert result == "skipped: needs the unsloth backend on a CUDA GPU"
    assert "convert_hf_to_gguf.py" in said[0] and "Q4_K_M" in said[0]
    assert export_gguf(None, None, None, setup, None, said.append) is None  # not asked: nothing said
