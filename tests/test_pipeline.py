"""`medscribe pipeline` end to end on the tiny model, the packaged MiniLM and a slice of the bundled sample:
every stage runs, the comparison is printed, a rerun skips the finished steps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medscribe.cli import app

runner = CliRunner()

CONFIG = """
[paths]
artifacts = "{root}"
data = "{root}/data"
index = "{root}/index"
sft = "{root}/sft"
ask = "{root}/ask"
eval = "{root}/eval"

[data]
task = "report"
inputs = ["{csv}"]
columns = {{id = "ID", organ = "Орган", modality = "Модальность", finding = "Описание", conclusion = "Заключение"}}
value_maps = {{organ = {{"гм" = "головной мозг"}}}}
group_by = "organ"
test_per_group = 2

[index]
embedding_model = "{minilm}"
hybrid = true
k = 1

[ask]
backend = "openai"            # the pipeline must still answer locally on sft.base_model, and say so
model = "not-a-served-model"
local_model = "{model}"
max_new_tokens = 8
batch_size = 8

[sft]
backend = "hf"
base_model = "{model}"
load_in_4bit = false
rag_context = true
max_steps = 2
batch_size = 4
eval_steps = 1
max_seq_length = 512
lora_r = 4
lora_alpha = 8
report_to = "none"

