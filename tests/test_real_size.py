"""The product at the size of a hospital's first real export (issue 14): 3,300 chest X-ray reports through
data -> index (writer process, hybrid) -> sft (RAG prompts for every training row, a few steps) -> ask (local,
killed mid-run, resumed) -> eval, each through the real command. The bundled sample (116 training rows)
never crossed Chroma's limits; this size did (`too many SQL variables` from one query of 2,473 rows).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic_reports import COLUMNS, write_export
from typer.testing import CliRunner

from medscribe.cli import app

pytestmark = pytest.mark.slow
ROWS = 3300

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
columns = {columns}
group_by = "modality"
test_per_group = 100

[index]
embedding_model = "{minilm}"
device = "cpu"
hybrid = true
writer = "process"
k = 1

[ask]
backend = "local"
local_model = "{model}"
max_new_tokens = 8
batch_size = 16
device = "cpu"

[sft]
backend = "hf"
base_model = "{model}"
load_in_4bit = false
rag_context = true
max_steps = 2
batch_size = 4
grad_accum = 1
eval_steps = 2
max_eval_samples = 16
max_seq_length = 512
lora_r = 4
lora_alpha = 8
report_to = "none"

[eval]
metrics = ["exact_match", "token_f1", "rouge"]
bootstrap_samples = 200
"""


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir, minilm):
    root = tmp_path_factory.mktemp("real-size")
    csv = write_export(root / "export" / "cxr.csv", rows=ROWS, seed=7)
    columns = "{" + ", ".join(f'{k} = "{v}"' for k, v in COLUMNS.items()) + "}"
    config = root / "medscribe.toml"
    config.write_text(
        CONFIG.format(root=root / "artifacts", csv=csv, columns=columns, minilm=minilm, model=tiny_model_dir),
        encoding="utf-8",
    )
    return root / "artifacts", config


def _cli(config: Path, *args: str):
    result = CliRunner().invoke(app, ["-c", str(config), *args])
    assert "Traceback" not in result.output, result.output
    return result


def test_every_stage_at_real_size(workspace, monkeypatch):
    root, config = workspace

    data = _cli(config, "data")
    assert data.exit_code == 0, data.output
    manifest = json.loads((root / "data" / "manifest.json").read_text(encoding="utf-8"))
    train = _read_jsonl(root / "data" / "train.jsonl")
    test = _read_jsonl(root / "data" / "test.jsonl")
    assert len(train) > 2400 and len(test) >= 150
    rejects = _read_jsonl(root / "data" / "rejects.jsonl")
    assert rejects and all(r.get("reason") for r in rejects)  # the broken rows, with why
    assert manifest["counts"]["rows_in"] == ROWS

    # index: killed once its first block (2,048 texts) is encoded and handed to the writer process, then rerun
    # through the command: the rerun embeds only what is missing, and no entry is there twice.
    from medscribe.index import build_index
    from medscribe.index.build import WRITE_BLOCK
    from medscribe.index.embed import Embedder
    from medscribe.settings import load_settings

    settings = load_settings(config)
    embedder = Embedder.from_settings(settings.index)
    real_encode, seen = embedder.encode, {"texts": 0}

    def dies_after_the_first_block(texts, *args, **kwargs):
        if seen["texts"] >= WRITE_BLOCK:
            raise KeyboardInterrupt
        seen["texts"] += len(texts)
        return real_encode(texts, *args, **kwargs)

    embedder.encode = dies_after_the_first_block
    with pytest.raises(KeyboardInterrupt):
        build_index(settings, embedder=embedder, show_progress=False)
    corpus_rows = len(_read_jsonl(root / "data" / "corpus.jsonl"))
    index = _cli(config, "index")
    assert index.exit_code == 0, index.output
    index_manifest = json.loads((root / "index" / "index_manifest.json").read_text(encoding="utf-8"))
    assert index_manifest["writer"] == "process"
    counts = index_manifest["counts"]
    assert counts["entries"] == corpus_rows  # every row once: nothing lost, nothing twice
    assert counts["unchanged"] >= WRITE_BLOCK and counts["added"] == corpus_rows - counts["unchanged"]

    # sft retrieves a hybrid context for every training row (the call that crashed) before its first step.
    sft = _cli(config, "sft", "--run", "big")
    assert sft.exit_code == 0, sft.output
    sft_manifest = json.loads((root / "sft" / "big" / "training_config.json").read_text(encoding="utf-8"))
    trained = sft_manifest["data"]["train"]
    assert trained["rows"] == len(train) and trained["rag_context"] is True
    assert trained["mean_context_hits"] > 0.9  # every row asked the index, and almost all got a case
    adapter = root / "sft" / "big" / "adapter"
    assert (adapter / "adapter_config.json").is_file()

    # ask: killed after two generation batches, then resumed: every test row once, none twice.
    from medscribe.ask import backend_local

    real = backend_local.LocalBackend._generate_batch
    calls = {"n": 0}

    def dies_on_third_batch(self, texts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, texts)

    monkeypatch.setattr(backend_local.LocalBackend, "_generate_batch", dies_on_third_batch)
    args = ("ask", "--input", str(root / "data" / "test.jsonl"), "--run", "tuned-rag", "--adapter", str(adapter))
    killed = _cli(config, *args)
    assert killed.exit_code == 130, killed.output
    partial = _read_jsonl(root / "ask" / "tuned-rag" / "results.jsonl")
    assert 0 < len(partial) < len(test)
    monkeypatch.setattr(backend_local.LocalBackend, "_generate_batch", real)
    resumed = _cli(config, *args)
    assert resumed.exit_code == 0, resumed.output
    results = _read_jsonl(root / "ask" / "tuned-rag" / "results.jsonl")
    ids = [r["id"] for r in results]
    assert len(ids) == len(set(ids)) == len(test)
    assert {r["id"] for r in test} == set(ids)
    assert all(r.get("retrieved_ids") or r.get("context_ids") for r in results)

    evaluation = _cli(config, "eval", str(root / "ask" / "tuned-rag"))
    assert evaluation.exit_code == 0, evaluation.output
    metrics = json.loads(next((root / "eval").glob("*/metrics.json")).read_text(encoding="utf-8"))
    run = metrics["runs"]["tuned-rag"]
    assert run["rows"] == len(test)
    assert 0.0 <= run["metrics"]["rougeL"] <= 1.0
