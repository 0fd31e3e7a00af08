"""`medscribe ask` end to end through the real command (CliRunner and a real subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ask_helpers import QA_ROWS, REPORT_ROWS, read_results, write_jsonl
from fake_server import FakeServer
from typer.testing import CliRunner

from medscribe.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
SECRET = "sk-test-SECRETKEY-9f8e7d6c5b4a"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Artifacts under tmp_path and short retries, through the environment like a user would."""
    values = {
        "MEDSCRIBE_PATHS__ASK": str(tmp_path / "ask"),
        "MEDSCRIBE_PATHS__INDEX": str(tmp_path / "index"),
        "MEDSCRIBE_ASK__RETRY_BACKOFF": "0.01",
        "MEDSCRIBE_ASK__MAX_BACKOFF": "0.05",
        "MEDSCRIBE_ASK__TIMEOUT": "2",
        "MEDSCRIBE_ASK__MAX_RETRIES": "1",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return values


@pytest.fixture
def fake_index(monkeypatch, fake_retriever):
    """Retriever.open returns the fake retriever (the real index has its own e2e test below)."""
    from medscribe.index.retriever import Retriever

    opened = []
    monkeypatch.setattr(Retriever, "open", classmethod(lambda cls, s: opened.append(s) or fake_retriever))
    return opened


def invoke(*args: str, verbose: bool = False):
    return runner.invoke(app, [*(["-v"] if verbose else []), "ask", *args])


def test_single_report_prints_answer_and_cited_cases(env, server, fake_index):
    result = invoke("Очаг 5 мм в белом веществе", "--organ", "головной мозг", "--modality", "МРТ",
                    "--base-url", server.base_url, "--k", "2")
    assert result.exit_code == 0, result.output
    assert "conclusion:" in result.output and "case-0" in result.output and "0.900" in result.output
    assert fake_index  # the index was opened


def test_single_qa_json_output_without_rag(env, server, fake_index):
    result = invoke("What is anemia?", "--task", "qa", "--specialty", "hematology", "--no-rag",
                    "--base-url", server.base_url, "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["task"] == "qa" and row["parse_ok"] and row["retrieved_ids"] == []
    assert not fake_index  # --no-rag: the index is never opened


def test_batch_on_data_stage_test_jsonl(env, tmp_path, server, fake_index):
    rows = [{**r, "task": "report", "split": "test", "source": "radiology_ru.csv"} for r in REPORT_ROWS]
    path = write_jsonl(tmp_path / "test.jsonl", rows)
    result = invoke("--input", str(path), "--base-url", server.base_url, "--k", "1", "--run", "rag")
    assert result.exit_code == 0, result.output
    assert "3 answered / 3" in result.stdout
    run_dir = tmp_path / "ask" / "rag"
    results = read_results(run_dir)
    assert [r["id"] for r in results] == ["r1", "r2", "r3"]
    assert results[0]["reference"] == "Очаговые изменения" and results[0]["organ"] == "головной мозг"
    assert results[0]["retrieved_ids"] == ["case-0"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["k"] == 1 and summary["json_valid_rate"] == 1.0 and summary["backend"] == "openai"
    assert len((run_dir / "log.jsonl").read_text().splitlines()) == 3


def test_batch_csv_with_column_flags(env, tmp_path, server):
    path = tmp_path / "radiology.csv"
    path.write_bytes("ID;Орган;Описание;Заключение\n7;печень;Киста 12 мм;Киста\n".encode("cp1251"))
    result = invoke("--input", str(path), "--no-rag", "--base-url", server.base_url, "--run", "csv",
                    "--column", "id=ID", "--column", "input=Описание", "--column", "target=Заключение",
                    "--column", "organ=Орган")
    assert result.exit_code == 0, result.output
    row = read_results(tmp_path / "ask" / "csv")[0]
    assert row["id"] == "7" and row["organ"] == "печень" and row["reference"] == "Киста"


@pytest.mark.parametrize(
    ("args", "rows", "message"),
    [
        (["--input", "IN"], [{"id": "a", "question": "x"}], "missing input column 'input'"),
        (["--input", "IN"], [{"id": "a", "input": ""}], "field 'input' (input) is empty"),
        (["--input", "IN"], [{"id": "a", "input": "x"}, {"id": "a", "input": "y"}], "duplicate id"),
        (["--input", "IN", "--backend", "ollama"], [{"id": "a", "input": "x"}], "ask.backend"),
        (["--input", "IN", "--json-mode", "strict"], [{"id": "a", "input": "x"}], "ask.json_mode"),
        (["some text", "--input", "IN"], [{"id": "a", "input": "x"}], "either TEXT or --input"),
        (["--input", "IN", "--column", "input"], [{"id": "a", "input": "x"}], "expected FIELD=COLUMN"),
        (["   "], [], "empty"),
        (["--input", "IN"], [], "no rows"),
    ],
)
def test_bad_input_exits_2_with_one_line(env, tmp_path, args, rows, message):
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    result = invoke(*[str(path) if a == "IN" else a for a in args], "--no-rag")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_every_row_failing_exits_1_with_one_line(env, tmp_path):
    with FakeServer() as server:
        url = server.base_url
    path = write_jsonl(tmp_path / "in.jsonl", QA_ROWS)
    result = invoke("--input", str(path), "--no-rag", "--base-url", url, "--task", "qa")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "every row failed (2 of 2)" in lines[0]
    assert "Traceback" not in result.output


def test_api_key_never_written_or_printed(env, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSCRIBE_ASK__API_KEY", SECRET)
    path = write_jsonl(tmp_path / "in.jsonl", REPORT_ROWS)
    outputs = []
    # a server that echoes the Authorization header in its 401 body, then a working one
    with FakeServer(status_all=401) as server:
        result = invoke("--input", str(path), "--no-rag", "--base-url", server.base_url, "--run", "denied",
                        verbose=True)
        assert result.exit_code == 1 and "invalid credentials" in result.stderr
        assert server.requests  # the key was sent to the server
        outputs.append(result.output)
        single = invoke("x", "--no-rag", "--base-url", server.base_url, verbose=True)
        assert single.exit_code == 1
        outputs.append(single.output)
    with FakeServer() as server:
        result = invoke("--input", str(path), "--no-rag", "--base-url", server.base_url, "--run", "ok", verbose=True)
        assert result.exit_code == 0
        outputs.append(result.output)
    files = [p for p in (tmp_path / "ask").rglob("*") if p.is_file()]
    assert len(files) >= 6
    texts = outputs + [p.read_text(encoding="utf-8") for p in files]
    for text in texts:
        assert SECRET not in text and SECRET[-8:] not in text


def test_kill_9_mid_batch_then_resume(tmp_path):
    """A real `medscribe ask` process killed with SIGKILL mid-batch; the rerun completes without duplicates."""
    rows = [{"id": f"id-{i:02d}", "input": f"вопрос {i}"} for i in range(24)]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    run_dir = tmp_path / "ask" / "kill"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSCRIBE_")}
    env.update(MEDSCRIBE_PATHS__ASK=str(tmp_path / "ask"), PYTHONPATH=str(ROOT))
    with FakeServer(latency=0.15) as server:
        cmd = [sys.executable, "-c", "from medscribe.cli import app; app()", "ask", "--input", str(path),
               "--no-rag", "--base-url", server.base_url, "--concurrency", "2", "--run", "kill", "--task", "qa"]
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results = run_dir / "results.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if results.is_file() and len(results.read_text(encoding="utf-8").splitlines()) >= 5:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_before = [json.loads(x)["id"] for x in results.read_text(encoding="utf-8").splitlines() if x.strip()]
        assert 5 <= len(done_before) < len(rows), "kill came too late to test resume"
        killed_fingerprint = json.loads((run_dir / "fingerprint.json").read_text(encoding="utf-8"))
        # simulate the worst case too: a torn half line at the end of the file
        with open(results, "a", encoding="utf-8") as fh:
            fh.write('{"id": "id-23", "inp')
        time.sleep(0.5)  # requests the killed process had in flight still reach the server's log
        asked_before = len(server.requests)
        rerun = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        asked_again = len(server.requests) - asked_before
    final = read_results(run_dir)
    assert [r["id"] for r in final] == [r["id"] for r in rows]  # every row once, in input order
    assert all(r["error"] is None and r["parse_ok"] for r in final)
    # only the rows not finished before the kill were asked again (at most those in flight were repeated)
    assert asked_again == len(rows) - len(set(done_before))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed_rows"] == len(set(done_before)) and summary["torn_lines_dropped"] == 1
    assert summary["fingerprint"] == killed_fingerprint  # written at the start: the killed run had it already


def test_batch_with_real_index(env, tmp_path, server, minilm, monkeypatch):
    """The real Retriever over a tiny index built from a corpus.jsonl; own id excluded from the hits."""
    from medscribe.index import build_index
    from medscribe.settings import load_settings

    monkeypatch.setenv("MEDSCRIBE_INDEX__EMBEDDING_MODEL", minilm)
    monkeypatch.setenv("MEDSCRIBE_INDEX__DEVICE", "cpu")
    corpus = [
        {"id": f"t{i}", "text": text, "answer": answer, "task": "qa", "specialty": spec, "organ": None,
         "modality": None, "source": "medquad", "split": "train"}
        for i, (text, answer, spec) in enumerate([
            ("What are the symptoms of anemia?", "Fatigue, pallor.", "hematology"),
            ("How is high blood pressure diagnosed?", "Repeated readings.", "cardiology"),
            ("What causes asthma?", "Airway inflammation.", "pulmonology"),
        ])
    ]
    corpus_path = write_jsonl(tmp_path / "corpus.jsonl", corpus)
    build_index(load_settings(None), corpus=corpus_path, show_progress=False)
    rows = [{"id": "t0", "input": "What are the symptoms of anemia?"},
            {"id": "x1", "input": "Which signs point to anemia?"}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    result = invoke("--input", str(path), "--base-url", server.base_url, "--k", "1", "--task", "qa",
                    "--run", "real")
    assert result.exit_code == 0, result.output
    by_id = {r["id"]: r for r in read_results(tmp_path / "ask" / "real")}
    assert by_id["x1"]["retrieved_ids"] == ["t0"] and 0 < by_id["x1"]["retrieved_scores"][0] <= 1
    assert by_id["t0"]["retrieved_ids"] and by_id["t0"]["retrieved_ids"] != ["t0"]  # never its own answer
    assert "Fatigue, pallor." in json.dumps(server.requests[-1]["messages"] + server.requests[0]["messages"])


def test_local_backend_single_via_cli(env, tiny_model_dir):
    result = invoke("Очаг 5 мм", "--backend", "local", "--local-model", str(tiny_model_dir), "--no-rag",
                    "--max-new-tokens", "8", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["task"] == "report" and row["completion_tokens"] <= 8


def test_limit_then_full_run_resumes(env, tmp_path, server):
    path = write_jsonl(tmp_path / "in.jsonl", REPORT_ROWS)
    first = invoke("--input", str(path), "--no-rag", "--base-url", server.base_url, "--run", "lim", "--limit", "2")
    assert first.exit_code == 0, first.output
    assert [r["id"] for r in read_results(tmp_path / "ask" / "lim")] == ["r1", "r2"]
    full = invoke("--input", str(path), "--no-rag", "--base-url", server.base_url, "--run", "lim")
    assert full.exit_code == 0, full.output
    assert [r["id"] for r in read_results(tmp_path / "ask" / "lim")] == ["r1", "r2", "r3"]
    assert len(server.requests) == 3 and "resumed 2" in full.stdout
