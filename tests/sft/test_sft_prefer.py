"""`medscribe sft --method dpo|orpo` on the tiny model: a few steps end to end (CLI and plain function), the
answer-only completions TRL scores, the SFT model as DPO's frozen reference, history/summary fields, resume
and its refusals, and the one-line errors."""

from __future__ import annotations

import json

import pytest
from sft_helpers import tiny_settings, write_config, write_data, write_jsonl
from typer.testing import CliRunner

from medscribe.cli import app
from medscribe.errors import UsageError

runner = CliRunner()


def pair_rows(n: int = 8) -> list[dict]:
    rows = [{"id": f"p{i}", "prompt": f"Очаг {i} мм в печени", "chosen": f"Киста печени {i}",
             "rejected": f"Норма {i}", "organ": "печень", "modality": "КТ"} for i in range(n)]
    rows.append({"id": "same", "prompt": "Очаг", "chosen": "Киста", "rejected": "Киста"})  # rejected, not trained
    return rows


def manifest(tmp_path, run="t"):
    return json.loads((tmp_path / "sft" / run / "training_config.json").read_text(encoding="utf-8"))


def test_dpo_through_the_cli_writes_adapter_history_and_summary(tiny_model_dir, tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    config = write_config(tmp_path, tiny_model_dir, max_steps=3, pairs_eval_fraction=0.25)
    result = runner.invoke(app, ["--config", str(config), "sft", "--method", "dpo", "--pairs", str(pairs),
                                 "--beta", "0.2"])
    assert result.exit_code == 0, result.output
    assert "medscribe sft --method dpo" in result.output and "1 pair rows rejected" in result.output
    run = tmp_path / "sft" / "t"
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert not (run / "adapter" / "ref").exists()  # only the trained adapter is saved for ask
    m = manifest(tmp_path)
    assert m["method"] == "dpo" and m["reference"] == "base model" and m["settings"]["sft"]["beta"] == 0.2
    assert m["pairs"]["train"] == 6 and m["pairs"]["eval"] == 2 and m["pairs"]["fingerprint"]
    assert m["pairs"]["source"]["rejected"] == 1 and m["pairs"]["source"]["reject_reasons"] == {
        "chosen equals rejected": 1}
    assert m["result"]["global_step"] == 3 and m["result"]["eval_rewards_margins"] is not None
    rejects = [json.loads(line) for line in (run / "pairs_rejects.jsonl").read_text().splitlines()]
    assert rejects == [{"line": 9, "id": "same", "reason": "chosen equals rejected"}]
    history = json.loads((run / "history.json").read_text())
    assert [e["step"] for e in history["train"]] == [1, 2, 3]
    assert all("rewards/margins" in e and "rewards/accuracies" in e for e in history["train"])
    assert all("eval_loss" in e and "eval_rewards/margins" in e for e in history["eval"])


def test_dpo_scores_the_answer_only(tiny_model_dir, tmp_path):
    """The completion mask covers the answer + end-of-turn, never the prompt (nor the template's newline)."""
    from medscribe.sft.backends import choose_setup, load_model
    from medscribe.sft.pairs import pairs_from_file
    from medscribe.sft.prefer_trainer import build_prefer_trainer, encode_pairs

    pairs_file = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(2)[:2])
    settings = tiny_settings(tmp_path, tiny_model_dir, method="dpo", pairs_file=str(pairs_file), cpu_fast=False)
    pairs, _ = pairs_from_file(settings, pairs_file)
    setup = choose_setup(settings.sft)
    model, tokenizer = load_model(settings.sft, setup, str(tiny_model_dir))
    rows, stats = encode_pairs(pairs, tokenizer, 384)
    trainer = build_prefer_trainer("dpo", model, tokenizer, settings.sft, setup, tmp_path / "run", rows, [])
    batch = next(iter(trainer.get_train_dataloader()))
    ids, mask = batch["input_ids"], batch["completion_mask"]
    n = ids.shape[0] // 2  # chosen rows first, then rejected
    for i, pair in enumerate(pairs):
        for row, answer in ((i, pair.chosen), (n + i, pair.rejected)):
            scored = tokenizer.decode(ids[row][mask[row].bool()])
            assert scored == answer + "<|im_end|>"
            prompt_part = tokenizer.decode(ids[row][(batch["attention_mask"][row] * (1 - mask[row])).bool()])
            assert prompt_part.endswith("<|im_start|>assistant\n") and pair.prompt[-1]["content"] in prompt_part
    assert stats["chosen_tokens_with_loss"] == sum(len(r["chosen_ids"]) for r in rows)


