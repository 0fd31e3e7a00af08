"""Distillation comparison: the student (a `medscribe sft --method distill` run) against its teacher on the same
test split, quality and latency.

    .venv/bin/python bench/distill_demo.py -c examples/demo.toml --run artifacts/sft/<distill-run> \
        [--test artifacts/data/test.jsonl] [--limit N] [--out artifacts/distill-demo] [--metrics token_f1,rouge]

1. The teacher the run recorded (its `settings.sft.teacher_*`: the same server/model or model folder + adapter,
   the same k) answers the test split through `ask` (`<out>/ask/teacher`);
2. the student, as the run folder says to serve it (`serve.local_model` + `serve.adapter`, local backend, the
   config's [ask] device / batch size), answers the same rows (`<out>/ask/student`);
3. `eval` compares them, the teacher as baseline: every metric with a 95 % interval, the paired-bootstrap delta
   student - teacher, JSON validity; latency p50/p95 and tokens/s come from each ask run's summary.json.
The table is printed and written to <out>/distill_demo.json (key figure last: the primary metric's delta and the
p50 latency ratio). Both ask runs resume when rerun. Run it on an idle machine for latency figures that mean
something; `--limit 8` proves the wiring in seconds (tests/sft/test_sft_distill.py does that on the tiny model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEACHER_KEYS = ("teacher_backend", "teacher_model", "teacher_base_url", "teacher_adapter", "rag_context", "rag_k")


def compare(settings: Any, run_dir: str | Path, test: str | Path | None = None, out: str | Path | None = None,
            limit: int | None = None, metrics: list[str] | None = None, retriever: Any = None,
            console: Any = None) -> dict:
    """Teacher and student answer `test` (default paths.data/test.jsonl); eval compares them. Returns the summary."""
    from medscribe.ask import run_batch
    from medscribe.evaluate import run_eval
    from medscribe.io import atomic_write_json
    from medscribe.sft.distill import read_manifest, teacher_k, teacher_settings

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    recorded = manifest["settings"]["sft"]
    settings = settings.model_copy(update={"sft": settings.sft.model_copy(
        update={k: recorded.get(k) for k in TEACHER_KEYS})})
    out = Path(out) if out else run_dir / "compare"
    test = Path(test) if test else Path(settings.paths.data) / "test.jsonl"
    teacher = teacher_settings(settings, ask_root=out / "ask")
    serve = manifest["serve"]
    student = settings.model_copy(update={
        "ask": settings.ask.model_copy(update={"backend": "local", "local_model": serve["local_model"],
                                               "adapter": serve["adapter"], "mode": "generate",
                                               "k": teacher_k(settings), "copy_threshold": None}),
        "paths": settings.paths.model_copy(update={"ask": out / "ask"})})
    uses_index = teacher_k(settings) > 0
    summaries = {}
    for name, who in (("teacher", teacher), ("student", student)):
        summaries[name] = run_batch(who, test, run=name, limit=limit, retriever=retriever if uses_index else None,
                                    console=console)
    eval_settings = settings if not metrics else settings.model_copy(
        update={"eval": settings.eval.model_copy(update={"metrics": metrics})})
    result = run_eval(eval_settings, [out / "ask" / "teacher", out / "ask" / "student"], out=out / "eval",
                      baseline="teacher", console=console)
    report = result.report
    primary = report["primary_metric"]
    summary: dict[str, Any] = {"run": str(run_dir), "test": str(test), "rows": summaries["student"]["count"],
                               "primary_metric": primary, "teacher_identity": manifest["distill"]["teacher"],
                               "student": {"local_model": serve["local_model"], "adapter": serve["adapter"]},
                               "eval_dir": str(result.out_dir), "runs": {}}
    for name in ("teacher", "student"):
        s, r = summaries[name], report["runs"].get(name, {})
        summary["runs"][name] = {
            primary: (r.get("metrics") or {}).get(primary), f"{primary}_ci95": (r.get("ci95") or {}).get(primary),
            "json_valid_rate": s.get("json_valid_rate"), "answered": s.get("answered"), "failures": s.get("failures"),
            "latency_p50_s": s.get("latency_p50_s"), "latency_p95_s": s.get("latency_p95_s"),
            "tokens_per_s": s.get("tokens_per_s"), "backend": s.get("backend"), "model": s.get("model"),
            "device": s.get("device"),
        }
    delta = (report.get("comparison", {}).get("student") or {}).get(primary) or {}
    summary["student_minus_teacher"] = {primary: delta}
    p50 = [summary["runs"][n]["latency_p50_s"] for n in ("teacher", "student")]
    summary["latency_p50_ratio_student_over_teacher"] = round(p50[1] / p50[0], 4) if all(p50) else None
    atomic_write_json(out / "distill_demo.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", default=None, help="medscribe.toml (default: ./medscribe.toml)")
    parser.add_argument("--run", required=True, help="the distillation run folder (paths.sft/<run>)")
    parser.add_argument("--test", default=None, help="test split (default: paths.data/test.jsonl)")
    parser.add_argument("--out", default=None, help="output folder (default: <run>/compare)")
    parser.add_argument("--limit", type=int, default=None, help="first N test rows only (a smoke run)")
    parser.add_argument("--metrics", default=None, help="eval metric families, comma-separated (default: eval.metrics)")
    args = parser.parse_args(argv)
    from rich.console import Console

    from medscribe.errors import MedscribeError
    from medscribe.settings import load_settings

    console = Console(stderr=True)
    try:
        settings = load_settings(args.config)
        summary = compare(settings, args.run, args.test, args.out, args.limit,
                          args.metrics.split(",") if args.metrics else None, console=console)
    except MedscribeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    primary = summary["primary_metric"]
    print(f"{'run':8} {primary:>12} {'json ok':>8} {'p50 s':>8} {'p95 s':>8} {'tok/s':>8}  model")
    for name, r in summary["runs"].items():
        value = r[primary]
        print(f"{name:8} {value if value is None else round(value, 4)!s:>12} {r['json_valid_rate']!s:>8} "
              f"{r['latency_p50_s']!s:>8} {r['latency_p95_s']!s:>8} {r['tokens_per_s']!s:>8}  {r['model']}")
    delta = summary["student_minus_teacher"][primary]
    print(f"student - teacher {primary}: {delta.get('delta')} (95% CI {delta.get('low')}..{delta.get('high')}, "
          f"p {delta.get('p_value')}); p50 latency student/teacher: "
          f"{summary['latency_p50_ratio_student_over_teacher']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
