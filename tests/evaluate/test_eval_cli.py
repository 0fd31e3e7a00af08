"""End to end: `medscribe eval` through CliRunner and `run_eval` directly, on tiny English/Russian runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medscribe.cli import app
from medscribe.evaluate import GateFailed, run_eval
from medscribe.settings import load_settings

LEXICAL = "exact_match,token_f1,bleu,chrf,rouge,meteor,edit_similarity"
CONCLUSIONS = {
    "печень": "Киста печени 12 мм.",
    "почки": "Конкремент левой почки 5 мм.",
    "лёгкие": "Очаговых изменений в лёгких не выявлено.",
}


def write_run(run_dir: Path, correct_every: int, n: int = 12, ids=None, extra=None) -> Path:
    """An ask-style run dir: every `correct_every`-th prediction is right, the rest answer another organ."""
    run_dir.mkdir(parents=True, exist_ok=True)
    organs = list(CONCLUSIONS)
    rows = []
    for i in range(n):
        organ = organs[i % 3]
        right = i % correct_every == 0
        pred = CONCLUSIONS[organ] if right else CONCLUSIONS[organs[(i + 1) % 3]]
        parsed = {"result": pred, "organ": organ if right else organs[(i + 1) % 3], "has_finding": True}
        rows.append({
            "id": (ids or [f"case-{j}" for j in range(n)])[i], "input": "описание", "reference": CONCLUSIONS[organ],
            "prediction": pred, "raw": json.dumps(parsed, ensure_ascii=False), "parsed": parsed, "parse_ok": True,
            "specialty": ["radiology", "urology"][i % 2], "organ": organ, "modality": "КТ", "has_finding": True,
            "retrieved_ids": [f"gold-{i}", "other"] if right else ["other", "x"], "retrieved_scores": [0.9, 0.5],
            "gold_id": f"gold-{i}", "error": None, "latency_s": 0.1, "prompt_tokens": 10, "completion_tokens": 5,
            **(extra or {}),
        })
    (run_dir / "results.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    (run_dir / "summary.json").write_text(json.dumps({"count": n}), encoding="utf-8")
    return run_dir


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no medscribe.toml from the repo, outputs under tmp
    return tmp_path


def invoke(*args):
    result = CliRunner().invoke(app, ["eval", *map(str, args)])
    return result, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_single_run_writes_everything(work):
    run = write_run(work / "tuned", correct_every=1)
    result, out = invoke(run, "--metrics", LEXICAL, "--out", work / "rep", "--bootstrap-samples", "50")
    assert result.exit_code == 0, out
    rep = work / "rep"
    for name in ("metrics.json", "rows.csv", "recommendations.json", "report.html", "report.md", "metrics.png",
                 "by_specialty.png", "by_organ.png"):
        assert (rep / name).is_file() and (rep / name).stat().st_size > 0, name
    metrics = json.loads((rep / "metrics.json").read_text(encoding="utf-8"), parse_constant=pytest.fail)  # no NaN
    m = metrics["runs"]["tuned"]["metrics"]
    for key in ("exact_match", "token_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "edit_similarity",
                "json_valid", "organ_acc", "has_finding_acc", "recall@1", "mrr"):
        assert m[key] == pytest.approx(1.0), key
    assert "tok:13a" in metrics["signatures"]["bleu"]
    assert any(k.startswith("meteor") for k in m)
    assert (rep / "by_specialty.png").read_bytes()[:4] == b"\x89PNG"
    html = (rep / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html  # plots embedded
    # what the model wrote, side by side with the input and the reference: worst, best and a fixed sample
    for kind in ("worst", "best", "random sample"):
        assert f"tuned: {kind} 5 rows by rougeL" in html
    assert "Киста печени 12 мм." in html and "описание" in html
    assert "tuned: worst 5 rows" in (rep / "report.md").read_text(encoding="utf-8")
    with open(rep / "rows.csv", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and rows[0]["rougeL"] == "1.0000"
    assert "rougeL" in out and "tuned" in out


def test_report_examples_are_scrubbed_and_empty_tables_left_out(work):
    base = write_run(work / "base", correct_every=3)
    tuned = write_run(work / "tuned", correct_every=2, extra={"prediction": "Звонила Иванова Мария Петровна"})
    result, out = invoke(base, tuned, "--metrics", LEXICAL, "--out", work / "ex", "--bootstrap-samples", "50")
    assert result.exit_code == 0, out
    html = (work / "ex" / "report.html").read_text(encoding="utf-8")
    md = (work / "ex" / "report.md").read_text(encoding="utf-8")
    assert "tuned: worst 5 rows by rougeL" in md and "base: worst" not in md  # examples per compared run
    assert "Иванова" not in html and "Иванова" not in md and "[NAME]" in md
    assert "</th></tr></table>" not in html  # no table that is a header alone


def test_compare_two_runs_and_gates(work):
    base = write_run(work / "base", correct_every=3)
    tuned = write_run(work / "tuned", correct_every=1)
    result, out = invoke(base, tuned, "--metrics", LEXICAL, "--out", work / "cmp", "--bootstrap-samples", "200",
                         "--fail-under", "rougeL=0.9", "--fail-under", "json_valid=1")
    assert result.exit_code == 0, out
    metrics = json.loads((work / "cmp" / "metrics.json").read_text(encoding="utf-8"))
    diff = metrics["comparison"]["tuned"]["exact_match"]
    assert diff["delta"] == pytest.approx(1.0 - 4 / 12)
    assert diff["low"] > 0  # tuned is better on every row where they differ
    assert metrics["gates"]["failures"] == []
    # the candidate (last run) misses a gate -> exit 1 naming the metric, reports still written
    result, out = invoke(tuned, base, "--metrics", LEXICAL, "--out", work / "cmp2", "--fail-under", "rougeL=0.9")
    assert result.exit_code == 1
    assert "rougeL" in out and "< 0.9" in out
    assert (work / "cmp2" / "report.html").is_file()


def test_bootstrap_seed_is_deterministic(work):
    base = write_run(work / "base", correct_every=2)
    tuned = write_run(work / "tuned", correct_every=1)
    settings = load_settings(flags={"eval": {"metrics": ["token_f1", "bleu"], "bootstrap_samples": 100}})
    one = run_eval(settings, [base, tuned], out=work / "a").report["comparison"]
    two = run_eval(settings, [base, tuned], out=work / "b").report["comparison"]
    assert one == two


def test_unknown_gate_metric_exit_2(work):
    run = write_run(work / "r", correct_every=1)
    result, out = invoke(run, "--metrics", "token_f1", "--fail-under", "bleurt=0.3")
    assert result.exit_code == 2 and "unknown metric 'bleurt'" in out
    result, out = invoke(run, "--metrics", "token_f1", "--fail-under", "rougeL")
    assert result.exit_code == 2 and "METRIC=VALUE" in out
    result, out = invoke(run, "--metrics", "token_f1", "--fail-under", "rougeL=0.3")
    assert result.exit_code == 2 and "not in eval.metrics" in out


def test_mismatched_ids_exit_2(work):
    a = write_run(work / "a", correct_every=1)
    b = write_run(work / "b", correct_every=1, ids=[f"other-{j}" for j in range(12)])
    result, out = invoke(a, b, "--metrics", "token_f1")
    assert result.exit_code == 2
    assert "ids do not match" in out and "12 only in 'a'" in out and "results.jsonl line 1" in out
    assert "case-0" not in out and "other-0" not in out  # no id values in messages
    assert "Traceback" not in out


def test_bad_inputs_exit_2(work):
    empty = work / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    result, out = invoke(empty, "--metrics", "token_f1")
    assert result.exit_code == 2 and "empty file" in out

    no_ref = work / "noref.jsonl"
    no_ref.write_text(json.dumps({"id": "1", "prediction": "x"}) + "\n", encoding="utf-8")
    result, out = invoke(no_ref, "--metrics", "token_f1")
    assert result.exit_code == 2 and "missing column 'reference'" in out and "noref.jsonl" in out

    dup = work / "dup.jsonl"
    dup.write_text("".join(json.dumps({"id": "1", "prediction": "a", "reference": "a"}) + "\n" for _ in range(2)))
    result, out = invoke(dup, "--metrics", "token_f1")
    assert result.exit_code == 2 and "dup.jsonl:2: duplicate 'id' (same as line 1)" in out

    result, out = invoke(work / "missing-dir", "--metrics", "token_f1")
    assert result.exit_code == 2 and "not found" in out

    broken = work / "broken.jsonl"
    broken.write_text('{"id": "1", "prediction": "a", "reference": "a"}\n{oops\n', encoding="utf-8")
    result, out = invoke(broken, "--metrics", "token_f1")
    assert result.exit_code == 2 and "broken.jsonl:2" in out


def test_csv_cp1251_with_custom_columns(work):
    path = work / "preds.csv"
    text = "id;ответ;эталон;specialty\n1;Киста печени;киста печени;radiology\n2;Норма;Киста почки;urology\n"
    path.write_bytes(text.encode("cp1251"))
    result, out = invoke(path, "--metrics", "exact_match,rouge", "--prediction-column", "ответ",
                         "--reference-column", "эталон", "--out", work / "csv")
    assert result.exit_code == 0, out
    m = json.loads((work / "csv" / "metrics.json").read_text(encoding="utf-8"))["runs"]["preds"]["metrics"]
    assert m["exact_match"] == pytest.approx(0.5)
    assert m["rouge1"] == pytest.approx(0.5)  # Russian ROUGE is not 0
    result, out = invoke(path, "--metrics", "exact_match")
    assert result.exit_code == 2 and "missing column 'prediction'" in out


def test_rows_without_reference_are_not_scored(work):
    path = work / "partial.jsonl"
    rows = [{"id": "1", "prediction": "киста", "reference": "киста"}, {"id": "2", "prediction": "x", "reference": None}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    settings = load_settings(flags={"eval": {"metrics": ["exact_match"], "bootstrap_samples": 20}})
    report = run_eval(settings, [path], out=work / "p").report
    assert report["runs"]["partial"]["metrics"]["exact_match"] == 1.0
    assert report["runs"]["partial"]["scored"] == 1


def test_semantic_metrics_with_local_minilm(work, minilm):
    base = write_run(work / "base", correct_every=3)
    tuned = write_run(work / "tuned", correct_every=1)
    flags = {"eval": {
        "metrics": ["token_f1", "bertscore", "embedding_cosine", "organ_cosine"], "bertscore_model": minilm,
        "bertscore_num_layers": 6, "embedding_model": minilm, "bootstrap_samples": 50, "device": "cpu",
    }}
    report = run_eval(load_settings(flags=flags), [base, tuned], out=work / "sem").report
    tuned_m, base_m = report["runs"]["tuned"]["metrics"], report["runs"]["base"]["metrics"]
    assert tuned_m["bertscore_f1"] == pytest.approx(1.0, abs=1e-4)
    assert tuned_m["embedding_cosine"] == pytest.approx(1.0, abs=1e-4)
    assert base_m["bertscore_f1"] < tuned_m["bertscore_f1"]
    assert tuned_m["organ_match"] == 1.0 and base_m["organ_match"] < 1.0
    assert report["models"]["bertscore"]["rescale_with_baseline"] is False
    assert "rescaling" in report["variants"]["bertscore"]


def test_unavailable_bertscore_model_is_skipped_visibly(work):
    run = write_run(work / "r", correct_every=1)
    result, out = invoke(run, "--metrics", "token_f1,bertscore", "--bertscore-model", work / "no-such-model",
                         "--bertscore-num-layers", "6", "--out", work / "s", "--fail-under", "bertscore_f1=0.5")
    assert result.exit_code == 1
    assert "bertscore skipped" in out and "bertscore_f1 not computed" in out
    metrics = json.loads((work / "s" / "metrics.json").read_text(encoding="utf-8"))
    assert "bertscore" in metrics["skipped"] and metrics["runs"]["r"]["metrics"]["token_f1"] == 1.0


def test_gate_failure_from_python_carries_result(work):
    run = write_run(work / "r", correct_every=2)
    settings = load_settings(flags={"eval": {"metrics": ["exact_match"], "bootstrap_samples": 20,
                                             "fail_under": {"exact_match": 0.9}}})
    with pytest.raises(GateFailed) as info:
        run_eval(settings, [run], out=work / "g")
    assert info.value.exit_code == 1
    assert info.value.result.report["runs"]["r"]["metrics"]["exact_match"] == pytest.approx(0.5)


def test_nothing_computable_is_a_runtime_failure(work):
    path = work / "plain.jsonl"
    path.write_text(json.dumps({"id": "1", "prediction": "a", "reference": "a"}) + "\n", encoding="utf-8")
    result, out = invoke(path, "--metrics", "bertscore", "--bertscore-model", work / "nope", "--out", work / "n")
    assert result.exit_code == 1 and "no metric could be computed" in out


def test_metrics_json_has_no_nan():
    from medscribe.evaluate.runner import json_safe

    assert json_safe({"a": [float("nan"), 0.5], "b": (float("inf"),), "c": "x"}) == {"a": [None, 0.5], "b": [None],
                                                                                     "c": "x"}
