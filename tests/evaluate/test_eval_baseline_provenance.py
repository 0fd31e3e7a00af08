"""eval: --baseline and pairwise deltas, run fingerprints (shown, refused when the test inputs differ, warned
when missing), and json_strict / json_repaired reported apart from json_valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_eval_cli import invoke, write_run

from medscribe.evaluate import run_eval
from medscribe.settings import load_settings

FAST = ("--metrics", "exact_match,token_f1", "--bootstrap-samples", "200")


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no medscribe.toml from the repo, outputs under tmp
    return tmp_path


def fingerprint(run_dir: Path, digest: str, input_hash: str | None, where: str = "both") -> Path:
    """What ask writes: <run>/fingerprint.json and summary.json["fingerprint"], the same object."""
    parts = {"mode": "generate", "model": "tiny", **({"input": input_hash} if input_hash else {})}
    record = {"digest": digest, "parts": parts}
    if where in ("both", "file"):
        (run_dir / "fingerprint.json").write_text(json.dumps(record), encoding="utf-8")
    if where in ("both", "summary"):
        (run_dir / "summary.json").write_text(json.dumps({"count": 12, "fingerprint": record}), encoding="utf-8")
    return run_dir


def _three(root: Path) -> list[Path]:
    return [write_run(root / "a", correct_every=3), write_run(root / "b", correct_every=2),
            write_run(root / "c", correct_every=1)]


def test_baseline_and_every_pair_from_the_same_resamples(work):
    a, b, c = _three(work)
    result, out = invoke(a, b, c, *FAST, "--baseline", "b", "--out", work / "rep")
    assert result.exit_code == 0, out
    report = json.loads((work / "rep" / "metrics.json").read_text(encoding="utf-8"))
    em = {run: report["runs"][run]["metrics"]["exact_match"] for run in "abc"}
    assert em == pytest.approx({"a": 4 / 12, "b": 6 / 12, "c": 1.0})
    assert report["baseline"] == "b" and set(report["comparison"]) == {"a", "c"}
    assert report["comparison"]["c"]["exact_match"]["delta"] == pytest.approx(em["c"] - em["b"])
    assert report["comparison"]["a"]["exact_match"]["delta"] == pytest.approx(em["a"] - em["b"])
    assert set(report["pairwise"]) == {"a|b", "a|c", "b|c"}
    for first, second in (("a", "b"), ("a", "c"), ("b", "c")):
        d = report["pairwise"][f"{first}|{second}"]["exact_match"]
        assert d["delta"] == pytest.approx(em[second] - em[first])
        assert d["low"] <= d["delta"] <= d["high"]
        # c is right wherever the other is; a and b are each right where the other is wrong (rows 2-4, 3-9)
        assert d["low"] > 0 if second == "c" else d["low"] < 0 < d["high"]
    # The baseline comparison and the pair are the same paired resamples: identical intervals, mirrored for a.
    assert report["comparison"]["c"]["exact_match"] == report["pairwise"]["b|c"]["exact_match"]
    mirrored = report["pairwise"]["a|b"]["exact_match"]
    assert report["comparison"]["a"]["exact_match"]["low"] == pytest.approx(-mirrored["high"])
    assert "Δ c−b" in out and "Δ a−b" in out and "pairwise Δ" in out and "c−a" in out
    md = (work / "rep" / "report.md").read_text(encoding="utf-8")
    assert "Pairwise differences" in md and "Δ c − a [95% CI]" in md and "against the baseline b" in md
    html = (work / "rep" / "report.html").read_text(encoding="utf-8")
    assert "Pairwise differences" in html and "Δ c − a [95% CI]" in html


def test_default_baseline_is_the_first_run_and_a_path_names_a_run(work):
    a, b, c = _three(work)
    settings = load_settings(flags={"eval": {"metrics": ["exact_match"], "bootstrap_samples": 50}})
    report = run_eval(settings, [a, b, c], out=work / "d").report
    assert report["baseline"] == "a" and set(report["comparison"]) == {"b", "c"}
    report = run_eval(settings, [a, b, c], out=work / "p", baseline=str(c)).report
    assert report["baseline"] == "c" and set(report["comparison"]) == {"a", "b"}
    assert report["comparison"]["a"]["exact_match"]["delta"] == pytest.approx(4 / 12 - 1.0)
    result, out = invoke(a, b, *FAST, "--baseline", "nope")
    assert result.exit_code == 2 and "--baseline 'nope' is none of the runs (a, b)" in out


def test_fingerprints_are_shown_and_other_test_inputs_refused(work):
    a, b, c = _three(work)
    fingerprint(a, "aaaaaaaaaaaaaaaa", "1111222233334444")
    fingerprint(b, "bbbbbbbbbbbbbbbb", "1111222233334444", where="file")
    fingerprint(c, "cccccccccccccccc", "1111222233334444", where="summary")
    result, out = invoke(a, b, c, *FAST, "--out", work / "ok")
    assert result.exit_code == 0, out
    assert all(d in out for d in ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"))
    assert "provenance unknown" not in out
    report = json.loads((work / "ok" / "metrics.json").read_text(encoding="utf-8"))
    assert report["runs"]["b"]["fingerprint"]["digest"] == "bbbbbbbbbbbbbbbb"
    md = (work / "ok" / "report.md").read_text(encoding="utf-8")
    assert "| a | 12 | 12 | aaaaaaaaaaaaaaaa | generate | 1111222233334444 |" in md

    fingerprint(c, "cccccccccccccccc", "9999888877776666")
    result, out = invoke(a, b, c, *FAST, "--out", work / "bad")
    assert result.exit_code == 2
    line = "runs 'a' and 'c' answered different test inputs (input 1111222233334444 vs 9999888877776666)"
    assert any(line in x and x.endswith("compare runs over the same test file") for x in out.splitlines())  # 1 line
    assert not (work / "bad").exists()


def test_runs_without_a_fingerprint_are_compared_with_a_warning(work):
    a, b, _ = _three(work)
    fingerprint(a, "aaaaaaaaaaaaaaaa", "1111222233334444")
    result, out = invoke(a, b, *FAST, "--out", work / "w")
    assert result.exit_code == 0, out
    assert "b: no fingerprint" in out and "provenance unknown" in out and "unknown" in out
    md = (work / "w" / "report.md").read_text(encoding="utf-8")
    assert "| b | 12 | 12 | unknown |" in md and "b: no fingerprint: provenance unknown" in md
    fingerprint(b, "bbbbbbbbbbbbbbbb", None)  # a fingerprint without an input hash: inputs not checked, said so
    result, out = invoke(a, b, *FAST, "--out", work / "w2")
    assert result.exit_code == 0 and "has no input hash" in out


def test_a_restarted_unfinished_run_is_refused(work):
    a = write_run(work / "a", correct_every=1)
    fingerprint(a, "aaaaaaaaaaaaaaaa", "1111222233334444")
    (a / "fingerprint.json").write_text(json.dumps({"digest": "dddddddddddddddd", "parts": {}}), encoding="utf-8")
    result, out = invoke(a, *FAST)
    assert result.exit_code == 2 and "disagree" in out and "dddddddddddddddd" in out
    (a / "fingerprint.json").write_text(json.dumps({"digest": 3}), encoding="utf-8")
    result, out = invoke(a, *FAST)
    assert result.exit_code == 2 and "fingerprint.json" in out and '"digest"' in out


def _rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_json_strict_and_repaired_are_reported_apart(work):
    answer = json.dumps({"result": "Киста печени."}, ensure_ascii=False)
    rows = []
    for i in range(10):  # 6 strict, 3 repaired, 1 unparsable
        repaired = 6 <= i < 9
        rows.append({"id": str(i), "reference": "Киста печени.", "prediction": "Киста печени.",
                     "raw": f"```json\n{answer}\n```" if repaired else answer, "parse_ok": i < 9,
                     "parsed": {"result": "Киста печени."} if i < 9 else None, "repaired": repaired})
    flagged = _rows(work / "flagged" / "results.jsonl", rows)
    # Reversed: eval aligns it to the first run by id, and the per-row flags must move with their rows.
    legacy = _rows(work / "legacy" / "results.jsonl",
                   [{k: v for k, v in r.items() if k != "repaired"} for r in reversed(rows)])
    settings = load_settings(flags={"eval": {"metrics": ["exact_match"], "bootstrap_samples": 50}})
    report = run_eval(settings, [flagged.parent, legacy.parent], out=work / "j").report
    for run in ("flagged", "legacy"):  # the legacy file has no flag: the same split, judged from `raw`
        m = report["runs"][run]["metrics"]
        assert (m["json_valid"], m["json_strict"], m["json_repaired"]) == pytest.approx((0.9, 0.6, 0.3)), run
    paired = report["comparison"]["legacy"]
    assert all(paired[m] == {"delta": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}
               for m in ("json_valid", "json_strict", "json_repaired"))  # row by row the same after alignment
    assert any("legacy" in note and "raw" in note for note in report["notes"])
    assert not any("flagged" in note for note in report["notes"])
    assert report["metric_order"].index("json_strict") == report["metric_order"].index("json_valid") + 1
    # A foreign file with parse_ok but neither flag nor raw: no strict/repaired numbers rather than wrong ones.
    bare = _rows(work / "bare.jsonl", [{k: r[k] for k in ("id", "reference", "prediction", "parse_ok")} for r in rows])
    m = run_eval(settings, [bare], out=work / "b").report["runs"]["bare"]["metrics"]
    assert m["json_valid"] == pytest.approx(0.9) and "json_strict" not in m and "json_repaired" not in m
