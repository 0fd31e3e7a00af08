"""`medscribe sft remote` against a fake OpenAI-compatible fine-tuning API on 127.0.0.1 (files + jobs)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sft_helpers import report_rows, write_data
from typer.testing import CliRunner

from medscribe.cli import app
from medscribe.errors import RuntimeFailure
from medscribe.settings import load_settings

KEY = "sk-remote-test-0123456789abcdef"


class FineTuningServer:
    """/v1/files and /v1/fine_tuning/jobs; a job is queued, then running, then `final` after `polls` polls."""

    def __init__(self, final: str = "succeeded", polls: int = 2):
        self.final, self.polls = final, polls
        self.uploads: list[bytes] = []
        self.jobs: list[dict] = []
        self.retrieved = 0
        self.auth: set[str] = set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                owner.auth.add(self.headers.get("Authorization", ""))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.endswith("/files"):
                    owner.uploads.append(body)
                    self._send({"id": f"file-{len(owner.uploads)}", "object": "file", "bytes": len(body),
                                "created_at": 0, "filename": "f.jsonl", "purpose": "fine-tune"})
                else:
                    owner.jobs.append(json.loads(body))
                    self._send(owner._job("queued"))

            def do_GET(self):
                owner.retrieved += 1
                status = owner.final if owner.retrieved >= owner.polls else "running"
                self._send(owner._job(status))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def _job(self, status: str) -> dict:
        done = status == "succeeded"
        return {
            "id": "ftjob-1", "object": "fine_tuning.job", "status": status, "model": self.jobs[0]["model"],
            "created_at": 0, "fine_tuned_model": "ft:gpt-test:medscribe:r1" if done else None,
            "organization_id": "org", "result_files": [], "seed": 42, "trained_tokens": 1234 if done else None,
            "training_file": "file-1", "validation_file": None, "hyperparameters": {"n_epochs": 2},
            "error": {"code": "bad_data", "message": "invalid training file", "param": None}
            if status == "failed" else None, "finished_at": None,
        }

    def __enter__(self):
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()


def _settings(tmp_path, server):
    return load_settings(flags={
        "paths": {"data": str(tmp_path / "data"), "sft": str(tmp_path / "sft")},
        "sft": {"remote_base_url": server.base_url, "remote_model": "gpt-test", "remote_poll_s": 0.01},
    })


def test_upload_start_poll_and_pick_up_the_same_job(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSCRIBE_ASK__API_KEY", KEY)
    write_data(tmp_path, n_train=4, n_eval=2)
    from medscribe.prompts import build_messages
    from medscribe.schemas import Record
    from medscribe.sft.remote import run_remote

    with FineTuningServer() as server:
        settings = _settings(tmp_path, server)
        started = run_remote(settings, run="r1", wait=False)
        assert started["job_id"] == "ftjob-1" and started["status"] == "queued"
        assert started["train_file_id"] == "file-1" and started["eval_file_id"] == "file-2"
        assert server.jobs[0]["model"] == "gpt-test" and server.jobs[0]["validation_file"] == "file-2"

        finished = run_remote(settings, run="r1")  # picks up job.json: no second upload, no second job
        assert len(server.uploads) == 2 and len(server.jobs) == 1
        assert finished["status"] == "succeeded" and finished["fine_tuned_model"] == "ft:gpt-test:medscribe:r1"
        assert server.auth == {f"Bearer {KEY}"}

    # what was uploaded is the shared prompt builder's conversation, the answer as the assistant turn
    record = Record.model_validate({k: v for k, v in report_rows(1)[0].items() if k != "messages"})
    expected = build_messages(record, "report", settings.prompt, include_target=True)
    first = json.loads((tmp_path / "sft" / "r1" / "remote_train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first == {"messages": expected}
    assert json.dumps(expected, ensure_ascii=False).encode() in server.uploads[0]
    job = json.loads((tmp_path / "sft" / "r1" / "job.json").read_text(encoding="utf-8"))
    assert job["fine_tuned_model"] == finished["fine_tuned_model"] and job["train_rows"] == 4
    for path in (tmp_path / "sft").rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(encoding="utf-8") and KEY[-8:] not in path.read_text(encoding="utf-8")


def test_failed_job_is_a_one_line_runtime_failure_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSCRIBE_ASK__API_KEY", KEY)
    write_data(tmp_path, n_train=3, n_eval=0)
    with FineTuningServer(final="failed") as server:
        for key, value in {"PATHS__DATA": tmp_path / "data", "PATHS__SFT": tmp_path / "sft",
                           "SFT__REMOTE_POLL_S": "0.01"}.items():
            monkeypatch.setenv(f"MEDSCRIBE_{key}", str(value))
        result = CliRunner().invoke(app, ["sft", "remote", "--run", "bad", "--base-url", server.base_url,
                                          "--model", "gpt-test"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "ftjob-1 failed: invalid training file" in lines[0]
    assert KEY not in result.output and "Traceback" not in result.output


def test_no_server_is_a_one_line_failure_without_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSCRIBE_ASK__API_KEY", KEY)
    write_data(tmp_path, n_train=2, n_eval=0)
    with FineTuningServer() as server:
        settings = _settings(tmp_path, server)
    settings.ask.timeout = 2.0
    from medscribe.sft.remote import run_remote

    with pytest.raises(RuntimeFailure, match="rerun the same command to continue") as err:
        run_remote(settings, run="down")
    assert KEY not in str(err.value) and "\n" not in str(err.value)