[eval]
metrics = ["exact_match", "token_f1", "rouge"]
bootstrap_samples = 50
"""


def _sample_slice(sample_dir: Path, out: Path, rows: int = 40) -> Path:
    lines = (sample_dir / "report" / "radiology_ru.csv").read_text(encoding="utf-8").splitlines()
    out.write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")
    return out


def _summary(root: Path, run: str) -> dict:
    return json.loads((root / "ask" / run / "summary.json").read_text(encoding="utf-8"))


def _answers(root: Path, run: str) -> list[str]:
    return (root / "ask" / run / "results.jsonl").read_text(encoding="utf-8").splitlines()


RUNS = ("base-norag", "base-rag", "retrieval-copy", "tuned-rag")


@pytest.mark.slow
def test_pipeline_runs_every_stage_then_reruns_only_what_changed(tmp_path, sample_dir, tiny_model_dir, minilm):
    from medscribe import fingerprint as fp

    root = tmp_path / "artifacts"
    csv = _sample_slice(sample_dir, tmp_path / "reports.csv")
    config = tmp_path / "medscribe.toml"
    config.write_text(CONFIG.format(root=root, csv=csv, minilm=minilm, model=tiny_model_dir), encoding="utf-8")

    result = runner.invoke(app, ["-c", str(config), "pipeline"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "ask.backend is 'openai'; every ask step runs locally" in output
    for step in ("data", "index", "ask-base", "ask-base-rag", "ask-copy", "sft", "ask-tuned-rag", "eval"):
        assert f"{step} done" in output
    assert re.search(r"rougeL: base-norag \d\.\d{4} -> tuned-rag \d\.\d{4} \([+-]\d\.\d{4}, 95% CI", output), output
    # the headline also holds tuned-rag against copying the nearest case, and says which wins
    ci = r"\(95% CI \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]\)"
    assert re.search(rf"; vs retrieval-copy \d\.\d{{4}}: [+-]\d\.\d{{4}} {ci}: tuned-rag (beats|does not beat) copying",
                     output), output
    assert "report:" in output

    tests = [json.loads(line) for line in (root / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    for run in RUNS:
        assert len(_answers(root, run)) == len(tests) > 0
    adapter = root / "sft" / "pipeline" / "adapter"
    tuned = _summary(root, "tuned-rag")
    assert tuned["adapter"] == str(adapter) and _summary(root, "base-rag")["adapter"] is None
    assert tuned["fingerprint"]["parts"]["adapter"] == fp.adapter_hash(adapter)
    copy_rows = [json.loads(line) for line in _answers(root, "retrieval-copy")]
    assert all(r["copied"] and r["retrieved_ids"] == [r["copied_from"]] for r in copy_rows)
    metrics = json.loads(next((root / "eval").glob("*/metrics.json")).read_text(encoding="utf-8"))
    assert set(metrics["runs"]) == set(RUNS)

    adapter_file = adapter / "adapter_config.json"
    trained_at = adapter_file.stat().st_mtime_ns
    again = runner.invoke(app, ["-c", str(config), "pipeline"])
    assert again.exit_code == 0, again.output
    again_text = " ".join(again.output.split())
    assert again_text.count("skipped=True") == 2  # data and sft are not redone
    assert "has no record" not in again_text and "asking afresh" not in again_text
    assert adapter_file.stat().st_mtime_ns == trained_at
    for run in RUNS:  # resumed runs ask nothing again
        assert len(_answers(root, run)) == len(tests) and _summary(root, run)["asked_this_run"] == 0

    # --force sft retrains and asks the tuned run afresh (not resumed from the old adapter); upstream is kept.
    # --force ask-copy: a forced run is asked afresh even though its fingerprint did not change.
    copy_fingerprint = _summary(root, "retrieval-copy")["fingerprint"]
    forced = runner.invoke(app, ["-c", str(config), "pipeline", "--force", "sft", "--force", "ask-copy"])
    assert forced.exit_code == 0, forced.output
    forced_text = " ".join(forced.output.split())
    assert "sft: forced: training" in forced_text and "ask-tuned-rag: forced: asking afresh" in forced_text
    assert adapter_file.stat().st_mtime_ns != trained_at
    tuned = _summary(root, "tuned-rag")
    assert tuned["asked_this_run"] == len(tests) and tuned["resumed_rows"] == 0
    assert tuned["fingerprint"]["parts"]["adapter"] == fp.adapter_hash(adapter)
    assert len((root / "ask" / "tuned-rag" / "log.jsonl").read_text(encoding="utf-8").splitlines()) == len(tests)
    for run in ("base-norag", "base-rag"):
        assert _summary(root, run)["asked_this_run"] == 0
    copied = _summary(root, "retrieval-copy")
    assert copied["asked_this_run"] == len(tests) and copied["fingerprint"] == copy_fingerprint

    # another sft setting or other training data: the adapter is stale (checked without training again)
    from medscribe.pipeline_state import sft_fingerprint, sft_status
    from medscribe.settings import load_settings

    settings = load_settings(config)
    sft_dir, data_dir = root / "sft" / "pipeline", root / "data"
    assert sft_status(sft_dir, sft_fingerprint(settings, 1), data_dir) == (
        True, "training data and settings unchanged", True)
    settings.sft.lora_r = 2
    current, why, _ = sft_status(sft_dir, sft_fingerprint(settings, 1), data_dir)
    assert not current and why.startswith("the adapter was trained with other sft settings (sft: "), why
    settings.sft.lora_r = 4
    train = data_dir / "train.jsonl"
    train.write_text(train.read_text(encoding="utf-8") + train.read_text(encoding="utf-8").splitlines()[0] + "\n",
                     encoding="utf-8")
    current, why, _ = sft_status(sft_dir, sft_fingerprint(settings, 1), data_dir)
    assert not current and "other training data (train: " in why, why

    # the data step is redone when an input file changes (checked without rerunning everything)
    from medscribe.pipeline_state import data_status

    assert data_status(settings) == (True, "inputs and settings unchanged")
    csv.write_text(csv.read_text(encoding="utf-8") + csv.read_text(encoding="utf-8").splitlines()[1] + "x\n",
                   encoding="utf-8")
    current, why = data_status(settings)
    assert not current and why.startswith("the input files changed") and "reports.csv" not in why


def test_force_reruns_the_step_and_everything_downstream():
    from medscribe.pipeline import forced_steps
    from medscribe.settings import load_settings

    settings = load_settings(None, {"sft": {"rag_context": False}})
    assert forced_steps(settings, ("sft",)) == {"sft", "ask-tuned-rag", "eval"}
    assert forced_steps(settings, ("index",)) == {"index", "ask-base-rag", "ask-copy", "ask-tuned-rag", "eval"}
    assert forced_steps(settings, ("data",)) == {"data", "index", "ask-base", "ask-base-rag", "ask-copy", "sft",
                                                 "ask-tuned-rag", "eval"}
    settings.sft.rag_context = True  # the training prompts then hold retrieved cases: a new index, a new adapter
    assert "sft" in forced_steps(settings, ("index",))


def test_headline_says_when_tuned_does_not_beat_copying():
    from medscribe.pipeline import headline

    runs = {name: {"metrics": {"rougeL": value}} for name, value in
            (("base-norag", 0.1), ("base-rag", 0.3), ("retrieval-copy", 0.6), ("tuned-rag", 0.55))}
    report = {"primary_metric": "rougeL", "runs": runs,
              "comparison": {"tuned-rag": {"rougeL": {"delta": 0.45, "low": 0.4, "high": 0.5}}},
              "pairwise": {"retrieval-copy|tuned-rag": {"rougeL": {"delta": -0.05, "low": -0.09, "high": 0.01}}}}
    line = headline(report)
    assert line.startswith("rougeL: base-norag 0.1000 -> tuned-rag 0.5500 (+0.4500, 95% CI [+0.4000, +0.5000])")
    assert line.endswith("; vs retrieval-copy 0.6000: -0.0500 (95% CI [-0.0900, +0.0100]): tuned-rag does not beat "
                         "copying the nearest training case (the CI includes 0)")
    report["pairwise"]["retrieval-copy|tuned-rag"]["rougeL"] = {"delta": 0.05, "low": 0.01, "high": 0.09}
    assert headline(report).endswith("tuned-rag beats copying the nearest training case")
    del report["pairwise"]
    assert "does not beat copying the nearest training case (means only" in headline(report)


def test_pipeline_unknown_force_step_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["pipeline", "--force", "trian"])
    assert result.exit_code == 2
    assert "unknown step 'trian'" in result.output
