"""`medscribe sft --method distill` on the tiny model: a teacher (the fake OpenAI-compatible server, or the tiny local
model + adapter) answers the training inputs through `ask`, the student trains on those answers; rejects with
reasons, teacher identity in the manifest, resume without asking twice, bad settings, and the student-vs-teacher
comparison script at a tiny size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sft_helpers import report_rows, write_config, write_jsonl
from typer.testing import CliRunner

from medscribe.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ask"))
from fake_server import FakeServer  # noqa: E402

runner = CliRunner()
DIALOGUE = {"id": "d1", "task": "dialogue", "input": "Нет.", "target": "Хорошо.", "loss": "last", "split": "train",
            "turns": [{"role": "user", "content": "Болит?"}, {"role": "assistant", "content": "Хорошо."}]}


def write_distill_data(root, faults=True):
    rows = report_rows(6)
    if faults:  # the fake server answers [[prose]] with plain text and [[500]] with HTTP 500 (tests/ask/fake_server.py)
        rows += [{**report_rows(1, start=50)[0], "id": "prose", "input": "Очаг [[prose]] 3 мм."},
                 # the fake teacher echoes the input: its answer carries a name, which must not reach training
                 {**report_rows(1, start=52)[0], "id": "phi", "input": "Киста 5 мм, пациент Иван Петров"},
                 {**report_rows(1, start=51)[0], "id": "broken", "input": "Очаг [[500]] 4 мм."}, DIALOGUE]
    write_jsonl(root / "data" / "train.jsonl", rows)
    write_jsonl(root / "data" / "eval.jsonl", report_rows(2, start=100))
    write_jsonl(root / "data" / "test.jsonl", report_rows(3, start=300))


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setenv("MEDSCRIBE_ASK__MAX_RETRIES", "0")
    monkeypatch.setenv("MEDSCRIBE_ASK__RETRY_BACKOFF", "0")


def invoke(config, *args):
    return runner.invoke(app, ["--config", str(config), "sft", "--method", "distill", *args])


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def killed_after_the_teacher(root, tiny_model_dir, server, monkeypatch):
    """A distill run killed after the teacher answered, before training (exit 130); returns its config."""
    from medscribe.sft import curriculum

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    config = write_config(root, tiny_model_dir, teacher_base_url=server.base_url, max_steps=1)
    monkeypatch.setattr(curriculum, "run_curriculum", killed)
    assert invoke(config).exit_code == 130
    monkeypatch.undo()
    monkeypatch.setenv("MEDSCRIBE_ASK__MAX_RETRIES", "0")
    return config


def test_student_trains_on_the_teachers_answers(tiny_model_dir, tmp_path, quick_retries):
    write_distill_data(tmp_path)
    with FakeServer() as server:
        config = write_config(tmp_path, tiny_model_dir, teacher_base_url=server.base_url, teacher_model="big-teacher")
        result = invoke(config)
        assert result.exit_code == 0, result.output
        asked = [r["messages"][-1]["content"] for r in server.requests]
        assert len(asked) == 9  # 6 + prose + phi + broken; the dialogue row is never sent
        assert all("Болит" not in text for text in asked)
    run = tmp_path / "sft" / "t"
    m = json.loads((run / "training_config.json").read_text())
    # teacher identity in the manifest (no key: none was set, and ask never records one)
    assert m["method"] == "distill"
    teacher = m["distill"]["teacher"]
    assert teacher["backend"] == "openai" and teacher["model"] == "big-teacher"
    assert teacher["server"] == server.base_url and teacher["fingerprint"]
    assert m["distill"]["trained_rows"] == 7 and m["distill"]["rejected"] == 3
    # the student's targets are the teacher's answers, not the gold ones
    answers = {r["id"]: r["prediction"] for r in read_jsonl(run / "teacher" / "results.jsonl") if not r["error"]}
    student = read_jsonl(run / "distill_train.jsonl")
    assert [r["id"] for r in student] == [f"r{i}" for i in range(6)] + ["phi"]
    assert all(r["target"] == answers[r["id"]] and r["target"].startswith("conclusion: ") for r in student[:6])
    # PHI-scrubbed again before training
    assert "Петров" in answers["phi"] and student[6]["target"] == "conclusion: Киста 5 мм, пациент [NAME]"
    assert m["distill"]["answers_phi_scrubbed"] == 1
    # (the input keeps its name here: real inputs come PHI-scrubbed from `medscribe data`; this one was made up)
    completions = json.loads((run / "stages" / "distill" / "examples.json").read_text())["train"][0]
    assert not any("Петров" in e["completion"][0]["content"] for e in completions)
    examples = json.loads((run / "stages" / "distill" / "examples.json").read_text())
    trained = [json.loads(e["completion"][0]["content"])["result"] for e in examples["train"][0]]
    assert trained == [r["target"] for r in student]
    # eval rows keep their gold references
    gold = [json.loads(e["completion"][0]["content"])["result"] for e in examples["eval"][0]]
    assert gold == [r["target"] for r in report_rows(2, start=100)]
    assert m["stages"][0]["name"] == "distill" and m["result"]["global_step"] == 2
    # rejects: id and reason, never the text
    rejects = {r["id"]: r["reason"] for r in read_jsonl(run / "distill_rejects.jsonl")}
    assert set(rejects) == {"prose", "broken", "d1"}
    assert rejects["prose"].startswith("teacher answer is not valid answer JSON")
    assert rejects["broken"].startswith("teacher failed: ") and "dialogue row" in rejects["d1"]
    assert "Очаг" not in (run / "distill_rejects.jsonl").read_text()


def test_a_killed_distill_resumes_without_asking_the_teacher_again(tiny_model_dir, tmp_path, quick_retries,
                                                                   monkeypatch):
    write_distill_data(tmp_path, faults=False)
    with FakeServer() as server:
        config = killed_after_the_teacher(tmp_path, tiny_model_dir, server, monkeypatch)
        assert len(server.requests) == 6
        result = invoke(config, "--resume")
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 6  # every answer came from <run>/teacher/results.jsonl
    m = json.loads((tmp_path / "sft" / "t" / "training_config.json").read_text())
    assert m["distill"]["teacher_summary"]["resumed_rows"] == 6
    assert m["distill"]["teacher_summary"]["asked_this_run"] == 0 and m["result"]["global_step"] == 1


def test_local_teacher_with_adapter_and_no_usable_answer(tiny_model_dir, tmp_path):
    """The tiny random model answers through LocalBackend (+ its adapter); its text is no answer JSON, so every row
    is rejected: exit 1 naming the rejects file, and the teacher run records the local model and adapter. Asked
    for plain text, the same teacher's answers are trained on."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "teacher-adapter"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(adapter)
    write_distill_data(tmp_path, faults=False)
    config = write_config(tmp_path, tiny_model_dir)
    config.write_text(config.read_text() + '\n[ask]\nmax_new_tokens = 4\ndevice = "cpu"\n')
    result = invoke(config, "--teacher-backend", "local", "--teacher", str(tiny_model_dir),
                    "--teacher-adapter", str(adapter))
    assert result.exit_code == 1, result.output
    assert "distill: no usable teacher answer (6 rows rejected, see" in " ".join(result.output.split())
    summary = json.loads((tmp_path / "sft" / "t" / "teacher" / "summary.json").read_text())
    assert summary["backend"] == "local" and summary["model"] == str(tiny_model_dir)
    assert summary["adapter"] == str(adapter) and summary["answered"] == 6
    assert not list((tmp_path / "sft").rglob("checkpoint-*"))
    # with plain-text answers (prompt.json_answer = false) the same teacher's text is what the student learns
    config.write_text(config.read_text() + "\n[prompt]\njson_answer = false\n")
    result = invoke(config, "--run", "plain", "--teacher-backend", "local", "--teacher", str(tiny_model_dir),
                    "--teacher-adapter", str(adapter))
    assert result.exit_code == 0, result.output
    run = tmp_path / "sft" / "plain"
    m = json.loads((run / "training_config.json").read_text())
    assert m["distill"]["teacher"]["backend"] == "local" and m["distill"]["teacher"]["adapter"] == str(adapter)
    assert m["distill"]["teacher"]["adapter_hash"] and m["distill"]["teacher"]["model_files"]
    raw = {r["id"]: r["raw"] for r in read_jsonl(run / "teacher" / "results.jsonl")}
    student = read_jsonl(run / "distill_train.jsonl")
    assert student and len(student) + m["distill"]["rejected"] == 6
    assert all(r["target"] == raw[r["id"]].strip() and r["target"] != f"Киста ({r['organ']}) {r['id'][1:]}"
               for r in student)


