"""The local backend on the tiny test model (tests/kit.py), with and without a PEFT adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
from ask_helpers import QA_ROWS, REPORT_ROWS, read_results, write_jsonl

from medscribe.ask import ask_one, run_batch
from medscribe.errors import UsageError


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter as sft saves it; random (not zero) B weights so it really changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(out)
    return out


def local(make_settings, tiny_model_dir, **ask):
    return make_settings(backend="local", local_model=str(tiny_model_dir), max_new_tokens=12, device="cpu", **ask)


def test_single_report_local_with_retrieval(make_settings, tiny_model_dir, fake_retriever):
    settings = local(make_settings, tiny_model_dir, k=1)
    row = ask_one(settings, "Очаг 5 мм", organ="головной мозг", retriever=fake_retriever)
    assert row["error"] is None and row["retrieved_ids"] == ["case-0"]
    assert 0 < row["completion_tokens"] <= 12 and row["prompt_tokens"] > 10
    # whatever the random tiny model wrote, the row says how it was read: valid JSON -> its result field is the
    # prediction; anything else -> recorded with the reason, raw text kept as the prediction
    if row["parse_ok"]:
        assert row["prediction"] == row["parsed"]["result"] and row["parse_error"] is None
    else:
        assert row["prediction"] == row["raw"].strip() and row["parse_error"] and row["parsed"] is None


def test_batch_qa_local_base_vs_adapter(tmp_path, make_settings, tiny_model_dir, adapter_dir):
    path = write_jsonl(tmp_path / "in.jsonl", QA_ROWS + [{"id": "q3", "input": "Что такое анемия?"}])
    base = run_batch(local(make_settings, tiny_model_dir, k=0, batch_size=2), path)
    tuned = run_batch(local(make_settings, tiny_model_dir, k=0, batch_size=2, adapter=str(adapter_dir)), path)
    assert base["run"] == f"local-{tiny_model_dir.name}-base-norag"
    assert tuned["run"] == f"local-{tiny_model_dir.name}-{adapter_dir.name}-norag"
    assert base["adapter"] is None and tuned["adapter"] == str(adapter_dir)
    assert base["answered"] == tuned["answered"] == 3 and base["tokens_per_s"] > 0
    base_rows = read_results(Path(base["run_dir"]))
    tuned_rows = read_results(Path(tuned["run_dir"]))
    assert [r["id"] for r in base_rows] == ["q1", "q2", "q3"]  # input order, although batched by length
    assert [r["raw"] for r in base_rows] != [r["raw"] for r in tuned_rows]


def test_batching_does_not_change_greedy_answers(tmp_path, make_settings, tiny_model_dir):
    path = write_jsonl(tmp_path / "in.jsonl", REPORT_ROWS)
    one = run_batch(local(make_settings, tiny_model_dir, k=0, batch_size=1), path, run="one")
    many = run_batch(local(make_settings, tiny_model_dir, k=0, batch_size=3), path, run="many")
    raw_one = [r["raw"] for r in read_results(Path(one["run_dir"]))]
    raw_many = [r["raw"] for r in read_results(Path(many["run_dir"]))]
    assert raw_one == raw_many  # left padding + attention mask: padding does not leak into answers


def test_bad_adapter_is_a_usage_error(tmp_path, make_settings, tiny_model_dir):
    settings = local(make_settings, tiny_model_dir, k=0, adapter=str(tmp_path))
    with pytest.raises(UsageError, match="adapter_config.json"):
        ask_one(settings, "x")


@pytest.mark.gpu
def test_local_backend_on_cuda(tmp_path, make_settings, tiny_model_dir, adapter_dir):
    path = write_jsonl(tmp_path / "in.jsonl", REPORT_ROWS)
    settings = make_settings(backend="local", local_model=str(tiny_model_dir), max_new_tokens=8, device="auto",
                             k=0, batch_size=2, adapter=str(adapter_dir))
    summary = run_batch(settings, path, run="gpu")
    assert summary["device"] == "cuda" and summary["answered"] == 3


def test_adapter_flags_and_single_qa_through_the_cli(tmp_path, tiny_model_dir, adapter_dir, monkeypatch):
    import json

    from typer.testing import CliRunner

    from medscribe.cli import app

    runner = CliRunner()
    monkeypatch.setenv("MEDSCRIBE_PATHS__ASK", str(tmp_path / "ask"))
    path = write_jsonl(tmp_path / "in.jsonl", QA_ROWS)
    common = ["ask", "--input", str(path), "--task", "qa", "--backend", "local", "--local-model",
              str(tiny_model_dir), "--no-rag", "--max-new-tokens", "8", "--device", "cpu"]
    tuned = runner.invoke(app, [*common, "--adapter", str(adapter_dir), "--run", "tuned"])
    assert tuned.exit_code == 0, tuned.output
    monkeypatch.setenv("MEDSCRIBE_ASK__ADAPTER", str(adapter_dir))  # configured, and switched off by the flag
    base = runner.invoke(app, [*common, "--no-adapter", "--run", "base"])
    assert base.exit_code == 0, base.output
    summaries = {run: json.loads((tmp_path / "ask" / run / "summary.json").read_text()) for run in ("tuned", "base")}
    assert summaries["tuned"]["adapter"] == str(adapter_dir) and summaries["base"]["adapter"] is None
    raws = {run: [r["raw"] for r in read_results(tmp_path / "ask" / run)] for run in ("tuned", "base")}
    assert raws["tuned"] != raws["base"]
    both = runner.invoke(app, [*common, "--adapter", str(adapter_dir), "--no-adapter"])
    assert both.exit_code == 2 and "exclude each other" in both.output

    single = runner.invoke(app, ["ask", "What is anemia?", "--task", "qa", "--specialty", "hematology",
                                 "--backend", "local", "--local-model", str(tiny_model_dir), "--no-rag",
                                 "--no-adapter", "--max-new-tokens", "8", "--device", "cpu", "--json"])
    assert single.exit_code == 0, single.output
    row = json.loads(single.stdout)
    assert row["task"] == "qa" and row["specialty"] == "hematology" and row["completion_tokens"] <= 8


def test_a_prompt_longer_than_the_model_fails_alone_with_the_reason(tmp_path, make_settings, tiny_model_dir):
    long_question = "Что такое анемия и как её лечить? " * 200  # far past the tiny model's 1,024 positions
    rows = [*QA_ROWS, {"id": "too-long", "input": long_question}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = run_batch(local(make_settings, tiny_model_dir, k=0, batch_size=8), path, run="long")
    assert summary["answered"] == len(QA_ROWS) and summary["failures"] == 1
    log = [line for line in (Path(summary["run_dir"]) / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert any("prompt too long" in line and "context of 1024 tokens" in line for line in log)


def test_an_adapter_trained_on_another_model_folder_is_flagged(tmp_path, make_settings, tiny_model_dir, adapter_dir,
                                                               caplog):
    """Stage 2 of a two-stage sft run is trained on the merged stage-1 folder: put on the original base it
    loads (same shapes) but is wrong, so the backend warns and the run info records it."""
    import json
    import logging
    import shutil

    from medscribe.ask.backend_local import LocalBackend

    merged = shutil.copytree(tiny_model_dir, tmp_path / "stage1-merged")
    moved = shutil.copytree(adapter_dir, tmp_path / "stage2-adapter")
    config = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(merged)}))
    with caplog.at_level(logging.WARNING):
        info = LocalBackend(local(make_settings, tiny_model_dir, adapter=str(moved)).ask).describe()
    assert "was trained on" in info["adapter_base_mismatch"] and str(merged) in caplog.text
    # On the folder it was trained on: nothing to say.
    right = LocalBackend(local(make_settings, merged, adapter=str(moved)).ask).describe()
    assert right["adapter_base_mismatch"] is None
