"""`medscribe eval`: metrics, breakdowns and comparisons of `ask` runs (or any CSV/JSONL with predictions).

    medscribe eval artifacts/ask/tuned-rag
    medscribe eval artifacts/ask/base artifacts/ask/tuned --fail-under rougeL=0.3 --out reports/round2
    medscribe eval artifacts/ask/base artifacts/ask/copy artifacts/ask/tuned --baseline copy
    medscribe eval preds.csv --prediction-column answer --reference-column gold --metrics exact_match,rouge
"""

from pathlib import Path

import typer

from medscribe.commands._common import console, err_console, handle_errors, load_settings


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@handle_errors
def command(
    ctx: typer.Context,
    runs: list[Path] = typer.Argument(
        ..., help="Run dirs (with results.jsonl) or CSV/JSONL files; the first is the baseline unless --baseline."
    ),
    baseline: str | None = typer.Option(
        None, "--baseline", help="Run (name or path) every other run is compared with; pairwise Δ are in the report."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: paths.eval/<run names>)."),
    name: str | None = typer.Option(None, "--name", help="Report name (default: the run names joined by -vs-)."),
    metrics: str | None = typer.Option(None, "--metrics", help="Comma-separated metric families (eval.metrics)."),
    group_by: str | None = typer.Option(None, "--group-by", help="Comma-separated group fields (eval.group_by)."),
    prediction_column: str | None = typer.Option(None, "--prediction-column", help="eval.prediction_column."),
    reference_column: str | None = typer.Option(None, "--reference-column", help="eval.reference_column."),
    id_column: str | None = typer.Option(None, "--id-column", help="eval.id_column."),
    bertscore_model: str | None = typer.Option(None, "--bertscore-model", help="Local dir or cached id."),
    bertscore_num_layers: int | None = typer.Option(None, "--bertscore-num-layers", help="Layer to use."),
    embedding_model: str | None = typer.Option(None, "--embedding-model", help="eval.embedding_model."),
    bootstrap_samples: int | None = typer.Option(None, "--bootstrap-samples", help="eval.bootstrap_samples."),
    seed: int | None = typer.Option(None, "--seed", help="Bootstrap seed (eval.seed)."),
    fail_under: list[str] | None = typer.Option(
        None, "--fail-under", help="Gate METRIC=VALUE (repeatable): exit 1 when the last run scores lower."
    ),
) -> None:
    """Score and compare runs: metrics with paired bootstrap CIs (every run vs the baseline, and every pair),
    per-group breakdowns, plots, HTML report; refuses runs whose fingerprints name different test inputs.

    Writes metrics.json, rows.csv, recommendations.json, PNG plots and report.html/.md; --fail-under gates."""
    flags = {
        "eval": {
            "metrics": _split(metrics), "group_by": _split(group_by), "prediction_column": prediction_column,
            "reference_column": reference_column, "id_column": id_column, "bertscore_model": bertscore_model,
            "bertscore_num_layers": bertscore_num_layers, "embedding_model": embedding_model,
            "bootstrap_samples": bootstrap_samples, "seed": seed,
        }
    }
    settings = load_settings(ctx, flags)
    from medscribe.evaluate import GateFailed, run_eval
    from medscribe.evaluate.runner import parse_gates

    gates = parse_gates(fail_under)
    try:
        run_eval(settings, runs, out=out, name=name, fail_under=gates, console=console, baseline=baseline)
    except GateFailed as exc:
        err_console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
