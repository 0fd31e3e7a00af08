"""The whole pipeline in one call: data -> index -> ask (base, no RAG) -> ask (base + RAG) -> sft -> ask (tuned +
RAG) -> eval comparing the three runs. What `make demo` and `make all CONFIG=...` run.

    medscribe -c examples/demo.toml pipeline
    from medscribe.pipeline import run_pipeline; run_pipeline(settings)

Every ask step answers with the local backend on `sft.base_model` (+ the adapter for the tuned run): base and
tuned answers then come from the same weights, which is what the comparison needs. A config whose `ask` points
elsewhere (an OpenAI-compatible server, another local model) is not an error: the pipeline says so on its first
line and records it in the result; `medscribe ask` keeps using the configured backend.

Rerunnable: every step is skipped or fast when its output is already there (data is rebuilt only when its
manifest is missing, the index update embeds nothing for an unchanged corpus, ask runs resume and skip answered
ids, sft is skipped when the named run already has an adapter). `--force STEP` redoes one step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError

STEPS = ("data", "index", "ask-base", "ask-base-rag", "sft", "ask-tuned-rag", "eval")
RUN_NAMES = {"ask-base": "base-norag", "ask-base-rag": "base-rag", "ask-tuned-rag": "tuned-rag"}


@dataclass
class PipelineResult:
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_dir: Path | None = None
    report: dict | None = None
    notes: list[str] = field(default_factory=list)
    headline: str | None = None


def _ask_settings(settings: Any, k: int, adapter: str | None) -> Any:
    """A copy of settings for one ask run (local backend on sft.base_model); the caller's object is untouched."""
    copy = settings.model_copy(deep=True)
    copy.ask.backend = "local"
    copy.ask.local_model = settings.sft.base_model
    copy.ask.k = k
    copy.ask.adapter = adapter
    return copy


def serving_note(settings: Any) -> str | None:
    """What the pipeline serves differently from the configured `ask` section, or None."""
    ask, base = settings.ask, settings.sft.base_model
    if ask.backend != "local":
        return (f"pipeline: ask.backend is {ask.backend!r}; every ask step runs locally on sft.base_model "
                f"{base!r} (base and tuned from the same weights)")
    if str(ask.local_model) != str(base):
        return f"pipeline: ask.local_model {ask.local_model!r} != sft.base_model {base!r}; every ask step uses {base!r}"
    return None


def run_pipeline(
    settings: Any,
    sft_run: str = "pipeline",
    force: tuple[str, ...] = (),
    console: Any = None,
) -> PipelineResult:
    """Run every stage in order; return what each step did and the eval report."""
    unknown = [s for s in force if s not in STEPS]
    if unknown:
        raise UsageError(f"--force: unknown step {unknown[0]!r} (steps: {', '.join(STEPS)})")
    say = console.print if console is not None else (lambda *a, **k: None)
    result = PipelineResult()
    k = settings.ask.k if settings.ask.k is not None else settings.index.k
    notes = [serving_note(settings)]
    if settings.sft.rag_context and settings.sft.rag_k not in (None, k):
        notes.append(f"pipeline: sft.rag_k={settings.sft.rag_k} but the tuned run is served with k={k}: training "
                     "and serving prompts differ; leave sft.rag_k unset to train with what ask serves")
    for note in filter(None, notes):
        result.notes.append(note)
        say(f"[yellow]warning:[/yellow] {note}")
    data_dir = Path(settings.paths.data)

    def step(name: str, what: str) -> float:
        say(f"\n[bold cyan]== {name}[/bold cyan]: {what}")
        return time.perf_counter()

    def done(name: str, started: float, **info: Any) -> None:
        info["seconds"] = round(time.perf_counter() - started, 1)
        result.steps[name] = info
        say(f"[green]{name} done[/green] in {info['seconds']} s")

    started = step("data", f"{settings.data.inputs} -> {data_dir}")
    if (data_dir / "manifest.json").is_file() and "data" not in force:
        done("data", started, skipped=True)
    else:
        from medscribe.data import run_data

        data = run_data(settings, console=console)
        done("data", started, splits=data.splits, rows_in=data.counts.get("rows_in"))
    test_path = data_dir / "test.jsonl"

    started = step("index", f"{data_dir / 'corpus.jsonl'} -> {settings.paths.index}")
    from medscribe.index import build_index

    report = build_index(settings, prune=True)
    done("index", started, report=_plain(report))

    retriever = None
    if k > 0:
        from medscribe.index import Retriever

        retriever = Retriever.open(settings)

    from medscribe.ask import run_batch

    def ask(name: str, k_run: int, adapter: str | None) -> None:
        run = RUN_NAMES[name]
        target = Path(settings.paths.ask) / run
        started = step(name, f"{test_path} -> {target} (k={k_run}, adapter={adapter or 'none'})")
        if name in force:
            import shutil

            shutil.rmtree(Path(settings.paths.ask) / run, ignore_errors=True)
        summary = run_batch(
            _ask_settings(settings, k_run, adapter), test_path, run=run,
            retriever=retriever if k_run > 0 else None, console=console,
        )
        done(name, started, summary={key: summary.get(key) for key in ("count", "failures", "json_valid_rate")})

    ask("ask-base", 0, None)
    ask("ask-base-rag", k, None)

    sft_dir = Path(settings.paths.sft) / sft_run
    adapter = sft_dir / "adapter"
    started = step("sft", f"{settings.sft.base_model} -> {sft_dir}")
    if (adapter / "adapter_config.json").is_file() and "sft" not in force:
        done("sft", started, skipped=True, adapter=str(adapter))
    else:
        from medscribe.sft import run_sft

        manifest = run_sft(settings, run=sft_run, retriever=retriever, console=console)
        done("sft", started, adapter=manifest.get("adapter"), backend=(manifest.get("setup") or {}).get("backend"))
    ask("ask-tuned-rag", k, str(adapter))

    started = step("eval", "compare the three runs")
    from medscribe.evaluate import run_eval

    runs = [Path(settings.paths.ask) / RUN_NAMES[n] for n in ("ask-base", "ask-base-rag", "ask-tuned-rag")]
    evaluation = run_eval(settings, runs, name="pipeline", console=console)
    result.eval_dir = evaluation.out_dir
    result.report = evaluation.report
    result.headline = headline(evaluation.report)
    done("eval", started, out=str(evaluation.out_dir))
    return result


def headline(report: dict) -> str | None:
    """'rougeL: base-norag 0.0512 -> tuned-rag 0.5571 (+0.5059, 95% CI [0.41, 0.60])': the question the demo asks."""
    runs = list(report.get("runs") or {})
    if len(runs) < 2:
        return None
    metric = report.get("primary_metric") or "rougeL"
    base, last = runs[0], runs[-1]
    before = report["runs"][base]["metrics"].get(metric)
    after = report["runs"][last]["metrics"].get(metric)
    if before is None or after is None:
        return None
    line = f"{metric}: {base} {before:.4f} -> {last} {after:.4f} ({after - before:+.4f}"
    delta = (report.get("comparison") or {}).get(last, {}).get(metric)
    if delta and delta.get("low") is not None:
        line += f", 95% CI [{delta['low']:+.4f}, {delta['high']:+.4f}]"
    return line + ")"


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return {k: v for k, v in asdict(obj).items() if isinstance(v, int | float | str)}
    return obj