def test_orpo_a_few_steps(tiny_model_dir, tmp_path):
    pytest.importorskip("trl.experimental.orpo", reason="this TRL has no trl.experimental.orpo")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    settings = tiny_settings(tmp_path, tiny_model_dir, method="orpo", pairs_file=str(pairs), max_steps=2,
                             pairs_eval_fraction=0.25, load_in_4bit=True)
    from medscribe.sft import run_sft
    from medscribe.sft.prefer_trainer import _orpo_rows

    m = run_sft(settings)
    assert m["method"] == "orpo" and m["reference"].startswith("none") and m["result"]["global_step"] == 2
    # On CPU the fast path's memory decision holds (no slow 4-bit kernels when RAM is plentiful), said in the notes.
    assert m["setup"]["quantization"] == "none" and m["setup"]["precision"] == "fp32"
    assert any("cpu fast path off for sft.method = 'orpo'" in n and "4-bit off too" in n for n in m["setup"]["notes"])
    history = json.loads((tmp_path / "sft" / "t" / "history.json").read_text())
    assert all("rewards/margins" in e and "nll_loss" in e for e in history["train"])
    assert history["eval"] and all("eval_rewards/margins" in e for e in history["eval"])
    # ORPO's labels: -100 on the prompt, the answer ids after it.
    row = _orpo_rows([{"prompt_ids": [1, 2, 3], "chosen_ids": [4, 5], "rejected_ids": [6]}])[0]
    assert row["chosen_labels"] == [-100, -100, -100, 4, 5] and row["rejected_labels"] == [-100, -100, -100, 6]


def test_orpo_absent_is_one_clear_error(tiny_model_dir, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "trl.experimental.orpo", None)  # import fails like on a TRL without it
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    settings = tiny_settings(tmp_path, tiny_model_dir, method="orpo", pairs_file=str(pairs))
    from medscribe.sft import run_sft

    with pytest.raises(UsageError, match=r"needs trl.experimental.orpo \(TRL 1.x\)"):
        run_sft(settings)