@pytest.mark.parametrize(("sft", "rows", "message"), [
    ({"teacher_adapter": "some/adapter"}, None, "sft.teacher_adapter applies to sft.teacher_backend = 'local'"),
    ({"stages": [{"name": "a"}]}, None, "sft.method = 'distill' trains one stage on the teacher's answers"),
    ({}, [DIALOGUE], "no report/qa rows for the teacher to answer"),
    ({"teacher_backend": "local", "teacher_adapter": "no/such/adapter"}, None,
     "no/such/adapter: --adapter must be a folder with adapter_config.json"),
])
def test_bad_distill_settings_are_exit_2(tiny_model_dir, tmp_path, sft, rows, message):
    write_distill_data(tmp_path, faults=False)
    if rows is not None:
        write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    config = write_config(tmp_path, tiny_model_dir, **{k: v for k, v in sft.items() if k != "stages"})
    if "stages" in sft:
        config.write_text(config.read_text() + '\n[[sft.stages]]\nname = "a"\n')
    result = invoke(config)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_comparison_script_student_vs_teacher_at_tiny_size(tiny_model_dir, tmp_path, quick_retries):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import distill_demo

    from medscribe.settings import load_settings

    write_distill_data(tmp_path, faults=False)
    with FakeServer() as server:
        config = write_config(tmp_path, tiny_model_dir, teacher_base_url=server.base_url, teacher_model="big",
                              max_steps=1)
        config.write_text(config.read_text() + '\n[ask]\nmax_new_tokens = 4\ndevice = "cpu"\n')
        assert invoke(config).exit_code == 0
        settings = load_settings(config)
        # the config's teacher changes after training: the comparison asks the teacher the run recorded
        settings.sft.teacher_model = "another"
        summary = distill_demo.compare(settings, tmp_path / "sft" / "t", out=tmp_path / "cmp",
                                       metrics=["exact_match", "token_f1"])
    teacher, student = summary["runs"]["teacher"], summary["runs"]["student"]
    assert summary["rows"] == 3 and teacher["model"] == "big" and student["backend"] == "local"
    assert teacher["answered"] == 3 and student["answered"] == 3
    assert teacher["latency_p50_s"] is not None and student["latency_p50_s"] is not None
    primary = summary["primary_metric"]
    assert teacher[primary] is not None and student[primary] is not None
    assert summary["student_minus_teacher"][primary]["delta"] == pytest.approx(student[primary] - teacher[primary])
    assert json.loads((tmp_path / "cmp" / "distill_demo.json").read_text())["rows"] == 3
    assert (tmp_path / "cmp" / "ask" / "teacher" / "results.jsonl").is_file()


def test_resuming_with_another_teacher_is_refused_with_sft_advice(tiny_model_dir, tmp_path, quick_retries,
                                                                   monkeypatch):
    write_distill_data(tmp_path, faults=False)
    with FakeServer() as server:
        killed_after_the_teacher(tmp_path, tiny_model_dir, server, monkeypatch)
        other = write_config(tmp_path, tiny_model_dir, teacher_base_url=server.base_url, max_steps=1,
                             teacher_model="another-teacher")
        result = invoke(other, "--resume")
    assert result.exit_code == 2
    assert "another --run" in result.output and "--overwrite" not in result.output  # sft has no --overwrite
