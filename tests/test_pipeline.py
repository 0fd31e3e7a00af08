"""`medscribe pipeline` end to end on the tiny model, the packaged MiniLM and a slice of the bundled sample:
every stage runs, the comparison is printed, a rerun skips the finished steps."""

from __future__ import annotations

import json
import re
from pathlib import Path

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


def test_pipeline_runs_every_stage_then_skips_them(tmp_path, sample_dir, tiny_model_dir, minilm):
    root = tmp_path / "artifacts"
    csv = _sample_slice(sample_dir, tmp_path / "reports.csv")
    config = tmp_path / "medscribe.toml"
    config.write_text(CONFIG.format(root=root, csv=csv, minilm=minilm, model=tiny_model_dir), encoding="utf-8")

    result = runner.invoke(app, ["-c", str(config), "pipeline"])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "ask.backend is 'openai'; every ask step runs locally" in output
    for step in ("data", "index", "ask-base", "ask-base-rag", "sft", "ask-tuned-rag", "eval"):
        assert f"{step} done" in output
    assert re.search(r"rougeL: base-norag \d\.\d{4} -> tuned-rag \d\.\d{4} \([+-]\d\.\d{4}, 95% CI", output), output
    assert "report:" in output

    tests = [json.loads(line) for line in (root / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    for run in ("base-norag", "base-rag", "tuned-rag"):
        rows = (root / "ask" / run / "results.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(rows) == len(tests) > 0
    tuned = json.loads((root / "ask" / "tuned-rag" / "summary.json").read_text(encoding="utf-8"))
    assert "adapter" in json.dumps(tuned)
    assert (root / "sft" / "pipeline" / "adapter" / "adapter_config.json").is_file()
    metrics = json.loads(next((root / "eval").glob("*/metrics.json")).read_text(encoding="utf-8"))
    assert set(metrics["runs"]) == {"base-norag", "base-rag", "tuned-rag"}

    adapter_file = root / "sft" / "pipeline" / "adapter" / "adapter_config.json"
    trained_at = adapter_file.stat().st_mtime_ns
    again = runner.invoke(app, ["-c", str(config), "pipeline"])
    assert again.exit_code == 0, again.output
    assert " ".join(again.output.split()).count("skipped=True") == 2  # data and sft are not redone
    assert adapter_file.stat().st_mtime_ns == trained_at
    for run in ("base-norag", "base-rag", "tuned-rag"):  # resumed runs ask nothing again
        rows = (root / "ask" / run / "results.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(rows) == len(tests)


def test_pipeline_unknown_force_step_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["pipeline", "--force", "trian"])
    assert result.exit_code == 2
    assert "unknown step 'trian'" in result.output