@pytest.mark.slow  # an SFT run, then a DPO run
def test_dpo_from_an_sft_adapter_uses_the_sft_model_as_reference(tiny_model_dir, tmp_path):
    import torch

    from medscribe.sft import run_sft

    write_data(tmp_path)
    run_sft(tiny_settings(tmp_path, tiny_model_dir, run_name="sft", learning_rate=0.05, max_steps=3))
    sft_adapter = tmp_path / "sft" / "sft" / "adapter"
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    settings = tiny_settings(tmp_path, tiny_model_dir, method="dpo", run_name="dpo", pairs_file=str(pairs),
                             init_adapter=str(tmp_path / "sft" / "sft"), max_steps=2, pairs_eval_fraction=0.25)
    m = run_sft(settings)
    assert m["start"] == f"sft adapter {sft_adapter}" and m["reference"].startswith("SFT model")
    history = json.loads((tmp_path / "sft" / "dpo" / "history.json").read_text())
    # Step 1 is logged before any update: the policy (the SFT adapter) equals the reference, so rewards are 0.
    # With the adapter-disabled base as reference they would not be (checked below: the adapter moves logps).
    assert history["train"][0]["rewards/chosen"] == 0.0 and history["train"][0]["rewards/rejected"] == 0.0
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), sft_adapter)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        tuned = model(ids).logits
        with model.disable_adapter():
            base = model(ids).logits
    assert (tuned - base).abs().max() > 1e-3
    # The DPO adapter trained on (it differs from the SFT one) and keeps its shape.
    from safetensors.torch import load_file

    before = load_file(sft_adapter / "adapter_model.safetensors")
    after = load_file(tmp_path / "sft" / "dpo" / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


def test_dpo_on_pairs_from_an_eval_run(tiny_model_dir, tmp_path):
    """SFT -> ask -> eval -> pairs -> DPO, with the eval run's context rebuilt by the same retriever."""
    from test_sft_prefer_eval import ROWS, Backend, Retriever, settings_for

    from medscribe.ask import run_batch
    from medscribe.evaluate import run_eval
    from medscribe.settings import load_settings
    from medscribe.sft import run_sft

    base = settings_for(tmp_path)
    run_batch(base, write_jsonl(tmp_path / "test.jsonl", ROWS), run="r", retriever=Retriever(), backend=Backend())
    run_eval(base, [tmp_path / "ask" / "r"], out=tmp_path / "eval" / "r")
    flags = {**json.loads(json.dumps({"eval": base.eval.model_dump(), "ask": {"k": 1}, "data": {"task": "report"}}))}
    sft = {"backend": "hf", "base_model": str(tiny_model_dir), "load_in_4bit": False, "max_steps": 2,
           "batch_size": 2, "grad_accum": 1, "eval_steps": 1, "logging_steps": 1, "max_seq_length": 512,
           "lora_r": 4, "lora_alpha": 8, "report_to": "none", "run_name": "e", "method": "dpo",
           "pairs_eval": str(tmp_path / "eval" / "r"), "pairs_threshold": 0.9, "pairs_eval_fraction": 0.34}
    settings = load_settings(flags={**flags, "paths": {"sft": str(tmp_path / "sft"), "index": str(tmp_path / "i")},
                                    "sft": sft})
    m = run_sft(settings, retriever=Retriever())
    assert m["pairs"]["source"]["kind"] == "eval" and m["pairs"]["source"]["right"] == 3
    assert m["pairs"]["train"] + m["pairs"]["eval"] == 3 and m["result"]["global_step"] == 2


def test_resume_continues_and_refuses_other_pairs_or_settings(tiny_model_dir, tmp_path):
    from medscribe.sft import run_sft

    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    settings = tiny_settings(tmp_path, tiny_model_dir, method="dpo", pairs_file=str(pairs), max_steps=2,
                             save_total_limit=5, pairs_eval_fraction=0)
    run_sft(settings)
    with pytest.raises(UsageError, match="already has checkpoints; continue it with --resume"):
        run_sft(settings)
    longer = tiny_settings(tmp_path, tiny_model_dir, method="dpo", pairs_file=str(pairs), max_steps=3,
                           save_total_limit=5, pairs_eval_fraction=0)
    m = run_sft(longer, resume=True)
    assert m["resumed_from"].endswith("checkpoint-2") and m["result"]["global_step"] == 3
    history = json.loads((tmp_path / "sft" / "t" / "history.json").read_text())
    assert [e["step"] for e in history["train"]] == [1, 2, 3]
    other_beta = tiny_settings(tmp_path, tiny_model_dir, method="dpo", pairs_file=str(pairs), max_steps=4,
                               pairs_eval_fraction=0, beta=0.5)
    with pytest.raises(UsageError, match=r"--resume: .* was started with other settings \(beta: 0.1 -> 0.5\)"):
        run_sft(other_beta, resume=True)
    write_jsonl(pairs, pair_rows()[1:])
    with pytest.raises(UsageError, match=r"was started with other pairs \(pairs: "):
        run_sft(longer, resume=True)
    orpo = tiny_settings(tmp_path, tiny_model_dir, method="orpo", pairs_file=str(pairs), pairs_eval_fraction=0)
    with pytest.raises(UsageError, match="another method"):
        run_sft(orpo, resume=True)


def test_config_errors_exit_2_before_loading_a_model(tiny_model_dir, tmp_path):
    config = write_config(tmp_path, tiny_model_dir)
    both = runner.invoke(app, ["--config", str(config), "sft", "--method", "dpo"])
    assert both.exit_code == 2 and "needs exactly one pair source: sft.pairs_file (--pairs)" in both.output
    bad = runner.invoke(app, ["--config", str(config), "sft", "--method", "dpo", "--pairs", "x.jsonl",
                              "--init-adapter", str(tmp_path)])
    assert bad.exit_code == 2 and "sft.init_adapter" in bad.output and "no adapter_config.json" in bad.output
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "a", "chosen": "", "rejected": "b"}])
    empty = runner.invoke(app, ["--config", str(config), "sft", "--method", "dpo", "--pairs", str(pairs)])
    assert empty.exit_code == 2 and "no usable pairs (1 of 1 rows rejected; first: line 1: empty chosen)" \
        in empty.output
    method = runner.invoke(app, ["--config", str(config), "sft", "--method", "ppo"])
    assert method.exit_code == 2 and "sft.method" in method.output
