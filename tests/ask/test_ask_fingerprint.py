"""Every ask run records what produced it (fingerprint.json + summary.json); a resume made with anything else is
refused with one line naming what changed; --overwrite starts the run afresh."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from ask_helpers import REPORT_ROWS, read_results, write_jsonl
from typer.testing import CliRunner

from medscribe.ask import run_batch
from medscribe.ask.generation import Generation
from medscribe.cli import app
from medscribe.errors import UsageError


class CountingBackend:
    """A backend that answers every request with valid JSON and counts them (no model, no server)."""

    def __init__(self):
        self.asked = 0

    def describe(self):
        return {"backend": "fake", "model": "fake"}

    def generate(self, requests, on_done):
        for i, _request in enumerate(requests):
            self.asked += 1
            on_done(i, Generation(raw='{"result": "ответ"}', latency_s=0.01))


def _model_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    (root / "model.safetensors").write_bytes(b"\0" * 64)
    (root / "tokenizer.json").write_text("{}", encoding="utf-8")
    return root


def _adapter_dir(root: Path, weights: bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "adapter_config.json").write_text('{"r": 4}', encoding="utf-8")
    (root / "adapter_model.safetensors").write_bytes(weights)
    return root


def _index_manifest(index_dir: Path, corpus_sha: str) -> None:
    index_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"collection": "medscribe", "embedding_model": "minilm", "corpus": {"sha256": corpus_sha, "rows": 3},
                "built_at": corpus_sha}  # built_at is not identity: only corpus.sha256 differs between the two
    (index_dir / "index_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


@pytest.fixture
def base(tmp_path, make_settings, fake_retriever):
    """A finished local run (fake backend): model folder, adapter, k=1, an index manifest, the input file."""
    model = _model_dir(tmp_path / "model")
    adapter = _adapter_dir(tmp_path / "adapter", b"A" * 32)
    _index_manifest(tmp_path / "index", "aaa")
    path = write_jsonl(tmp_path / "in.jsonl", REPORT_ROWS)
    flags = {"backend": "local", "local_model": str(model), "adapter": str(adapter), "k": 1}
    backend = CountingBackend()
    summary = run_batch(make_settings(**flags), path, run="r", retriever=fake_retriever, backend=backend)
    assert backend.asked == 3
    return {"flags": flags, "path": path, "model": model, "adapter": adapter, "summary": summary,
            "run_dir": tmp_path / "ask" / "r"}


def test_fingerprint_is_in_summary_and_in_its_own_file(base):
    summary, run_dir = base["summary"], base["run_dir"]
    record = summary["fingerprint"]
    assert record == json.loads((run_dir / "fingerprint.json").read_text(encoding="utf-8"))
    assert len(record["digest"]) == 16 and int(record["digest"], 16) >= 0
    parts = record["parts"]
    assert parts["input"] == hashlib.sha256(base["path"].read_bytes()).hexdigest()[:16]
    assert parts["model"] == str(base["model"]) and parts["k"] == 1 and parts["mode"] == "generate"
    for name in ("model_files", "adapter", "prompt", "index"):
        assert isinstance(parts[name], str) and len(parts[name]) == 16, name


def test_same_fingerprint_resumes(base, make_settings, fake_retriever):
    backend = CountingBackend()
    summary = run_batch(make_settings(**base["flags"]), base["path"], run="r", retriever=fake_retriever,
                        backend=backend)
    assert backend.asked == 0 and summary["resumed_rows"] == 3
    assert summary["fingerprint"] == base["summary"]["fingerprint"]


def _change_adapter(base, tmp_path):
    (base["adapter"] / "adapter_model.safetensors").write_bytes(b"B" * 32)  # same size: content decides
    return {}


def _change_model_files(base, tmp_path):
    (base["model"] / "model.safetensors").write_bytes(b"\0" * 65)
    return {}


def _change_input(base, tmp_path):
    write_jsonl(base["path"], [*REPORT_ROWS[:2], {**REPORT_ROWS[2], "target": "Другое"}])
    return {}


def _change_index(base, tmp_path):
    _index_manifest(tmp_path / "index", "bbb")
    return {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_change_adapter, "another adapter (adapter: "),
        (_change_model_files, "another model (its files changed) (model_files: "),
        (_change_input, "another input file (input: "),
        (_change_index, "another index (index: "),
        (lambda base, tmp: {"k": 2}, "another k (k: 1 -> 2)"),
        (lambda base, tmp: {"local_model": str(_model_dir(tmp / "other-model"))}, "another model"),
        (lambda base, tmp: {"max_new_tokens": 17}, "(max_new_tokens: 256 -> 17)"),
    ],
    ids=["adapter", "model-files", "input", "index", "k", "model-path", "decoding"],
)
def test_changed_fingerprint_is_refused_naming_the_change(base, tmp_path, make_settings, fake_retriever, change,
                                                          message):
    flags = {**base["flags"], **change(base, tmp_path)}
    backend = CountingBackend()
    with pytest.raises(UsageError) as exc:
        run_batch(make_settings(**flags), base["path"], run="r", retriever=fake_retriever, backend=backend)
    text = str(exc.value)
    assert message in text, text
    assert "\n" not in text and text.startswith(str(base["run_dir"])) and "--overwrite" in text
    assert backend.asked == 0
    assert len(read_results(base["run_dir"])) == 3  # nothing was touched


def test_changed_prompt_is_refused(base, tmp_path, make_settings, fake_retriever):
    from medscribe.settings import load_settings

    settings = make_settings(**base["flags"])
    for prompt in ({"variant": "simple"}, {"system": "Ты рентгенолог."}, {"context": "system"}):
        changed = load_settings(None, {**settings.model_dump(mode="json", exclude={"ask": {"api_key"}}),
                                       "prompt": prompt})
        with pytest.raises(UsageError, match=r"another prompt \(prompt: "):
            run_batch(changed, base["path"], run="r", retriever=fake_retriever, backend=CountingBackend())


def test_overwrite_starts_afresh(base, make_settings, fake_retriever):
    flags = {**base["flags"], "k": 2}
    backend = CountingBackend()
    summary = run_batch(make_settings(**flags), base["path"], run="r", retriever=fake_retriever, backend=backend,
                        overwrite=True)
    assert backend.asked == 3 and summary["resumed_rows"] == 0 and summary["asked_this_run"] == 3
    assert summary["fingerprint"]["parts"]["k"] == 2
    assert all(len(r["retrieved_ids"]) == 2 for r in read_results(base["run_dir"]))
    log = (base["run_dir"] / "log.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(log) == 3  # the old run's log went with it
    again = CountingBackend()
    run_batch(make_settings(**flags), base["path"], run="r", retriever=fake_retriever, backend=again)
    assert again.asked == 0  # and the new fingerprint resumes


def test_run_without_fingerprint_is_refused_unless_overwrite(tmp_path, make_settings):
    path = write_jsonl(tmp_path / "in.jsonl", REPORT_ROWS)
    run_dir = tmp_path / "ask" / "old"
    run_dir.mkdir(parents=True)
    write_jsonl(run_dir / "results.jsonl", [{"id": "r1", "input": REPORT_ROWS[0]["input"], "prediction": "x",
                                             "error": None}])
    settings = make_settings(k=0)
    with pytest.raises(UsageError, match="has results but no fingerprint.json .*use --overwrite"):
        run_batch(settings, path, run="old", backend=CountingBackend())
    backend = CountingBackend()
    summary = run_batch(settings, path, run="old", backend=backend, overwrite=True)
    assert backend.asked == 3 and summary["resumed_rows"] == 0


def test_openai_identity_is_the_server_without_credentials(tmp_path, make_settings):
    from medscribe.ask.provenance import run_fingerprint

    settings = make_settings(k=0, base_url="https://user:s3cret@llm.example.org:8443/v1?api-key=s3cret", model="m")
    path = write_jsonl(tmp_path / "in.jsonl", REPORT_ROWS)
    parts = run_fingerprint(settings, REPORT_ROWS, path)["parts"]
    assert parts["server"] == "https://llm.example.org:8443/v1" and parts["model"] == "m"
    assert "s3cret" not in json.dumps(parts) and "index" not in parts  # k=0: the index plays no part


def test_cli_refusal_is_one_line_exit_2_and_overwrite_flag_works(tmp_path, server, monkeypatch):
    monkeypatch.setenv("MEDSCRIBE_PATHS__ASK", str(tmp_path / "ask"))
    monkeypatch.chdir(tmp_path)
    path = write_jsonl(tmp_path / "in.jsonl", REPORT_ROWS)
    runner = CliRunner()
    args = ["ask", "--input", str(path), "--no-rag", "--base-url", server.base_url, "--run", "cli"]
    first = runner.invoke(app, [*args, "--model", "a"])
    assert first.exit_code == 0, first.output
    digest = json.loads((tmp_path / "ask" / "cli" / "fingerprint.json").read_text(encoding="utf-8"))["digest"]
    assert f"fingerprint {digest}" in first.stdout
    refused = runner.invoke(app, [*args, "--model", "b"])
    assert refused.exit_code == 2
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "another model (model: a -> b)" in lines[0]
    assert len(server.requests) == 3
    fresh = runner.invoke(app, [*args, "--model", "b", "--overwrite"])
    assert fresh.exit_code == 0, fresh.output
    assert len(server.requests) == 6 and {r["model"] for r in server.requests[3:]} == {"b"}
